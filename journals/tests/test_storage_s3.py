"""Generated files in an S3-compatible bucket (OPENCHARGEBACK_STORAGE=s3): statement PDFs and GL
journals are written to, and served from, a real S3 server over HTTP, not to the local disk.

The server is moto's server mode, started by the test on a free loopback port; django-storages
talks to it through boto3 exactly as it would to AWS, MinIO or Ceph.
"""

from __future__ import annotations

import hashlib
import socket

import boto3
import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from moto import server as moto_server

from billing.models import Charge
from journals.models import JournalExport
from statements.models import Statement

from . import chaos_adapter as svc
from .chaos import CONFIG, ensure_journal_templates, focus_row, write_focus

BUCKET = "oc-generated"
PERIOD = "2026-05"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(settings, s3_endpoint, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)

    def bucket(prefix):
        return {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": s3_endpoint,
                "region_name": "us-east-1",
                "location": prefix,
                "default_acl": None,
                "file_overwrite": False,
            },
        }

    # The same dicts settings.py builds for OPENCHARGEBACK_STORAGE=s3.
    settings.STORAGES = {**settings.STORAGES, "default": bucket("statements")}
    settings.STORAGES = {**settings.STORAGES, "journals": bucket("journals")}
    settings.MEDIA_ROOT = str(tmp_path / "no-media-here")
    settings.INSTANCE_DIR = tmp_path / "instance"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.OPENCHARGEBACK_EMAIL_RETRY_DELAY = 0
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def test_settings_build_the_bucket_storages_from_the_environment(monkeypatch):
    """OPENCHARGEBACK_STORAGE=s3 gives both storages the bucket, each under its prefix."""
    import importlib

    import openchargeback.settings as live

    monkeypatch.setenv("OPENCHARGEBACK_STORAGE", "s3")
    monkeypatch.setenv("OPENCHARGEBACK_S3_BUCKET", "billing-files")
    monkeypatch.setenv("OPENCHARGEBACK_S3_ENDPOINT_URL", "http://minio.internal:9000")
    try:
        fresh = importlib.reload(live)
        assert fresh.STORAGES["default"]["BACKEND"] == "storages.backends.s3.S3Storage"
        options = fresh.STORAGES["journals"]["OPTIONS"]
        assert (options["bucket_name"], options["location"]) == ("billing-files", "journals")
        assert options["endpoint_url"] == "http://minio.internal:9000"
        assert fresh.STORAGES["default"]["OPTIONS"]["location"] == "statements"
        monkeypatch.delenv("OPENCHARGEBACK_S3_BUCKET")
        from django.core.exceptions import ImproperlyConfigured

        with pytest.raises(ImproperlyConfigured, match="OPENCHARGEBACK_S3_BUCKET"):
            importlib.reload(live)
    finally:
        monkeypatch.undo()
        importlib.reload(live)


@pytest.mark.django_db(transaction=True)
def test_pdfs_and_journals_live_in_the_bucket_and_are_served_from_it(s3, tmp_path, client):
    from billing.config import load_config

    ensure_journal_templates()
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    config = load_config(str(path))
    rows = [
        focus_row(PERIOD, "s-1", "12.345", pi="ada@example.edu", fund="MATH-1843"),
        focus_row(PERIOD, "s-2", "7.005", pi="bob@example.edu", project="looms", fund="PHYS-22"),
    ]
    svc.import_files(
        paths=[write_focus(tmp_path / "aws.csv", rows)], source="aws", period=PERIOD, config=config
    )
    assert Charge.objects.count() == 2
    svc.period_close(key=PERIOD, actor="finance")
    svc.statement_generate(period_key=PERIOD, send=True, config=config)
    result = svc.journal_export(period_key=PERIOD, template="gl", config=config)

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    statements = list(Statement.objects.filter(period__key=PERIOD))
    assert len(statements) == 2
    for statement in statements:
        key = f"statements/{statement.pdf_path}"
        assert key in keys
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert body.startswith(b"%PDF") and hashlib.sha256(body).hexdigest() == statement.pdf_sha256
    record = JournalExport.objects.get()
    assert f"journals/{record.path}" in keys
    assert result.files[0]["file"] == record.path  # a name in the bucket, not a local path
    journal = s3.get_object(Bucket=BUCKET, Key=f"journals/{record.path}")["Body"].read()
    assert hashlib.sha256(journal).hexdigest() == record.sha256
    assert not (tmp_path / "no-media-here").exists()
    assert not (tmp_path / "instance" / "journals").exists()

    # Served from the bucket by the admin.
    admin = get_user_model().objects.create_superuser("boss", "boss@example.edu", "pw-123456")
    client.force_login(admin)
    download = client.get(reverse("admin:journals_journalexport_download", args=[record.pk]))
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == journal
    pdf = client.get(reverse("admin:statements_statement_pdf", args=[statements[0].pk]))
    assert pdf.status_code == 200
    served = b"".join(pdf.streaming_content)
    assert hashlib.sha256(served).hexdigest() == statements[0].pdf_sha256

    # A second export of the same month and template finds its bytes already in the bucket.
    again = svc.journal_export(period_key=PERIOD, template="gl", config=config)
    assert again.files[0]["sha256"] == record.sha256
    assert len([k for k in _keys(s3) if k.startswith("journals/")]) == 1


def _keys(client) -> set[str]:
    return {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
