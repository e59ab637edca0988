"""Three month ends of one source, with figures worked out by hand (issue 11, item 8).

January: imported, reviewed, closed, generated and sent, journal exported, finalized.
February: a correction (a credit), a late credit for January delivered in February's file
(imported with -p 2026-02: flagged "other month", and January must not change), a reassignment
after the statements were sent, a regeneration (a revision) mailed again, the journal, finalize.
March: a restated delivery (replace) and an append part.

After every step the invariant checker (invariants.py) must find nothing. Runs on SQLite, and on
PostgreSQL when DATABASE_URL points there (CI's second run).
"""

from __future__ import annotations

import csv
from decimal import Decimal

import pytest
from django.core import mail

from billing.models import Charge
from billing.money import ExactSum

from . import chaos_adapter as svc
from .chaos import (
    CREDIT_FUNDS,
    FUND_PATTERN,
    focus_row,
    write_focus,
)
from .invariants import FileRows, ImportDone, Ledger

ADA = {"pi": "ada@example.edu", "project": "engines", "fund": "MATH-1843"}
BOB = {"pi": "bob@example.edu", "project": "looms", "fund": "PHYS-22"}


@pytest.fixture
def month_end(month_config):
    from billing.config import load_config

    return load_config(str(month_config()))


class Books:
    """The scenario's hand: imports through the service, the checker after every step."""

    def __init__(self, config, folder):
        self.config = config
        self.folder = folder
        self.ledger = Ledger(fund_org_pattern=FUND_PATTERN, credit_funds=set(CREDIT_FUNDS))
        self.fresh_statements: set[str] = set()
        self.fresh_journal: set[str] = set()

    def check(self):
        found = self.ledger.check(
            fresh_statements=self.fresh_statements, fresh_journal=self.fresh_journal
        )
        assert not found, "\n".join(found)

    def ingest(self, name, rows, *, period, append=False):
        path = write_focus(self.folder / name, rows)
        result = svc.import_files(
            paths=[path], source="aws", period=period, append=append, config=self.config
        )
        self.ledger.imported(
            ImportDone("aws", period, FileRows.read(path), append, result.status, name)
        )
        self.fresh_statements.discard(period)
        self.check()
        return result

    def decide(self, period, resource_ids, action, **kwargs):
        charges = Charge.objects.filter(period__key=period, resource_id__in=resource_ids)
        service = {
            "approve": svc.charge_approve,
            "reject": svc.charge_reject,
            "reassign": svc.charge_reassign,
        }[action]
        if action == "reassign":
            kwargs["config"] = self.config
        result = service(charges=charges, actor="finance", **kwargs)
        assert result.count == len(resource_ids)
        self.fresh_statements.discard(period)
        self.check()

    def close(self, period):
        svc.period_close(key=period, actor="finance")
        self.check()

    def generate_and_send(self, period):
        result = svc.statement_generate(period_key=period, send=True, config=self.config)
        self.fresh_statements.add(period)
        self.fresh_journal.discard(period)
        self.check()
        return result

    def journal(self, period) -> dict[str, tuple[Decimal, Decimal]]:
        """Export the GL journal; returns {fund/org: (debit, credit)} read back from the file."""
        result = svc.journal_export(period_key=period, template="gl", config=self.config)
        self.fresh_journal.add(period)
        self.check()
        lines: dict[str, tuple[Decimal, Decimal]] = {}
        with open(result.files[0]["file"], encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                debit, credit = lines.get(row["Fund/Org"], (Decimal(0), Decimal(0)))
                lines[row["Fund/Org"]] = (
                    debit + Decimal(row["Debit"] or "0"),
                    credit + Decimal(row["Credit"] or "0"),
                )
        return lines

    def finalize(self, period):
        svc.period_finalize(key=period, actor="finance")
        self.check()


def billed(period) -> Decimal:
    return Charge.objects.filter(period__key=period).aggregate(t=ExactSum("billed_cost"))["t"]


def current_due(period) -> dict[tuple[str, str], tuple[Decimal, int]]:
    from statements.models import Statement

    return {
        (s.pi.email, s.fund_org): (s.due_amount, s.revision)
        for s in Statement.objects.filter(period__key=period, superseded_by__isnull=True)
    }


@pytest.mark.django_db(transaction=True)
def test_three_month_ends(month_end, tmp_path):
    books = Books(month_end, tmp_path)
    D = Decimal

    # --- January --------------------------------------------------------------------------
    books.ingest(
        "aws_jan.csv",
        [
            focus_row("2026-01", "jan-1", "100.005", **ADA),
            focus_row("2026-01", "jan-2", "20.004", **ADA),
            focus_row("2026-01", "jan-3", "50.50", **BOB),
            focus_row("2026-01", "jan-4", "9.99", **{**BOB, "fund": "misc"}),  # fails pattern
        ],
        period="2026-01",
    )
    # 100.005 + 20.004 + 50.50 + 9.99 = 180.499, all four rows counted.
    assert billed("2026-01") == D("180.499")
    assert Charge.objects.get(resource_id="jan-4").review_status == "flagged"
    books.decide("2026-01", ["jan-4"], "reject", note="not a real fund")
    books.close("2026-01")
    books.generate_and_send("2026-01")
    # Ada: 100.005 + 20.004 = 120.009 -> 120.01; Bob: 50.50 (the rejected 9.99 is not billed).
    assert current_due("2026-01") == {
        ("ada@example.edu", "MATH-1843"): (D("120.01"), 0),
        ("bob@example.edu", "PHYS-22"): (D("50.50"), 0),
    }
    assert sorted(m.to[0] for m in mail.outbox) == ["ada@example.edu", "bob@example.edu"]
    # GL: the PI funds debited, the source's credit fund credited 120.01 + 50.50 = 170.51.
    assert books.journal("2026-01") == {
        "MATH-1843": (D("120.01"), D(0)),
        "PHYS-22": (D("50.50"), D(0)),
        "IT-CLOUD": (D(0), D("170.51")),
    }
    books.finalize("2026-01")
    january = books.ledger.snapshot(_period("2026-01"))

    # --- February -------------------------------------------------------------------------
    books.ingest(
        "aws_feb.csv",
        [
            focus_row("2026-02", "feb-1", "30.00", **ADA),
            focus_row("2026-02", "feb-2", "40.125", **BOB),
            focus_row("2026-02", "feb-3", "-5.005", category="Credit", **BOB),  # a correction
            # A late credit for January in February's delivery: flagged "other month", billed
            # in February once approved; finalized January must not move.
            focus_row("2026-01", "late-1", "-10.00", category="Credit", **ADA),
        ],
        period="2026-02",
    )
    late = Charge.objects.get(resource_id="late-1")
    assert late.period.key == "2026-02"
    assert late.review_status == "flagged" and "other_period" in late.reasons
    assert books.ledger.snapshot(_period("2026-01")) == january
    assert billed("2026-01") == D("180.499")
    books.decide("2026-02", ["late-1"], "approve")
    # 30.00 + 40.125 - 5.005 - 10.00 = 55.12
    assert billed("2026-02") == D("55.120")
    books.close("2026-02")
    books.generate_and_send("2026-02")
    # Ada: 30.00 - 10.00 = 20.00; Bob: 40.125 - 5.005 = 35.12.
    assert current_due("2026-02") == {
        ("ada@example.edu", "MATH-1843"): (D("20.00"), 0),
        ("bob@example.edu", "PHYS-22"): (D("35.12"), 0),
    }
    assert len(mail.outbox) == 4
    # After the send, Bob's 40.125 moves to CHEM-7: his PHYS-22 statement (sent) gets a
    # revision of -5.005 -> -5.01 (half up, away from zero), and CHEM-7 a new one of 40.13.
    books.decide("2026-02", ["feb-2"], "reassign", fund_org="CHEM-7")
    books.generate_and_send("2026-02")
    assert current_due("2026-02") == {
        ("ada@example.edu", "MATH-1843"): (D("20.00"), 0),
        ("bob@example.edu", "PHYS-22"): (D("-5.01"), 1),
        ("bob@example.edu", "CHEM-7"): (D("40.13"), 0),
    }
    # Only Bob is mailed again (his revision and his new statement); Ada's is unchanged.
    assert [m.to[0] for m in mail.outbox[4:]] == ["bob@example.edu"]
    # Debits 20.00 + 40.13 = 60.13, PHYS-22 credited 5.01, the source 60.13 - 5.01 = 55.12.
    assert books.journal("2026-02") == {
        "MATH-1843": (D("20.00"), D(0)),
        "CHEM-7": (D("40.13"), D(0)),
        "PHYS-22": (D(0), D("5.01")),
        "IT-CLOUD": (D(0), D("55.12")),
    }
    books.finalize("2026-02")
    assert books.ledger.snapshot(_period("2026-01")) == january

    # --- March ----------------------------------------------------------------------------
    books.ingest(
        "aws_mar.csv",
        [
            focus_row("2026-03", "mar-1", "11.11", **ADA),
            focus_row("2026-03", "mar-2", "22.22", **BOB),
        ],
        period="2026-03",
    )
    # The provider restates March: mar-1 as it was, mar-2 lower, mar-3 new. Replace.
    result = books.ingest(
        "aws_mar_restated.csv",
        [
            focus_row("2026-03", "mar-1", "11.11", **ADA),
            focus_row("2026-03", "mar-2", "22.20", **BOB),
            focus_row("2026-03", "mar-3", "3.333", **ADA),
        ],
        period="2026-03",
    )
    assert (result.status, result.rows_added, result.rows_removed) == ("replaced", 2, 1)
    # An append part: two more of Bob's rows.
    books.ingest(
        "aws_mar_part2.csv",
        [
            focus_row("2026-03", "mar-4", "0.005", **BOB),
            focus_row("2026-03", "mar-5", "0.004", **BOB),
        ],
        period="2026-03",
        append=True,
    )
    # 11.11 + 22.20 + 3.333 + 0.005 + 0.004 = 36.652
    assert billed("2026-03") == D("36.652")
    assert Charge.objects.filter(period__key="2026-03").count() == 5
    books.close("2026-03")
    books.generate_and_send("2026-03")
    # Ada: 11.11 + 3.333 = 14.443 -> 14.44; Bob: 22.20 + 0.005 + 0.004 = 22.209 -> 22.21.
    assert current_due("2026-03") == {
        ("ada@example.edu", "MATH-1843"): (D("14.44"), 0),
        ("bob@example.edu", "PHYS-22"): (D("22.21"), 0),
    }
    assert books.journal("2026-03") == {
        "MATH-1843": (D("14.44"), D(0)),
        "PHYS-22": (D("22.21"), D(0)),
        "IT-CLOUD": (D(0), D("36.65")),
    }
    books.finalize("2026-03")
    assert books.ledger.snapshot(_period("2026-01")) == january
    assert len(mail.outbox) == 7


def _period(key):
    from billing.models import BillingPeriod

    return BillingPeriod.objects.get(key=key)
