"""The journal ties to the statements on record: its debits are the current statements' amounts
due, per fund/org and currency, to the cent; when the billable charges changed since the
statements were generated (a reassignment after a send, a charge approved after generation), the
export refuses, names the period and says to regenerate, and writes nothing.

Run on SQLite and, with DATABASE_URL set, on PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from billing.models import BillingPeriod, Charge
from billing.services import charge_approve, charge_reassign, import_files, period_close
from journals.build import JournalRefused
from journals.services import journal_export
from statements.models import Statement
from statements.services import statement_generate, statement_send

from .conftest import GOOD_TAGS, approve_all, dec, focus_text, read_dicts

# Statements render and mail after commit, as in production.
pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal
BOB = {"pi_email": "bob@example.edu", "project_id": "optics", "fund_org": "PHYS-7"}
GRACE = {"pi_email": "grace@example.edu", "project_id": "zero", "fund_org": "CHEM-1"}


@pytest.fixture
def month(load_rows, small_config, mailoutbox):
    """2025-01, open: Ada's MATH-1843 group over two sources with sub-cent parts, Bob's PHYS-7,
    Grace's group that nets to zero, and one EUR charge (flagged for its currency, approved)."""
    call_command("loaddata", "journal_templates", verbosity=0)  # flushed with the transaction
    load_rows(
        [
            {"BilledCost": "10.005", "ResourceId": "a-1"},
            {"BilledCost": "0.0049", "ResourceId": "a-2"},
            {"BilledCost": "2.00", "ResourceId": "b-1", "Tags": BOB},
            {"BilledCost": "1.00", "ResourceId": "g-1", "Tags": GRACE},
            {"BilledCost": "-1.00", "ResourceId": "g-2", "Tags": GRACE},
            {"BilledCost": "7.125", "ResourceId": "e-1", "BillingCurrency": "EUR"},
        ]
    )
    load_rows([{"BilledCost": "5.0051", "ResourceId": "h-1"}], source="hpc")
    assert approve_all() == 1  # the EUR charge
    return BillingPeriod.objects.get(key="2025-01")


@pytest.fixture
def append_rows(tmp_path, small_config):
    """A later delivery appended to the aws file of the month (the month's rows stay)."""

    def append(rows: list[dict]):
        path = tmp_path / f"late-{len(list(tmp_path.glob('late-*')))}.csv"
        path.write_text(focus_text(rows), encoding="utf-8", newline="")
        import_files(paths=[path], source="aws", append=True, config=small_config, actor="test")

    return append


def export(config, template="gl"):
    result = journal_export(period_key="2025-01", template=template, config=config)
    return {f["currency"]: read_dicts(f["file"]) for f in result.files}


def debits_per_fund(rows) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        if row["Debit"] or row.get("Side") == "D":
            totals[row["Fund/Org"]] += dec(row["Debit"])
    return dict(totals)


def statements_due() -> dict[tuple[str, str], Decimal]:
    """Current statements' amounts due per (currency, fund/org)."""
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for s in Statement.objects.filter(superseded_by__isnull=True):
        totals[(s.currency, s.fund_org)] += s.due_amount
    return {k: v for k, v in totals.items() if v}


def journal_due(journals) -> dict[tuple[str, str], Decimal]:
    out = {}
    for currency, rows in journals.items():
        debit = sum((dec(r["Debit"]) for r in rows), D(0))
        credit = sum((dec(r["Credit"]) for r in rows), D(0))
        assert debit == credit, (currency, debit, credit)  # balanced
        for fund, amount in debits_per_fund(rows).items():
            out[(currency, fund)] = amount
    return out


def refused(config) -> str:
    with pytest.raises(JournalRefused) as info:
        journal_export(period_key="2025-01", template="gl", config=config)
    return str(info.value)


def test_gl_template_has_the_columns_these_tests_read(month, small_config):
    rows = export(small_config)["USD"]
    assert {"Fund/Org", "Debit", "Credit"} <= set(rows[0])


def test_journal_equals_the_statements_on_record_multi_currency_and_a_zero_group(
    month, small_config
):
    statement_generate(period_key="2025-01", config=small_config)  # drafts: the period is open

    assert statements_due() == {
        ("USD", "MATH-1843"): D("15.02"),  # 10.005 + 0.0049 + 5.0051 = 15.0150 → 15.02
        ("USD", "PHYS-7"): D("2.00"),
        ("EUR", "MATH-1843"): D("7.13"),
    }
    assert Statement.objects.get(fund_org="CHEM-1").due_amount == D("0.00")  # on record
    assert journal_due(export(small_config)) == statements_due()


def test_post_send_reassignment_refuses_until_regenerated_then_ties(
    month, small_config, instance_dir, run, small_config_path
):
    period_close(key="2025-01")
    statement_generate(period_key="2025-01", config=small_config)
    statement_send(period_key="2025-01", config=small_config)
    assert Statement.objects.filter(sent_at__isnull=False).count() == 4
    first = export(small_config)
    assert journal_due(first) == statements_due()

    # After the send, Bob's charge is found to be Ada's lab's: reassigned in the review queue.
    charge_reassign(
        charges=Charge.objects.filter(resource_id="b-1"),
        config=small_config,
        pi_email="ada@example.edu",
        project_id="engines",
        fund_org="MATH-1843",
    )

    message = refused(small_config)
    assert "period 2025-01: the billable charges changed since its statements were generated" in (
        message
    )
    assert "run `openchargeback generate -p 2025-01`" in message
    assert "says 2.00 USD over 1 charge(s); no billable charge of that group is left" in message
    assert "says 15.02 USD over 3 charge(s); the charges now make 17.02 USD over 4" in message
    with pytest.raises(CommandError, match="generate -p 2025-01"):
        run("export_journal", "-p", "2025-01", "-c", small_config_path)

    statement_generate(period_key="2025-01", config=small_config)
    assert Statement.objects.filter(superseded_by__isnull=False).count() == 2  # two revisions

    journals = export(small_config)
    assert (
        journal_due(journals)
        == statements_due()
        == {
            ("USD", "MATH-1843"): D("17.02"),
            ("EUR", "MATH-1843"): D("7.13"),
        }
    )
    # Bob's sent statement was revised to 0.00: it is on record and the journal ties to it.
    assert Statement.objects.get(fund_org="PHYS-7", superseded_by__isnull=True).due_amount == 0


def test_a_charge_approved_after_generation_refuses_until_regenerated(
    month, append_rows, small_config
):
    append_rows(
        [{"BilledCost": "3.00", "ResourceId": "late", "BillingCurrency": "EUR", "Tags": GOOD_TAGS}]
    )
    assert Charge.objects.get(resource_id="late").review_status == "flagged"  # its currency
    statement_generate(period_key="2025-01", config=small_config)
    export(small_config)  # the flagged one is on no statement and in no journal: they tie

    charge_approve(charges=Charge.objects.filter(resource_id="late"), config=small_config)

    message = refused(small_config)
    assert "says 7.13 EUR over 1 charge(s); the charges now make 10.13 EUR over 2" in message

    statement_generate(period_key="2025-01", config=small_config)
    assert journal_due(export(small_config)) == statements_due()
    assert statements_due()[("EUR", "MATH-1843")] == D("10.13")


def test_a_new_group_after_generation_has_no_statement_and_refuses(month, load_rows, small_config):
    statement_generate(period_key="2025-01", config=small_config)
    load_rows([{"BilledCost": "4.00", "ResourceId": "new", "Tags": {**BOB, "fund_org": "PHYS-8"}}])

    message = refused(small_config)
    assert "fund/org 'PHYS-8': no statement on record; the charges now make 4.00 USD over 1" in (
        message
    )


def test_without_statements_the_journal_is_what_generate_would_record(month, small_config):
    journals = export(small_config)
    statement_generate(period_key="2025-01", config=small_config)
    assert journal_due(journals) == statements_due()


@pytest.mark.postgres
def test_postgres_an_approval_during_an_export_waits_and_the_next_export_refuses(
    month, append_rows, small_config, monkeypatch
):
    """Two sessions: an export has checked the tie and holds the period; an approval of a late
    charge must wait for it (it never lands between the check and the file), and the next export
    refuses until the statements are regenerated."""
    import threading
    import time

    from django.db import connection, connections

    from journals import selectors

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL)")
    append_rows([{"BilledCost": "3.00", "ResourceId": "late", "BillingCurrency": "EUR"}])
    statement_generate(period_key="2025-01", config=small_config)
    checked, release = threading.Event(), threading.Event()
    real_tie = selectors.statement_tie

    def tie_then_hold(*args):
        problems = real_tie(*args)
        checked.set()
        release.wait(60)
        return problems

    monkeypatch.setattr(selectors, "statement_tie", tie_then_hold)
    outcome = {}

    def session(name, work):
        try:
            outcome[name] = work()
        except Exception as exc:  # reported by the asserts below
            outcome[name] = exc
        finally:
            connections.close_all()

    exporting = threading.Thread(
        target=session,
        args=(
            "export",
            lambda: journal_export(period_key="2025-01", template="gl", config=small_config),
        ),
    )
    exporting.start()
    assert checked.wait(60), "the export never reached its tie check"
    approving = threading.Thread(
        target=session,
        args=(
            "approve",
            lambda: charge_approve(
                charges=Charge.objects.filter(resource_id="late"), config=small_config
            ),
        ),
    )
    approving.start()
    # Wait until the approval is blocked on a lock held by the export (PostgreSQL says so).
    with connections["default"].cursor() as cursor:
        for _ in range(600):
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the approval did not wait for the export's lock")
    assert "approve" not in outcome
    release.set()
    exporting.join(60)
    approving.join(60)
    monkeypatch.setattr(selectors, "statement_tie", real_tie)

    exported = outcome["export"]
    assert not isinstance(exported, Exception), exported
    assert exported.debit_total["EUR"] == "7.13"  # the statements on record, not 10.13
    assert outcome["approve"].count == 1
    assert "says 7.13 EUR over 1 charge(s); the charges now make 10.13 EUR over 2" in refused(
        small_config
    )
