"""10- and 11-decimal costs (bench/focus_synth.py): the GL debits of each PI fund/org equal the
amounts due of that fund's statements, to the cent, where rounding each journal line on its own
would not."""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from billing.models import Charge
from billing.money import MONEY_CONTEXT, round_cents
from billing.services import import_files
from billing.tests.conftest import REPO
from journals.services import journal_export

from .conftest import make_config, read_dicts

sys.path.insert(0, str(REPO / "bench"))
from focus_synth import generate  # noqa: E402

SYNTH_CONFIG = """
currency: USD
tag_mapping: {reference_1: grant_number}
sources:
  - {name: aws, credit_fund_org: IT-CLOUD-AWS, account_code: "54100"}
  - {name: azure, credit_fund_org: IT-CLOUD-AZURE, account_code: "54100"}
  - {name: hpc, credit_fund_org: RC-HPC-OPS, account_code: "54200"}
review:
  fund_org_patterns: ['^[A-Z]{2,6}-[A-Z0-9-]+$']
journal:
  default_account: "54000"
"""
PREFIX_SOURCE = {"AWS": "aws", "AZ": "azure", "HPC": "hpc"}


@pytest.fixture
def synthetic_month(db, tmp_path):
    """20,000 synthetic rows of 2025-01, split by provider into three sources."""
    whole = tmp_path / "synth.csv"
    generate(whole, 20_000, month="2025-01", seed=7)
    with open(whole, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        invoice = header.index("InvoiceId")
        parts: dict[str, list] = defaultdict(list)
        for row in reader:
            parts[PREFIX_SOURCE[row[invoice].split("-")[0]]].append(row)
    config = make_config(SYNTH_CONFIG)
    for source, rows in parts.items():
        path = tmp_path / f"{source}.csv"
        with open(path, "w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(header)
            writer.writerows(rows)
        import_files(paths=[path], source=source, config=config, actor="test")
    return config


def statements_due_per_fund() -> dict[str, Decimal]:
    """Independently: exact sum per (PI, project, fund/org), rounded once, summed per fund."""
    exact = defaultdict(Decimal)
    charges = Charge.objects.filter(review_status__in=Charge.BILLABLE_STATUSES).values_list(
        "pi_id", "project_id", "fund_org", "billed_cost"
    )
    for pi, project, fund, cost in charges:
        exact[(pi, project, fund)] = MONEY_CONTEXT.add(exact[(pi, project, fund)], cost)
    due = defaultdict(Decimal)
    for (_, _, fund), total in exact.items():
        due[fund] += round_cents(total)
    return dict(due)


def test_gl_debits_per_fund_equal_the_statements_to_the_cent(synthetic_month):
    config = synthetic_month
    costs = Charge.objects.values_list("billed_cost", flat=True)[:200]
    assert max(-c.as_tuple().exponent for c in costs) >= 10  # the data really has 10+ places
    billable = Charge.objects.filter(review_status__in=Charge.BILLABLE_STATUSES).count()
    assert billable > 19_000

    result = journal_export(period_key="2025-01", template="gl", config=config)

    rows = read_dicts(result.files[0]["file"])
    credit_funds = {"IT-CLOUD-AWS", "IT-CLOUD-AZURE", "RC-HPC-OPS"}
    journal = defaultdict(Decimal)
    naive = defaultdict(Decimal)
    for row in rows:
        if row["Fund/Org"] in credit_funds:
            continue
        journal[row["Fund/Org"]] += Decimal(row["Debit"] or 0) - Decimal(row["Credit"] or 0)
    expected = statements_due_per_fund()
    assert len(expected) > 900
    assert journal == {fund: due for fund, due in expected.items() if due}
    debit = Decimal(result.debit_total["USD"])
    assert debit == Decimal(result.credit_total["USD"])

    # The test can fail: rounding each (fund, source) line on its own misses the statements.
    exact_lines = defaultdict(Decimal)
    for fund, source, cost in Charge.objects.filter(
        review_status__in=Charge.BILLABLE_STATUSES
    ).values_list("fund_org", "source__name", "billed_cost"):
        exact_lines[(fund, source)] = MONEY_CONTEXT.add(exact_lines[(fund, source)], cost)
    for (fund, _), total in exact_lines.items():
        naive[fund] += round_cents(total)
    assert any(naive[f] != expected[f] for f in expected)

    # Summary and detail exports tie to the same statements. Their totals are net (some
    # statements are negative: credits exceed charges), so they equal the GL's net PI debits.
    summary = journal_export(period_key="2025-01", template="summary", config=config)
    detail = journal_export(period_key="2025-01", template="detail", config=config)
    total = sum(journal.values())
    assert total == sum(expected.values())
    assert summary.debit_total["USD"] == detail.debit_total["USD"] == str(total)
    summary_rows = read_dicts(summary.files[0]["file"])
    assert sum(Decimal(r["Amount Due"]) for r in summary_rows) == total
    detail_rows = read_dicts(detail.files[0]["file"])
    assert len(detail_rows) == detail.rows == sum(int(r["Charges"]) for r in summary_rows)
    assert sum(Decimal(r["Amount"]) for r in detail_rows) == total
    # Each charge's cents are within a cent of its exact cost.
    assert all(
        abs(Decimal(r["Amount"]) - Decimal(r["Billed Cost"])) < Decimal("0.01") for r in detail_rows
    )
    assert Path(detail.files[0]["file"]).stat().st_size > 1_000_000
