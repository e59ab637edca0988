"""Fixtures for the statements tests: the billing fixtures (reference files, the example
configuration, the command runners, the charge factory), a private media and mail folder, and
helpers that read PDFs and the file email backend the way a user would."""

from __future__ import annotations

import email
import io
from pathlib import Path

import pytest
from pypdf import PdfReader

from billing.tests.conftest import (  # noqa: F401  (fixtures)
    config,
    config_path,
    import_samples,
    ingest,
    make_charges,
    run,
    run_json,
    sample_dir,
    write_file,
    write_focus,
)


@pytest.fixture(autouse=True)
def private_media(settings, tmp_path):
    """PDFs and mail of each test in its own folder."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    settings.OPENCHARGEBACK_EMAIL_RETRY_DELAY = 0
    return tmp_path


def pdf_text(path_or_bytes) -> str:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def pdf_pages(path_or_bytes) -> list[str]:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]


def mailed(folder) -> list[email.message.Message]:
    """Every message the file backend wrote (one file per connection, messages separated)."""
    messages = []
    folder = Path(folder)
    if not folder.exists():
        return messages
    for path in sorted(folder.glob("*.log")):
        for chunk in path.read_bytes().split(b"\n" + b"-" * 79 + b"\n"):
            if chunk.strip():
                messages.append(email.message_from_bytes(chunk.strip() + b"\n"))
    return messages


@pytest.fixture
def january(import_samples):  # noqa: F811
    """The five reference files imported into 2025-01 (open)."""
    return import_samples()
