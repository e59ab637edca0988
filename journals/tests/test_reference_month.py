"""The reference month (billing/tests/reference_month.py): the journals tie to its hand-written
statement figures, which are plain sums of its rows, to the cent."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

from accounts.models import AuditEvent
from billing.models import Charge
from journals.models import JournalExport
from journals.selectors import period_has_journal
from journals.services import journal_export

from .conftest import README_STATEMENTS, dec, read_csv, read_dicts


def per_fund_due() -> dict[str, Decimal]:
    due = defaultdict(Decimal)
    for _, _, fund, _, amount in README_STATEMENTS:
        due[fund] += Decimal(amount)
    return dict(due)


def test_all_reference_rows_are_billable(samples):
    assert Charge.objects.filter(period=samples).count() == 59
    assert not Charge.objects.filter(period=samples).exclude(
        review_status__in=Charge.BILLABLE_STATUSES
    )


def test_gl_balances_and_each_fund_gets_its_statements_amount_due(samples, config_path, run):
    result = json.loads(run("export_journal", "-p", "2025-01", "-c", config_path, "--json"))

    assert result["debit_total"] == {"USD": "20227.00"}
    assert result["credit_total"] == {"USD": "20227.00"}
    rows = read_dicts(result["file"])
    assert result["rows"] == len(rows) == 20
    debits = defaultdict(Decimal)
    credits = defaultdict(Decimal)
    for row in rows:
        assert bool(row["Debit"]) != bool(row["Credit"])  # one side per line, never negative
        assert dec(row["Debit"]) >= 0 and dec(row["Credit"]) >= 0
        debits[row["Fund/Org"]] += dec(row["Debit"])
        credits[row["Fund/Org"]] += dec(row["Credit"])
    assert sum(debits.values()) == sum(credits.values()) == Decimal("20227.00")
    assert {f: v for f, v in debits.items() if v} == {f: v for f, v in per_fund_due().items() if v}
    # One credit per source to its credit fund/org, with the source's account.
    assert {f: v for f, v in credits.items() if v} == {
        "IT-CLOUD-AWS": Decimal("19086.75"),
        "IT-CLOUD-AZURE": Decimal("735.25"),
        "IT-SECURE-STOR": Decimal("360.00"),
        "RC-STORAGE": Decimal("45.00"),
    }
    credit_accounts = {r["Fund/Org"]: r["Account"] for r in rows if r["Credit"]}
    assert credit_accounts["IT-CLOUD-AWS"] == "54100"
    assert credit_accounts["RC-STORAGE"] == "54300"


def test_detail_rows_add_up_to_the_same_total(samples, config):
    result = journal_export(period_key="2025-01", template="detail", config=config)

    rows = read_dicts(result.files[0]["file"])
    assert len(rows) == result.rows == 59
    assert sum(dec(r["Amount"]) for r in rows) == Decimal("20227.00")
    assert sum(dec(r["Billed Cost"]) for r in rows) == Decimal("20227.00")
    assert result.debit_total == {"USD": "20227.00"}
    # Per statement, the detail amounts add up to the README's amount due.
    due = defaultdict(Decimal)
    for r in rows:
        due[(r["PI Email"], r["Project"], r["Fund/Org"])] += dec(r["Amount"])
    assert due == {(pi, p, f): Decimal(d) for pi, p, f, _, d in README_STATEMENTS}


def test_summary_rows_are_the_statements(samples, config):
    result = journal_export(period_key="2025-01", template="summary", config=config)

    rows = read_dicts(result.files[0]["file"])
    got = [
        (r["PI Email"], r["Project"], r["Fund/Org"], r["List Amount"], r["Amount Due"])
        for r in rows
    ]
    assert got == README_STATEMENTS
    engr = next(r for r in rows if r["Project"] == "cfd-turbulence")
    assert engr["Discount"] == "3660.00"
    assert result.rows == 10


def test_erp_shaped_layouts_balance(samples, config):
    banner = journal_export(period_key="2025-01", template="banner-gl", config=config)
    rows = read_dicts(banner.files[0]["file"])
    dr = sum(dec(r["AMOUNT"]) for r in rows if r["DR_CR_IND"] == "D")
    cr = sum(dec(r["AMOUNT"]) for r in rows if r["DR_CR_IND"] == "C")
    assert dr == cr == Decimal("20227.00")
    first = rows[0]
    assert (first["FUND"], first["ORGN"], first["TRANS_DATE"]) == (
        "PILOT-2024",
        "ADNI",
        "31-Jan-2025",
    )
    assert all(len(r["DESCRIPTION"]) <= 35 for r in rows)

    peoplesoft = journal_export(period_key="2025-01", template="peoplesoft-gl", config=config)
    rows = read_dicts(peoplesoft.files[0]["file"])
    amounts = [Decimal(r["MONETARY_AMOUNT"]) for r in rows]
    assert sum(amounts) == 0  # signed: debits positive, credits negative
    assert min(amounts) == Decimal("-19086.75")
    # A negative amount stays a number: no apostrophe in front.
    assert any(r["MONETARY_AMOUNT"].startswith("-") for r in rows)
    assert all(len(r["LINE_DESCR"]) <= 30 for r in rows)
    assert rows[0]["JOURNAL_DATE"] == "01/31/2025"

    workday = journal_export(period_key="2025-01", template="workday-gl", config=config)
    rows = read_dicts(workday.files[0]["file"])
    debit = sum(dec(r["Debit Amount"]) for r in rows)
    credit = sum(dec(r["Credit Amount"]) for r in rows)
    assert debit == credit == Decimal("20227.00")
    # Split by project: grix's two projects stay apart even on one source.
    projects = {r["Project"] for r in rows if r["Debit Amount"]}
    assert {"alzheimers-biomarkers", "neuroimaging-atlas"} <= projects
    by_project = defaultdict(Decimal)
    for r in rows:
        by_project[r["Project"]] += dec(r["Debit Amount"])
    for _, project, _, _, due in README_STATEMENTS:
        assert by_project[project] == Decimal(due)


def test_same_period_and_template_twice_gives_identical_bytes(samples, config, tmp_path):
    first = journal_export(period_key="2025-01", template="gl", config=config)
    second = journal_export(period_key="2025-01", template="gl", config=config)
    third = journal_export(
        period_key="2025-01", template="gl", config=config, output=tmp_path / "again.csv"
    )

    assert first.files[0]["sha256"] == second.files[0]["sha256"] == third.files[0]["sha256"]
    assert Path(first.files[0]["file"]).read_bytes() == (tmp_path / "again.csv").read_bytes()
    assert JournalExport.objects.count() == 3


def test_each_export_is_recorded_and_audited(samples, config, django_user_model):
    user = django_user_model.objects.create_user("fran", password="x")
    assert not period_has_journal(samples)

    result = journal_export(period_key="2025-01", template="gl", config=config, acting_user=user)

    record = JournalExport.objects.get()
    path = Path(result.files[0]["file"])
    assert record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record.size_bytes == path.stat().st_size
    assert (record.rows, record.debit_amount, record.credit_amount) == (
        20,
        Decimal("20227.00"),
        Decimal("20227.00"),
    )
    assert (record.acting_user, record.actor, record.template.name) == (user, "fran", "gl")
    assert record.file_name == "journal-2025-01-gl-USD.csv" == path.name
    assert record.period_status == "open"
    event = AuditEvent.objects.get(action="journal.export")
    assert event.user == user
    assert event.details["debit_total"] == {"USD": "20227.00"}
    assert event.details["files"][0]["sha256"] == record.sha256
    assert period_has_journal(samples)


def test_summary_export_does_not_count_as_a_gl_journal(samples, config):
    journal_export(period_key="2025-01", template="summary", config=config)
    assert not period_has_journal(samples)


def test_file_parses_with_the_csv_module(samples, config):
    result = journal_export(period_key="2025-01", template="detail", config=config)
    rows = read_csv(result.files[0]["file"])
    assert len({len(r) for r in rows}) == 1
    raw = Path(result.files[0]["file"]).read_bytes()
    assert raw.decode("utf-8")  # UTF-8
    assert b"\r\n" in raw  # CR LF, as the template says
