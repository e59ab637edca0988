"""`cycle` through real Celery workers on PostgreSQL: the statements are drawn and mailed by a
worker process (file email backend), the cycle waits for them, and the figures agree at each step.

Runs only with CELERY_BROKER_URL and a PostgreSQL DATABASE_URL (as `.ci/run` sets them).
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from billing.models import Charge
from journals.models import JournalExport
from statements.models import Statement
from statements.tests.conftest import mailed
from statements.tests.test_worker import workers  # noqa: F401  (the fixture)

from . import chaos_adapter as svc
from .chaos import ensure_journal_templates, focus_row, write_focus
from .test_cycle import ADA, BOB, CONFIG, PERIOD

pytestmark = [
    pytest.mark.worker,
    pytest.mark.skipif(
        settings.CELERY_TASK_ALWAYS_EAGER or connection.vendor != "postgresql",
        reason="needs CELERY_BROKER_URL and DATABASE_URL=postgres://…",
    ),
]

CYD = {"pi": "cyd@example.edu", "project": "orbits", "fund": "CHEM-7"}


@pytest.fixture
def private_media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    settings.OPENCHARGEBACK_EMAIL_RETRY_DELAY = 0
    settings.OPENCHARGEBACK_INBOX = str(tmp_path / "inbox")
    return tmp_path


def run(config) -> tuple[int, dict]:
    out = io.StringIO()
    try:
        call_command(
            "cycle", "-p", PERIOD, "-c", str(config), "--json", "--wait", "120", stdout=out
        )
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, json.loads(out.getvalue())


@pytest.mark.django_db(transaction=True)
def test_cycle_through_real_workers(private_media, workers):  # noqa: F811
    ensure_journal_templates()
    config = private_media / "config.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    month = private_media / "inbox" / PERIOD
    month.mkdir(parents=True)
    rows = [focus_row(PERIOD, f"a-{i}", "10.0005", **ADA) for i in range(30)]
    rows += [focus_row(PERIOD, f"b-{i}", "3.3333", **BOB) for i in range(30)]
    rows += [focus_row(PERIOD, "c-1", "7.00", **{**CYD, "fund": "misc"})]  # flagged
    write_focus(month / "aws_april.csv", rows)
    workers("w1")

    code, report = run(config)
    assert code == 2 and "flagged" in report["action"]
    # What was imported is what the file holds: 30 x 10.0005 + 30 x 3.3333 + 7.00 = 407.014.
    billed = sum(c.billed_cost for c in Charge.objects.filter(period__key=PERIOD))
    assert billed == Decimal("407.014")

    svc.charge_reassign(
        charges=Charge.objects.filter(resource_id="c-1"),
        actor="finance",
        fund_org="CHEM-7",
        config=svc_config(config),
    )
    code, report = run(config)
    assert code == 0, report
    assert report["status"] == "closed"

    current = Statement.objects.filter(period__key=PERIOD, superseded_by__isnull=True)
    dues = {s.pi.email: s.due_amount for s in current}
    # Ada 300.015 -> 300.02; Bob 99.999 -> 100.00; Cyd 7.00.
    assert dues == {
        "ada@example.edu": Decimal("300.02"),
        "bob@example.edu": Decimal("100.00"),
        "cyd@example.edu": Decimal("7.00"),
    }
    assert all(s.status == "sent" and s.pdf_path for s in current)
    messages = mailed(private_media / "mail")
    assert sorted(m["To"] for m in messages) == sorted(dues)
    export = JournalExport.objects.get()
    with open(export.path, encoding="utf-8", newline="") as handle:
        debits = sum(Decimal(r["Debit"] or "0") for r in csv.DictReader(handle))
    assert debits == export.debit_amount == sum(dues.values()) == Decimal("407.02")

    # Once more: nothing mailed again, no second journal.
    code, report = run(config)
    assert code == 0
    assert len(mailed(private_media / "mail")) == len(messages)
    assert JournalExport.objects.count() == 1


def svc_config(path):
    from billing.config import load_config

    return load_config(str(path))
