"""Headless Chromium for the browser tests of every app (Playwright driving the system's
Chromium, never a downloaded one)."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager

import pytest
from django.db import connections

CHROMIUM = (
    os.environ.get("OPENCHARGEBACK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
)


@contextmanager
def chromium():
    """Headless Chromium through Playwright's sync API.

    The API runs an event loop in this thread, and the code inside this block (a test's body)
    runs in a context of its own: an ORM call there opens a database connection of its own,
    which pytest-django, closing the connections of its context, never sees. It is closed here,
    in that context; else PostgreSQL keeps the session and the test database can't be dropped.
    """
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser
        finally:
            connections.close_all()
            browser.close()
