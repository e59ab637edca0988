"""One upload of several sources' files: each file's source guessed on its own, shown and
changeable, and each file imported as its own import with its own receipt."""

from __future__ import annotations

import shutil
from decimal import Decimal

import pytest
from django.core.cache import cache

from accounts.models import AuditEvent
from billing.models import Charge, Import, ImportJob
from billing.money import ExactSum

pytestmark = pytest.mark.django_db
UPLOAD = "/admin/billing/importjob/upload/"


@pytest.fixture(autouse=True)
def _config(settings, config_path, tmp_path):
    settings.OPENCHARGEBACK_CONFIG = config_path
    settings.MEDIA_ROOT = tmp_path / "media"
    cache.clear()


@pytest.fixture
def files(sample_dir, tmp_path):
    """An AWS file, an HPC file, and a file whose name matches no source's pattern."""
    mystery = tmp_path / "mystery.csv"
    shutil.copyfile(sample_dir / "azure_2025-01.csv", mystery)
    return [sample_dir / "aws_2025-01.csv", sample_dir / "hpc_2025-01.csv", mystery]


def post_batch(client, paths):
    handles = [open(p, "rb") for p in paths]
    try:
        return client.post(
            UPLOAD,
            {"files": handles, "source": "", "period": "", "separate": "on"},
            follow=True,
        )
    finally:
        for handle in handles:
            handle.close()


def billed(**filters) -> Decimal:
    return Charge.objects.filter(**filters).aggregate(t=ExactSum("billed_cost"))["t"]


def test_each_file_is_guessed_changed_and_imported_on_its_own(admin_client, files):
    response = post_batch(admin_client, files)
    page = response.content.decode()
    jobs = {j.files[0]["name"]: j for j in ImportJob.objects.order_by("id")}
    assert len({j.batch for j in jobs.values()}) == 1
    batch = jobs["mystery.csv"].batch
    assert response.redirect_chain[-1][0] == f"/admin/billing/importjob/batch/{batch}/"
    assert (jobs["aws_2025-01.csv"].source.name, jobs["aws_2025-01.csv"].status) == (
        "aws",
        "checked",
    )
    assert (jobs["hpc_2025-01.csv"].source.name, jobs["hpc_2025-01.csv"].status) == (
        "hpc",
        "checked",
    )
    assert jobs["mystery.csv"].source is None and jobs["mystery.csv"].status == "source"
    assert "1 file waits for a source" in page
    assert 'aria-label="Source of mystery.csv"' in page
    assert "Import the 2 checked files" in page
    assert not Charge.objects.exists()
    job_page = admin_client.get(f"/admin/billing/importjob/{jobs['mystery.csv'].pk}/job/")
    assert f"/admin/billing/importjob/batch/{batch}/" in job_page.content.decode()

    # The guess for the HPC file is changed and changed back: each change is checked again
    # and audited.
    hpc = jobs["hpc_2025-01.csv"]
    for source in ("storage", "hpc"):
        admin_client.post(f"/admin/billing/importjob/{hpc.pk}/source/", {"source": source})
        hpc.refresh_from_db()
        assert (hpc.source.name, hpc.status) == (source, "checked")
    admin_client.post(
        f"/admin/billing/importjob/{jobs['mystery.csv'].pk}/source/", {"source": "azure"}
    )
    mystery = ImportJob.objects.get(pk=jobs["mystery.csv"].pk)
    assert (mystery.source.name, mystery.status) == ("azure", "checked")
    changes = AuditEvent.objects.filter(action="upload_source").order_by("id")
    assert [(e.before["source"], e.after["source"]) for e in changes] == [
        ("hpc", "storage"),
        ("storage", "hpc"),
        ("", "azure"),
    ]
    expected = {
        job.source.name: Decimal(job.receipt["totals"]["USD"]["billed"])
        for job in ImportJob.objects.filter(batch=batch)
    }

    response = admin_client.post(f"/admin/billing/importjob/batch/{batch}/confirm/", follow=True)
    assert "3 of 3 file(s) imported." in response.content.decode()
    done = list(ImportJob.objects.filter(batch=batch).select_related("import_run__source"))
    assert {j.status for j in done} == {"done"}
    receipts = {j.import_run.source.name: j.import_run for j in done}
    assert len({r.pk for r in receipts.values()}) == 3
    for name, receipt in receipts.items():
        assert receipt.files.count() == 1
        assert billed(source__name=name) == expected[name]
    page = response.content.decode()
    for receipt in receipts.values():
        assert f"/admin/billing/import/{receipt.pk}/change/" in page
    assert Import.objects.count() == 3


def test_a_file_waiting_for_its_source_is_never_imported(admin_client, files):
    post_batch(admin_client, files)
    batch = ImportJob.objects.first().batch
    admin_client.post(f"/admin/billing/importjob/batch/{batch}/confirm/")
    states = dict(ImportJob.objects.values_list("files__0__name", "status"))
    assert states == {"aws_2025-01.csv": "done", "hpc_2025-01.csv": "done", "mystery.csv": "source"}
    assert set(Import.objects.values_list("source__name", flat=True)) == {"aws", "hpc"}

    # An imported file's source can no longer be changed.
    aws = ImportJob.objects.get(source__name="aws")
    response = admin_client.post(
        f"/admin/billing/importjob/{aws.pk}/source/", {"source": "azure"}, follow=True
    )
    assert "its source can&#x27;t be changed" in response.content.decode()
    aws.refresh_from_db()
    assert aws.source.name == "aws"


def test_without_one_import_per_file_different_sources_are_still_one_question(admin_client, files):
    handles = [open(p, "rb") for p in files[:2]]
    try:
        response = admin_client.post(UPLOAD, {"files": handles, "source": "", "period": ""})
    finally:
        for handle in handles:
            handle.close()
    assert "tick &quot;one import per file&quot;" in response.content.decode()
    assert not ImportJob.objects.exists()
