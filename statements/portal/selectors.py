"""Reads for the portal: a PI's statements by period, and the open month so far.

Amounts a PI sees follow the statements' rule (statements/figures.py): exact sums, rounded to
the cent once per group, and a breakdown allocated from the rounded total so that its rows add up
to it. List price is ListCost, or BilledCost where no ListCost was delivered.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Count, Q
from django.db.models.functions import Coalesce

from billing.models import PI, BillingPeriod, Charge
from billing.money import ZERO, ExactSum, exact_sum, round_cents
from billing.rounding import allocate_cents
from statements.figures import percent_text
from statements.groups import PartSpec, statement_groups
from statements.models import Statement

from .access import visible_statements

UNDER_REVIEW = "under review"
BY_SERVICE = PartSpec(
    values={"service": "service_name"}, key=lambda row: row["service"] or "(no service)"
)
BILLABLE = "billable"


@dataclass
class PeriodStatements:
    period: BillingPeriod
    statements: list[Statement]
    totals: dict[str, dict[str, Decimal]]  # currency -> list, discount, due


def statement_periods(user, pi: PI) -> list[PeriodStatements]:
    """The PI's current statements, newest period first, with each period's totals."""
    statements = (
        visible_statements(user)
        .filter(pi=pi, superseded_by__isnull=True)
        .select_related("period", "project")
        .order_by("-period__key", "number")
    )
    by_period: dict[int, PeriodStatements] = {}
    for s in statements:
        s.discount_percent = percent_text(s.discount_amount, s.list_amount, s.due_amount)
        group = by_period.setdefault(s.period_id, PeriodStatements(s.period, [], {}))
        group.statements.append(s)
        t = group.totals.setdefault(s.currency, {"list": ZERO, "discount": ZERO, "due": ZERO})
        t["list"] += s.list_amount
        t["discount"] += s.discount_amount
        t["due"] += s.due_amount
    return list(by_period.values())


def charge_periods(pi: PI) -> list[BillingPeriod]:
    """Periods in which the PI has charges (not rejected), newest first: for the CSV links."""
    ids = (
        Charge.objects.filter(pi=pi)
        .exclude(review_status=Charge.ReviewStatus.REJECTED)
        .values("period_id")
        .distinct()
    )
    return list(BillingPeriod.objects.filter(pk__in=ids).order_by("-key"))


@dataclass
class OpenRow:
    project: str
    fund_org: str
    service: str
    state: str  # BILLABLE or UNDER_REVIEW
    charges: int
    exact_list: Decimal
    exact_billed: Decimal
    list_amount: Decimal = ZERO
    due_amount: Decimal = ZERO

    @property
    def discount_amount(self) -> Decimal:
        return self.list_amount - self.due_amount


@dataclass
class OpenGroup:
    """One (project, fund/org, currency) of an open month, rows allocated from its totals."""

    project: str
    fund_org: str
    currency: str
    rows: list[OpenRow] = field(default_factory=list)
    key: tuple = ()  # the statement group: (pi_id, project_id, fund_org, currency)
    billable_list: Decimal = ZERO
    billable_due: Decimal = ZERO
    review_list: Decimal = ZERO
    review_due: Decimal = ZERO

    @property
    def billable_discount(self) -> Decimal:
        return self.billable_list - self.billable_due


@dataclass
class OpenPeriod:
    period: BillingPeriod
    groups: list[OpenGroup]
    under_review: int  # charges


def _allocate(rows: list[OpenRow]) -> tuple[Decimal, Decimal]:
    """Round the rows' exact sums once, allocate to the rows; return (list, due) totals."""
    if not rows:
        return ZERO, ZERO
    due = allocate_cents({i: r.exact_billed for i, r in enumerate(rows)})
    lst = allocate_cents({i: r.exact_list for i, r in enumerate(rows)})
    for i, r in enumerate(rows):
        r.due_amount, r.list_amount = due[i], lst[i]
    return round_cents(exact_sum(r.exact_list for r in rows)), round_cents(
        exact_sum(r.exact_billed for r in rows)
    )


def open_month(pi: PI) -> list[OpenPeriod]:
    """Charges of this PI imported but not on a final statement yet, newest period first.

    Billable charges count as "on a statement" once their group has a current final statement;
    flagged charges are never on one and are shown as under review. Rejected charges are not
    shown (they are never billed). Finalized periods are complete, so they are not read.
    """
    periods = BillingPeriod.objects.exclude(status=BillingPeriod.Status.FINALIZED).order_by("-key")
    stated = {
        (s["period_id"], s["project_id"], s["fund_org"], s["currency"])
        for s in Statement.objects.filter(
            pi=pi, period__in=periods, is_draft=False, superseded_by__isnull=True
        ).values("period_id", "project_id", "fund_org", "currency")
    }
    billable = Q(review_status__in=Charge.BILLABLE_STATUSES)
    rows = (
        Charge.objects.filter(pi=pi, period__in=periods)
        .filter(billable | Q(review_status=Charge.ReviewStatus.FLAGGED))
        .values(
            "period_id",
            "project_id",
            "project__code",
            "fund_org",
            "billing_currency",
            "service_name",
            "review_status",
        )
        .annotate(
            n=Count("id"),
            billed=ExactSum("billed_cost"),
            list=ExactSum(Coalesce("list_cost", "billed_cost")),
        )
        .order_by()
    )
    grouped: dict[int, dict[tuple, OpenGroup]] = defaultdict(dict)
    merged: dict[tuple, OpenRow] = {}
    for r in rows:
        flagged = r["review_status"] == Charge.ReviewStatus.FLAGGED
        key = (r["period_id"], r["project_id"], r["fund_org"], r["billing_currency"])
        if not flagged and key in stated:
            continue  # on a statement: the statements page shows it
        group = grouped[r["period_id"]].setdefault(
            key[1:],
            OpenGroup(
                project=r["project__code"] or "(no project)",
                fund_org=r["fund_org"],
                currency=r["billing_currency"],
                key=(pi.pk, *key[1:]),
            ),
        )
        state = UNDER_REVIEW if flagged else BILLABLE
        row_key = (*key, r["service_name"], state)
        row = merged.get(row_key)
        if row is None:
            row = merged[row_key] = OpenRow(
                project=group.project,
                fund_org=group.fund_org,
                service=r["service_name"] or "(no service)",
                state=state,
                charges=0,
                exact_list=ZERO,
                exact_billed=ZERO,
            )
            group.rows.append(row)
        row.charges += r["n"]
        row.exact_billed += r["billed"] or ZERO
        row.exact_list += r["list"] or ZERO
    result = []
    for period in periods:
        groups = list(grouped.get(period.pk, {}).values())
        if not groups:
            continue
        under_review = 0
        # Billable figures come from the statement groups (statements/groups.py): the same
        # rounding and allocation as the statement this group will get.
        figures = statement_groups(period, pi_email=pi.email, parts=BY_SERVICE)
        for g in groups:
            g.rows.sort(key=lambda r: (r.state != BILLABLE, r.service.lower()))
            billable_rows = [r for r in g.rows if r.state == BILLABLE]
            review_rows = [r for r in g.rows if r.state == UNDER_REVIEW]
            if billable_rows:
                stated = figures[g.key]
                dues, lists = stated.allocation(), stated.list_allocation()
                for r in billable_rows:
                    r.due_amount, r.list_amount = dues[r.service], lists[r.service]
                g.billable_list, g.billable_due = stated.list_amount, stated.due_amount
            g.review_list, g.review_due = _allocate(review_rows)
            under_review += sum(r.charges for r in review_rows)
        groups.sort(key=lambda g: (g.project, g.fund_org, g.currency))
        result.append(OpenPeriod(period=period, groups=groups, under_review=under_review))
    return result


CSV_COLUMNS = (
    "period",
    "charge_id",
    "status",
    "project_id",
    "fund_org",
    "service",
    "resource_id",
    "resource_name",
    "charge_category",
    "charge_description",
    "charge_period_start",
    "charge_period_end",
    "quantity",
    "unit",
    "list_cost",
    "billed_cost",
    "currency",
    "source",
)


def csv_charges(pi: PI, period: BillingPeriod):
    """The PI's charges of the period for the CSV (rejected ones are never billed: left out)."""
    return (
        Charge.objects.filter(pi=pi, period=period)
        .exclude(review_status=Charge.ReviewStatus.REJECTED)
        .select_related("project", "source")
        .order_by("id")
    )


def statement_references(statement: Statement) -> list[tuple[str, str]]:
    """(label, values) of the statement's reference fields, labelled as its PDF labels them."""
    snapshot = statement.run.settings_snapshot if statement.run_id else {}
    labels = snapshot.get("reference_labels", {})
    return [
        (labels.get(name, name.replace("_", " ").capitalize()), ", ".join(values))
        for name, values in (statement.references or {}).items()
        if values
    ]
