"""Statement figures: the reference month to the cent, the rounding rule, labelled lines."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.models import PI, BillingPeriod, Charge, Project
from billing.money import exact_sum, round_cents
from billing.tests.reference_month import (
    REFERENCE_BY_SERVICE,
    REFERENCE_DISCOUNTS,
    REFERENCE_STATEMENTS,
)
from statements.figures import (
    billable_total,
    excluded_summary,
    group_totals,
    percent_text,
    statement_breakdown,
    statement_figures,
)

D = Decimal

# The reference month's hand-written table (billing/tests/reference_month.py):
# (PI, project, fund/org) -> (list, discount, due).
README = {
    (pi, project, fund): (lst, REFERENCE_DISCOUNTS[project], due)
    for pi, project, fund, lst, due in REFERENCE_STATEMENTS
}
README_BY_SERVICE = REFERENCE_BY_SERVICE


def assert_adds_up(f) -> None:
    """Lines add up to sections, sections to the statement, to the cent."""
    assert sum(s.due_amount for s in f.sections) == f.due_amount
    assert sum(s.list_amount for s in f.sections) == f.list_amount
    for s in f.sections:
        assert sum(ln.due_amount for ln in s.lines) == s.due_amount
        assert sum(ln.list_amount for ln in s.lines) == s.list_amount
        assert sum(ln.discount_amount for ln in s.lines) == s.discount_amount
    assert f.discount_amount == f.list_amount - f.due_amount


@pytest.mark.django_db
def test_reference_month_gives_the_ten_statements_of_the_readme(january):
    period = BillingPeriod.objects.get(key="2025-01")
    figures = statement_figures(period)

    got = {
        (f.pi_email, f.project_code, f.fund_org): (
            str(f.list_amount),
            str(f.discount_amount),
            str(f.due_amount),
        )
        for f in figures
    }
    assert got == README
    assert len({f.pi_email for f in figures}) == 7
    for f in figures:
        assert_adds_up(f)
    # The statements add up to the period's billable total, and to the table's.
    billable = exact_sum(
        c.billed_cost for c in Charge.objects.filter(period=period, review_status="clean")
    )
    assert sum(f.due_amount for f in figures) == billable == D("20227.00")
    assert sum(f.list_amount for f in figures) == D("32260.00")
    # By service, across statements: the table's figures.
    by_service = defaultdict(Decimal)
    for f in figures:
        for s in f.sections:
            by_service[s.label] += s.due_amount
    assert {k: str(v) for k, v in by_service.items()} == README_BY_SERVICE


@pytest.mark.django_db
def test_references_come_from_the_tags(january):
    period = BillingPeriod.objects.get(key="2025-01")
    f = next(f for f in statement_figures(period) if f.project_code == "genomics-sequencing")
    assert f.references["reference_1"] == ["NSF-DBI-2025-0410"]
    assert f.references["reference_2"] == ["REQ-2025-00077"]


def test_percent_is_never_100_unless_nothing_is_due():
    assert percent_text(D("3660.00"), D("3665.00"), D("5.00")) == "99.86%"
    assert percent_text(D("999.99"), D("1000.00"), D("0.01")) == "99.99%"
    assert percent_text(D("99999.99"), D("100000.00"), D("0.01")) == "99.99%"  # not 100.00%
    assert percent_text(D("100.00"), D("100.00"), D("0.00")) == "100.00%"
    assert percent_text(D("0.01"), D("100000.00"), D("99999.99")) == "0.01%"  # not 0.00%
    assert percent_text(D("0.00"), D("10.00"), D("10.00")) == "0.00%"
    assert percent_text(D("0.00"), D("-5.00"), D("-5.00")) == "—"
    assert percent_text(D("1234.50"), D("10000.00"), D("8765.50")) == "12.35%"


@pytest.fixture
def group(make_charges):
    """A factory of charges for one PI, project and fund/org."""
    pi = PI.objects.create(email="ada@example.edu", name="Ada Lovelace")
    project = Project.objects.create(code="engines")

    def make(costs, **fields):
        return make_charges(costs, pi=pi, project=project, fund_org="MATH-1843", **fields)

    return make


@pytest.mark.django_db
def test_ten_decimal_costs_round_once_and_lines_are_allocated(group):
    # Three resources at a third of a cent each: line by line rounding would lose a cent.
    for rid in ("a", "b", "c"):
        group(
            [D("0.0033333333")] * 3,
            service_name="Compute",
            resource_id=rid,
            list_cost=D("0.0050000001"),
        )
    group([D("10.004999999")], service_name="Storage", resource_id="s1")
    period = BillingPeriod.objects.get(key="2025-01")
    (f,) = statement_figures(period)
    exact = D("0.0033333333") * 9 + D("10.004999999")
    assert f.exact_billed == exact
    assert f.due_amount == round_cents(exact) == D("10.03")
    assert_adds_up(f)
    compute = next(s for s in f.sections if s.label == "Compute")
    assert sorted(ln.due_amount for ln in compute.lines) == [D("0.01"), D("0.01"), D("0.01")]
    # list: 9 × 0.0050000001 + 10.004999999 (no ListCost: billed counts as list)
    assert f.list_amount == round_cents(D("0.0050000001") * 9 + D("10.004999999"))


@pytest.mark.django_db
def test_credits_taxes_refunds_and_corrections_are_labelled_lines(group):
    group(
        [D("100.00")],
        service_name="Amazon EC2",
        resource_id="i-1",
        list_cost=D("120.00"),
        consumed_quantity=D("720"),
        consumed_unit="Hours",
        charge_category="Usage",
    )
    group([D("-15.00")], service_name="Amazon EC2", charge_category="Credit", list_cost=D("-15.00"))
    group([D("8.25")], service_name="Amazon EC2", charge_category="Tax")
    group([D("-3.00")], service_name="Amazon S3", charge_category="Refund")
    group(
        [D("-4.50")],
        service_name="Amazon EC2",
        resource_id="i-1",
        charge_category="Usage",
        charge_class="Correction",
        charge_period_start=datetime(2024, 12, 5, tzinfo=UTC),
    )
    period = BillingPeriod.objects.get(key="2025-01")
    (f,) = statement_figures(period)
    labels = [(s.category, s.label, str(s.due_amount)) for s in f.sections]
    assert labels == [
        ("usage", "Amazon EC2", "100.00"),
        ("credit", "Credits", "-15.00"),
        ("refund", "Refunds", "-3.00"),
        ("tax", "Taxes", "8.25"),
        ("correction", "Correction to December 2024", "-4.50"),
    ]
    assert f.due_amount == D("85.75")
    ec2 = f.sections[0].lines[0]
    assert (ec2.quantity, ec2.unit) == (D("720"), "Hours")
    assert_adds_up(f)


@pytest.mark.django_db
def test_flagged_and_rejected_charges_are_left_out_with_reasons(group):
    group([D("10.00")], service_name="Compute")
    group([D("2.50")], service_name="Compute", review_status="flagged", flags=8)
    group([D("1.25")], service_name="Compute", review_status="flagged", flags=8 | 16)
    group([D("4.00")], service_name="Compute", review_status="rejected", flags=16)
    group([D("7.00")], service_name="Compute", review_status="approved", flags=8)
    period = BillingPeriod.objects.get(key="2025-01")
    (f,) = statement_figures(period)
    assert f.due_amount == D("17.00")  # clean + approved
    out = excluded_summary(period)
    assert out["count"] == 3
    assert out["amount"] == {"USD": "7.75"}
    assert out["by_status"]["flagged"]["amount"] == {"USD": "3.75"}
    assert out["by_status"]["rejected"]["count"] == 1
    assert out["by_reason"]["fund_org_pattern"]["count"] == 2
    assert out["by_reason"]["pattern_match"]["amount"] == {"USD": "5.25"}


@pytest.mark.django_db
def test_a_project_with_two_funds_gets_two_statements(make_charges):
    pi = PI.objects.create(email="ada@example.edu")
    project = Project.objects.create(code="engines")
    make_charges([D("1.00")], pi=pi, project=project, fund_org="A-1")
    make_charges([D("2.00")], pi=pi, project=project, fund_org="B-2")
    make_charges([D("3.00")], pi=pi, project=project, fund_org="B-2", billing_currency="EUR")
    period = BillingPeriod.objects.get(key="2025-01")
    keys = [(f.fund_org, f.currency, str(f.due_amount)) for f in statement_figures(period)]
    assert keys == [("A-1", "USD", "1.00"), ("B-2", "EUR", "3.00"), ("B-2", "USD", "2.00")]


@pytest.mark.django_db
def test_breakdown_for_the_journal_ties_to_the_statements(group):
    group([D("0.005")] * 3, service_name="A", sub_account_id="x")
    group([D("0.005")] * 3, service_name="B", sub_account_id="y")
    period = BillingPeriod.objects.get(key="2025-01")
    (f,) = statement_figures(period)
    parts = statement_breakdown(period, ["sub_account_id"])
    assert sum(parts[f.key].values()) == f.due_amount == D("0.03")
    assert group_totals(period)[f.key]["due"] == f.due_amount


@pytest.mark.django_db
def test_synthetic_ten_decimal_month_statement_by_statement(ingest, tmp_path, write_file):
    """bench/focus_synth.py: 11- and 10-decimal costs, credits, untagged rows."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from focus_synth import generate

    path = tmp_path / "synth.csv"
    totals = generate(str(path), 6000, month="2025-01", seed=3)
    write_file(
        "synth.yaml",
        "currency: USD\nsources:\n  - {name: synth, pattern: synth}\n",
    )
    import io

    from django.core.management import call_command

    call_command(
        "ingest",
        str(path),
        "-s",
        "synth",
        "-p",
        "2025-01",
        "-c",
        str(tmp_path / "synth.yaml"),
        stdout=io.StringIO(),
    )
    period = BillingPeriod.objects.get(key="2025-01")
    figures = statement_figures(period)
    assert len(figures) > 100

    # Independently: load every billable charge and add it up in Python, per group.
    exact = defaultdict(list)
    listed = defaultdict(list)
    for c in Charge.objects.filter(period=period, review_status__in=Charge.BILLABLE_STATUSES):
        key = (c.pi_id, c.project_id, c.fund_org, c.billing_currency)
        exact[key].append(c.billed_cost)
        listed[key].append(c.list_cost if c.list_cost is not None else c.billed_cost)
    assert set(exact) == {f.key for f in figures}
    for f in figures:
        assert f.exact_billed == exact_sum(exact[f.key])
        assert f.due_amount == round_cents(exact_sum(exact[f.key]))
        assert f.list_amount == round_cents(exact_sum(listed[f.key]))
        assert_adds_up(f)
    billable = exact_sum(v for values in exact.values() for v in values)
    flagged = exact_sum(
        c.billed_cost for c in Charge.objects.filter(period=period, review_status="flagged")
    )
    assert billable + flagged == totals["billed"]  # nothing lost between file and statements
    # Rounded once per statement: the sum of amounts due is within half a cent per statement
    # of the rounded billable total.
    assert abs(sum(f.due_amount for f in figures) - round_cents(billable)) <= D("0.005") * len(
        figures
    )


@pytest.mark.django_db
def test_billable_total_from_the_figures_equals_the_charges_sum(make_charges):
    """Generation takes the billable total from the figures it already has (no second scan of
    the charges): the same exact sums, per currency, with flagged charges left out."""
    ada = PI.objects.create(email="ada@example.edu", name="Ada")
    bob = PI.objects.create(email="bob@example.edu", name="Bob")
    engines = Project.objects.create(code="engines")
    make_charges([D("0.0033333333")] * 7, pi=ada, project=engines, fund_org="F-1")
    make_charges([D("-1.25"), D("2.0000000001")], pi=bob, project=engines, fund_org="F-2")
    make_charges([D("3.1")], pi=bob, project=engines, fund_org="F-2", billing_currency="EUR")
    make_charges(
        [D("99")], pi=ada, project=engines, fund_org="F-1", review_status="flagged", flags=8
    )
    period = BillingPeriod.objects.get(key="2025-01")
    for who in (None, "bob@example.edu"):
        figures = statement_figures(period, pi_email=who)
        from_figures = billable_total(period, pi_email=who, figures=figures)
        assert from_figures == billable_total(period, pi_email=who)
    assert billable_total(period, figures=statement_figures(period)) == {
        "EUR": D("3.1"),
        "USD": D("0.0233333331") + D("0.7500000001"),
    }
