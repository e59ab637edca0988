"""Upload in the admin: dry-run receipt first, then the import through the same service."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import AuditEvent
from billing import tasks
from billing.models import PI, BillingPeriod, Charge, Import, ImportJob, Project
from billing.money import ExactSum
from billing.services import uploads

from .conftest import REPO, focus_text

pytestmark = pytest.mark.django_db
SAMPLES = REPO / "sample_data"
UPLOAD = "/admin/billing/importjob/upload/"


@pytest.fixture(autouse=True)
def _config(settings, config_path, tmp_path):
    settings.OPENCHARGEBACK_CONFIG = config_path
    settings.MEDIA_ROOT = tmp_path / "media"
    cache.clear()


def job_url(job, action="job"):
    return f"/admin/billing/importjob/{job.pk}/{action}/"


def upload(client, *paths: Path, **fields):
    """POST files to the upload page; returns (response after redirects, the job or None)."""
    before = set(ImportJob.objects.values_list("pk", flat=True))
    handles = [open(p, "rb") for p in paths]
    try:
        data = {"files": handles, "source": "", "period": "", **fields}
        response = client.post(UPLOAD, data, follow=True)
    finally:
        for handle in handles:
            handle.close()
    assert response.status_code == 200
    new = ImportJob.objects.exclude(pk__in=before).order_by("pk")
    return response, new.last()


def charges_state():
    totals = Charge.objects.aggregate(billed=ExactSum("billed_cost"), listed=ExactSum("list_cost"))
    return {
        "charges": Charge.objects.count(),
        "imports": Import.objects.count(),
        "periods": sorted(BillingPeriod.objects.values_list("key", "status")),
        "pis": PI.objects.count(),
        "projects": Project.objects.count(),
        "billed": totals["billed"],
        "list": totals["listed"],
    }


def billed(**filters) -> Decimal:
    return Charge.objects.filter(**filters).aggregate(t=ExactSum("billed_cost"))["t"]


def test_dry_run_receipt_then_confirm(
    admin_client, sample_dir, settings, django_capture_on_commit_callbacks
):
    before = charges_state()
    response, job = upload(admin_client, sample_dir / "aws_2025-01.csv")
    html = response.content.decode()
    assert job.status == ImportJob.Status.CHECKED
    assert job.source.name == "aws"  # guessed from the name with the configured pattern
    assert job.requested_period == ""  # the month comes from the data
    assert charges_state() == before  # nothing written until confirmed
    receipt = job.receipt
    assert receipt["status"] == "dry-run" and receipt["would_be"] == "imported"
    assert receipt["rows_read"] == 25 and receipt["periods"] == ["2025-01"]
    assert receipt["totals"]["USD"]["billed"] == "19086.75"
    assert receipt["totals"]["USD"]["list"] == "22455.00"
    assert 'data-receipt="rows_read">25<' in html
    assert 'data-receipt="billed-USD">19086.75<' in html
    assert 'data-receipt="list-USD">22455.00<' in html
    assert "Confirm: import 25 rows" in html
    stored = Path(settings.MEDIA_ROOT) / "uploads" / str(job.pk) / "aws_2025-01.csv"
    assert stored.read_bytes() == (sample_dir / "aws_2025-01.csv").read_bytes()

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(job_url(job, "confirm"), follow=True)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE
    assert job.import_run.rows_added == 25
    assert job.rows_done == 25
    assert Charge.objects.count() == 25
    assert billed() == Decimal("19086.75")
    assert job.import_run.totals["USD"] == {
        "billed": "19086.75",
        "list": "22455.00",
        "flagged_billed": "0",
    }
    assert not stored.exists()  # imported: the stored copy is gone
    assert f"Import #{job.import_run_id}" in response.content.decode()
    actions = list(
        AuditEvent.objects.exclude(action__startswith="auth.")
        .exclude(action__startswith="user.")  # the test's admin login was created
        .order_by("id")
        .values_list("action", flat=True)
    )
    # The configured source's row is made when the upload names it, audited as reference data.
    assert actions == [
        "source.create",
        "upload_create",
        "upload_check",
        "upload_confirm",
        "reviewpattern.seed",  # the first real import adds the file's review patterns
        "import",
        "upload_import",
    ]

    # Confirming twice imports once.
    admin_client.post(job_url(job, "confirm"), follow=True)
    assert Import.objects.count() == 1 and Charge.objects.count() == 25


def test_every_reference_file(admin_client, sample_dir):
    expected = {
        "aws_2025-01.csv": ("aws", 25, "19086.75", "22455.00"),
        "azure_2025-01.csv": ("azure", 4, "735.25", "865.00"),
        "hpc_2025-01.csv": ("hpc", 9, "0.00", "8200.00"),
        "it_storage_2025-01.csv": ("it_storage", 6, "360.00", "360.00"),
        "storage_2025-01.csv": ("storage", 15, "45.00", "380.00"),
    }
    for name, (source, rows, billed_text, list_text) in expected.items():
        _, job = upload(admin_client, sample_dir / name)
        assert job.source.name == source, name
        assert job.receipt["rows_read"] == rows
        assert job.receipt["totals"]["USD"]["billed"] == billed_text
        assert job.receipt["totals"]["USD"]["list"] == list_text
        admin_client.post(job_url(job, "confirm"))
    assert Charge.objects.count() == 59
    assert billed() == Decimal("20227.00")
    assert Charge.objects.aggregate(t=ExactSum("list_cost"))["t"] == Decimal("32260.00")


def test_several_files_one_source_months_from_the_data(admin_client):
    _, job = upload(admin_client, SAMPLES / "aws_2026-09.csv", SAMPLES / "aws_2026-10.csv")
    receipt = job.receipt
    assert receipt["periods"] == ["2026-09", "2026-10"]
    assert receipt["rows_read"] == 64
    # sample_data/README.md: 266.2176862069 + 170.5635915877.
    assert receipt["totals"]["USD"]["billed"] == "436.7812777946"
    # Untagged rows (README): usage and tax in September, the credit in October.
    assert receipt["rows_flagged"] == 3
    assert (
        receipt["totals"]["USD"]["flagged_billed"] == "-94.2671087655"
    )  # 7.4628912345 + 18.27 - 120.00
    assert [f["rows"] for f in receipt["files"]] == [32, 32]
    assert Charge.objects.count() == 0
    admin_client.post(job_url(job, "confirm"))
    assert billed(period__key="2026-09") == Decimal("266.2176862069")
    assert billed(period__key="2026-10") == Decimal("170.5635915877")


def test_replacement_receipt_says_what_would_change(admin_client):
    _, first = upload(admin_client, SAMPLES / "aws_2026-10.csv", period="2026-10")
    admin_client.post(job_url(first, "confirm"))
    before = charges_state()
    response, job = upload(admin_client, SAMPLES / "aws_2026-10_restated.csv", period="2026-10")
    receipt = job.receipt
    assert receipt["would_be"] == "replaced"
    assert (receipt["rows_added"], receipt["rows_removed"], receipt["rows_unchanged"]) == (2, 3, 29)
    assert receipt["billed_change"] == {"USD": "-13.2913685423"}
    html = response.content.decode()
    # Per month, never netted across months.
    assert 'data-receipt="change-2026-10-USD">USD -13.2913685423<' in html
    assert charges_state() == before
    admin_client.post(job_url(job, "confirm"))
    assert billed(period__key="2026-10") == Decimal("157.2722230454")
    assert Charge.objects.filter(period__key="2026-10").count() == 31


def test_malformed_file_shows_the_refusal_and_writes_nothing(admin_client, tmp_path):
    bad = tmp_path / "aws_bad.csv"
    bad.write_text(focus_text([{}, {"BilledCost": "12,50"}, {}]), encoding="utf-8")
    before = charges_state()
    response, job = upload(admin_client, bad)
    html = response.content.decode()
    assert job.status == ImportJob.Status.FAILED
    assert "Refused: nothing was imported." in html
    assert "aws_bad.csv" in html and "line 3" in html and "BilledCost" in html
    assert "Confirm" not in html
    assert charges_state() == before
    # A failed job can't be confirmed.
    response = admin_client.post(job_url(job, "confirm"), follow=True)
    assert "only a checked upload can be imported" in response.content.decode()
    assert charges_state() == before


def test_wrong_type_and_unknown_source(admin_client, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    response, job = upload(admin_client, notes)
    assert job is None
    assert "not a file we import; choose .csv, .csv.gz or .parquet" in response.content.decode()

    mystery = tmp_path / "mystery.csv"
    mystery.write_text(focus_text([{}]), encoding="utf-8")
    response, job = upload(admin_client, mystery)
    assert job is None
    assert "can&#x27;t tell the source of mystery.csv" in response.content.decode()
    # The select overrides the guess.
    response, job = upload(admin_client, mystery, source="azure")
    assert job.source.name == "azure" and job.status == ImportJob.Status.CHECKED


def test_files_of_different_sources_are_refused(admin_client, sample_dir):
    response, job = upload(
        admin_client, sample_dir / "aws_2025-01.csv", sample_dir / "hpc_2025-01.csv"
    )
    assert job is None
    assert "look like different sources" in response.content.decode()


def test_size_limit(admin_client, settings):
    settings.OPENCHARGEBACK_UPLOAD_MAX_BYTES = 1000
    response, job = upload(admin_client, SAMPLES / "aws_2026-09.csv")
    assert job is None
    assert "more than the limit of 1,000 bytes" in response.content.decode()


def test_discard_deletes_the_files(admin_client, settings):
    _, job = upload(admin_client, SAMPLES / "hpc_2026-09.csv")
    folder = Path(settings.MEDIA_ROOT) / "uploads" / str(job.pk)
    assert folder.is_dir()
    with_callbacks = admin_client.post(job_url(job, "discard"), follow=True)
    assert with_callbacks.status_code == 200
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DISCARDED
    admin_client.post(job_url(job, "confirm"))
    assert Charge.objects.count() == 0


def test_discard_removes_folder_after_commit(
    settings, admin_user, django_capture_on_commit_callbacks
):
    files = [
        SimpleUploadedFile("storage_2026-10.csv", (SAMPLES / "storage_2026-10.csv").read_bytes())
    ]
    job = uploads.import_job_create(files=files, acting_user=admin_user)
    folder = uploads.job_dir(job.pk)
    with django_capture_on_commit_callbacks(execute=True):
        uploads.import_job_discard(job_id=job.pk, acting_user=admin_user)
    assert not folder.exists()


def test_closed_period_between_check_and_confirm(admin_client):
    _, job = upload(admin_client, SAMPLES / "azure_2026-09.csv", period="2026-09")
    assert job.status == ImportJob.Status.CHECKED
    BillingPeriod.objects.create(key="2026-09", status="closed")
    response = admin_client.post(job_url(job, "confirm"), follow=True)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert "2026-09 is closed" in response.content.decode()
    assert Charge.objects.count() == 0 and Import.objects.count() == 0


def test_big_upload_runs_as_a_task(
    admin_client, admin_user, settings, django_capture_on_commit_callbacks
):
    settings.OPENCHARGEBACK_UPLOAD_ASYNC_BYTES = 100  # every sample file is "big"
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response, job = upload(admin_client, SAMPLES / "storage_2026-10.csv")
    assert job.status == ImportJob.Status.CHECKING  # the check waits for a worker
    assert '<meta http-equiv="refresh"' in response.content.decode()
    assert len(callbacks) == 1
    callbacks[0]()  # the enqueued task, run eagerly (no broker in tests)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.CHECKED and job.rows_total == 11

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(job_url(job, "confirm"), follow=True)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.QUEUED
    html = response.content.decode()
    assert '<meta http-equiv="refresh"' in html and "Waiting for a worker" in html
    assert Charge.objects.count() == 0
    callbacks[0]()
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE and job.rows_done == 11
    assert billed() == Decimal("1829.14975")
    assert '<meta http-equiv="refresh"' not in admin_client.get(job_url(job)).content.decode()

    # The task again (a redelivery): a job already done does nothing.
    assert tasks.import_job_run(job.pk, user_id=admin_user.pk) == "done"
    assert tasks.import_job_run.apply(args=[job.pk]).get() == "done"
    assert Import.objects.count() == 1 and Charge.objects.count() == 11


def test_permissions(client, django_user_model, sample_dir):
    user = django_user_model.objects.create_user("reviewer", password="pw", is_staff=True)
    client.force_login(user)
    assert client.get(UPLOAD).status_code == 403
    with open(sample_dir / "azure_2025-01.csv", "rb") as handle:
        assert client.post(UPLOAD, {"files": [handle]}).status_code == 403
    assert ImportJob.objects.count() == 0

    user.user_permissions.add(Permission.objects.get(codename="add_import"))
    client.force_login(django_user_model.objects.get(pk=user.pk))
    response = client.get(UPLOAD)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'type="file"' in html and "multiple" in html  # works without JavaScript
    assert "billing/upload.js" in html
    _, job = upload(client, sample_dir / "azure_2025-01.csv")
    assert job.status == ImportJob.Status.CHECKED

    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_importjob"))
    client.force_login(viewer)
    assert client.get(job_url(job)).status_code == 200  # may look
    assert "Confirm" not in client.get(job_url(job)).content.decode()
    assert client.post(job_url(job, "confirm")).status_code == 403  # may not import
    assert client.post(job_url(job, "discard")).status_code == 403
    assert Charge.objects.count() == 0


def test_changelists_link_to_the_upload(admin_client, sample_dir):
    _, job = upload(admin_client, sample_dir / "azure_2025-01.csv")
    html = admin_client.get("/admin/billing/importjob/").content.decode()
    assert UPLOAD in html and job_url(job) in html
    assert UPLOAD in admin_client.get("/admin/billing/import/").content.decode()
    assert UPLOAD in admin_client.get("/admin/").content.decode()
    # The job's admin change page is its job page.
    response = admin_client.get(f"/admin/billing/importjob/{job.pk}/change/")
    assert response.status_code == 302 and response["Location"] == job_url(job)


def test_source_guess_rules():
    patterns = {"storage": "^storage", "it_storage": "it_storage", "hpc": "hpc|slurm"}
    assert uploads.source_guess_one("it_storage_2025-01.csv", patterns) == "it_storage"
    assert uploads.source_guess_one("storage_2025-01.csv", patterns) == "storage"
    assert uploads.source_guess_one("/tmp/x/SLURM-2026-10.csv.gz", patterns) == "hpc"
    assert uploads.source_guess_one("other.csv", patterns) is None


@pytest.mark.django_db(transaction=True)
def test_progress_is_committed_outside_the_import_transaction(monkeypatch):
    """The job page sees rows_done while the import's own transaction is still open."""
    from django.db import connection, transaction

    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time: progress shows when the import ends")
    monkeypatch.setattr(uploads, "PROGRESS_SECONDS", 0)
    job = ImportJob.objects.create(status=ImportJob.Status.IMPORTING, rows_total=1000)
    progress = uploads._Progress(job.pk)
    with transaction.atomic():
        progress(400)
        progress(200)
        transaction.set_rollback(True)  # as a refused import would
    progress.close()
    job.refresh_from_db()
    assert job.rows_done == 600
