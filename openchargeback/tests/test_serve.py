"""`openchargeback serve` without DJANGO_DEBUG answers over plain HTTP: no redirect to https, a
login cookie a browser sends back over HTTP, the static files served. A real process (the
production defaults apply outside pytest), on a free port of 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _get(url):
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        return opener.open(url, timeout=10)
    except urllib.error.HTTPError as exc:  # a 3xx or 4xx: its status and headers
        return exc


@pytest.fixture
def server(tmp_path):
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_DEBUG", "DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL"}
        and not k.startswith("PYTEST")
    }
    env.update(
        OPENCHARGEBACK_HOME=str(tmp_path / "instance"),
        DJANGO_SECRET_KEY="serve-test-" + "x" * 40,
        DJANGO_SETTINGS_MODULE="openchargeback.settings",
    )
    code = (
        "import sys; from openchargeback.cli import main; main(['openchargeback', *sys.argv[1:]])"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, "serve", f"127.0.0.1:{port}", "--noreload"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # waits for the server to listen (up to a minute on a busy host)
            if process.poll() is not None:
                pytest.fail(f"serve exited: {process.stdout.read()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        output = process.stdout.read()
        assert "development server" in output and "not for production" in output, output


def test_serve_answers_over_http_without_debug(server):
    login = _get(server + "/accounts/login/")
    assert login.status == 200, (login.status, login.headers.get("Location"))
    assert "Strict-Transport-Security" not in login.headers
    cookie = login.headers.get("Set-Cookie", "")
    assert cookie.startswith("csrftoken=") and "Secure" not in cookie
    root = _get(server + "/")
    assert root.status == 302 and not root.headers["Location"].startswith("https:")
    css = _get(server + "/static/portal/portal.css")
    assert css.status == 200 and css.headers["Content-Type"].startswith("text/css")
