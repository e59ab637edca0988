"""`openchargeback cycle`: the month end without a person, stopping where one must act.

Run as a finance office would meet it: a flagged charge stops the month, a review lets it go on,
a crash between steps is finished by the next pass, a second pass changes nothing, and a file
that arrives after the close is reported, not imported. The figures are checked against each
other (imported, statements, journal, emails) at the end.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from decimal import Decimal

import pytest
from django.core import mail
from django.core.management import call_command

from billing.models import BillingPeriod, Charge, Import
from journals.models import JournalExport
from statements.models import Statement, StatementEmail

from . import chaos_adapter as svc
from .chaos import focus_row, write_focus

PERIOD = "2026-04"
ADA = {"pi": "ada@example.edu", "project": "engines", "fund": "MATH-1843"}
BOB = {"pi": "bob@example.edu", "project": "looms", "fund": "PHYS-22"}
CONFIG = """
currency: USD
sources:
  - {name: aws, pattern: aws, credit_fund_org: IT-CLOUD, account_code: "54100"}
  - {name: hpc, pattern: slurm, credit_fund_org: RC-HPC, account_code: "54200"}
review:
  fund_org_patterns: ['^[A-Z]{2,6}-[A-Z0-9-]+$']
journal:
  fund_org_regex: '^(?P<orgn>[A-Z]+)-(?P<fund>.+)$'
  default_account: "54000"
email:
  from_address: billing@example.edu
"""


@pytest.fixture
def office(month_config, settings, tmp_path):
    settings.OPENCHARGEBACK_INBOX = str(tmp_path / "inbox")
    config = month_config(CONFIG)
    month = tmp_path / "inbox" / PERIOD
    (month / "hpc").mkdir(parents=True)
    write_focus(
        month / "aws_april.csv",
        [
            focus_row(PERIOD, "a-1", "100.005", **ADA),
            focus_row(PERIOD, "a-2", "-0.50", **ADA),  # a credit
            focus_row(PERIOD, "a-3", "9.99", **{**BOB, "fund": "misc"}),  # fails the pattern
        ],
    )
    # In the source's own folder: no name guess needed.
    write_focus(month / "hpc" / "jobs.csv", [focus_row(PERIOD, "h-1", "33.333", **BOB)])
    return config


def cycle(config, *args) -> tuple[int, dict]:
    out = io.StringIO()
    try:
        call_command("cycle", "-p", PERIOD, "-c", str(config), "--json", *args, stdout=out)
        code = 0
    except SystemExit as exc:
        code = exc.code
    report = json.loads(out.getvalue())
    assert report["exit_code"] == code
    return code, report


def steps(report, name):
    return [s for s in report["steps"] if s["step"] == name]


@pytest.mark.django_db(transaction=True)
def test_the_month_stops_for_review_survives_a_crash_and_a_second_pass_changes_nothing(
    office, monkeypatch
):
    # Pass 1: both sources imported, one charge flagged -> a person must act; nothing closed.
    code, report = cycle(office)
    assert code == 2 and report["outcome"] == "needs-a-person"
    assert "1 charge(s) in 2026-04 are flagged" in report["action"]
    assert sorted(s["source"] for s in steps(report, "import")) == ["aws", "hpc"]
    assert report["status"] == "open"
    assert Import.objects.count() == 2

    # Pass 2 before the review: the importer skips the files it has; still waiting for a person.
    code, report = cycle(office)
    assert code == 2
    assert [s["result"] for s in steps(report, "import")] == ["already imported"] * 2
    assert Import.objects.count() == 2
    assert Charge.objects.filter(period__key=PERIOD).count() == 4

    svc.charge_reject(
        charges=Charge.objects.filter(resource_id="a-3"), actor="finance", note="no such fund"
    )

    # Pass 3 crashes after the statements were sent, before the journal.
    import journals.cycle

    real_export = journals.cycle.journal_export

    def crash(**kwargs):
        raise RuntimeError("the machine went down")

    monkeypatch.setattr(journals.cycle, "journal_export", crash)
    with pytest.raises(RuntimeError):
        cycle(office)
    assert BillingPeriod.objects.get(key=PERIOD).status == "closed"
    assert len(mail.outbox) == 2
    assert not JournalExport.objects.exists()

    # Pass 4 finishes the month: no email sent twice, the journal exported.
    monkeypatch.setattr(journals.cycle, "journal_export", real_export)
    code, report = cycle(office)
    assert code == 0, report
    assert steps(report, "journal")[0]["result"] == "exported"
    assert len(mail.outbox) == 2
    assert {m.to[0] for m in mail.outbox} == {"ada@example.edu", "bob@example.edu"}

    # The figures agree: Ada 100.005 - 0.50 = 99.505 -> 99.51; Bob 33.333 -> 33.33.
    current = Statement.objects.filter(period__key=PERIOD, superseded_by__isnull=True)
    dues = {s.pi.email: s.due_amount for s in current}
    assert dues == {"ada@example.edu": Decimal("99.51"), "bob@example.edu": Decimal("33.33")}
    assert all(s.status == "sent" for s in current)
    export = JournalExport.objects.get()
    assert export.debit_amount == export.credit_amount == Decimal("132.84")
    with open(export.path, encoding="utf-8", newline="") as handle:
        debits = sum(Decimal(r["Debit"] or "0") for r in csv.DictReader(handle))
    assert debits == sum(dues.values())

    # Pass 5: nothing left to do, and nothing done again.
    runs_before = StatementEmail.objects.count()
    code, report = cycle(office, "--finalize")
    assert code == 0
    assert steps(report, "journal")[0]["result"] == "current journal on record"
    assert StatementEmail.objects.count() == runs_before
    assert len(mail.outbox) == 2
    assert JournalExport.objects.count() == 1
    assert report["status"] == "finalized"

    # And on a finalized month, a pass is a no-op.
    code, report = cycle(office)
    assert code == 0 and report["steps"][0]["result"].startswith("finalized already")


@pytest.mark.django_db(transaction=True)
def test_a_gzipped_inbox_file_is_known_by_its_content_on_the_next_pass(office, tmp_path):
    # The import records a compressed file by what it decompresses to; the cycle must ask the
    # same question, or every pass imports the .gz again and a closed month calls it late.
    month = tmp_path / "inbox" / PERIOD
    plain = month / "aws_april.csv"
    (month / "aws_april.csv.gz").write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    cycle(office)
    code, report = cycle(office)
    assert [s["result"] for s in steps(report, "import")] == ["already imported"] * 2
    assert Import.objects.count() == 2

    svc.charge_reject(charges=Charge.objects.filter(resource_id="a-3"), actor="finance", note="x")
    code, report = cycle(office)
    assert code == 0, report
    code, report = cycle(office)
    assert code == 0 and "after it was closed" not in (report["action"] or "")


@pytest.mark.django_db(transaction=True)
def test_a_file_after_the_close_or_of_no_known_source_stops_for_a_person(office, tmp_path):
    month = tmp_path / "inbox" / PERIOD
    write_focus(month / "mystery.csv", [focus_row(PERIOD, "m-1", "1.00", **ADA)])
    code, report = cycle(office)
    assert code == 2 and "mystery.csv matches no source" in report["action"]
    assert not Import.objects.exists()  # nothing imported half-way

    # A name two sources' patterns match (aws, slurm) is not guessed either.
    (month / "mystery.csv").rename(month / "aws_slurm_export.csv")
    code, report = cycle(office)
    assert code == 2 and "aws_slurm_export.csv matches aws and hpc" in report["action"]
    assert not Import.objects.exists()
    (month / "aws_slurm_export.csv").rename(month / "mystery.csv")

    (month / "mystery.csv").rename(month / "hpc" / "mystery.csv")
    svc.import_files(
        paths=[month / "aws_april.csv"], source="aws", period=PERIOD, config=_config(office)
    )
    svc.charge_reject(charges=Charge.objects.filter(resource_id="a-3"), actor="finance", note="x")
    code, report = cycle(office)
    assert code == 0, report

    write_focus(month / "aws_april_late.csv", [focus_row(PERIOD, "l-1", "5.00", **ADA)])
    code, report = cycle(office)
    assert code == 2 and "arrived for 2026-04 after it was closed" in report["action"]
    assert "aws_april_late.csv" in report["action"]
    assert not Charge.objects.filter(resource_id="l-1").exists()


@pytest.mark.django_db(transaction=True)
def test_an_empty_month_a_missing_inbox_and_a_bad_period_are_reported(office, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    code, report = cycle(office, "--inbox", str(tmp_path / "elsewhere"))
    assert code == 2 and "nothing to bill" in report["action"]
    assert not BillingPeriod.objects.filter(key=PERIOD, status="closed").exists()

    # A mistyped inbox is not a quiet month.
    code, report = cycle(office, "--inbox", str(tmp_path / "elsewere"))
    assert code == 2 and "elsewere does not exist" in report["action"]

    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("cycle", "-p", "2026-4", "-c", str(office), "--json", stdout=out)
    assert exit_.value.code == 1
    assert json.loads(out.getvalue())["action"] == "period must be YYYY-MM, got '2026-4'"
    assert not BillingPeriod.objects.exists()


def _config(path):
    from billing.config import load_config

    return load_config(str(path))
