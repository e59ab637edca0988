"""A statement group and its rounded figures: the one home statements, the portal and journals read.

A *statement group* is the billable charges (`Charge.BILLABLE_STATUSES`) of one period with the
same (PI, project, fund/org, currency): exactly one current statement shows it. Its figures:

- exact sums of BilledCost and of ListCost (BilledCost where ListCost is null), summed by the
  database with `ExactSum`, never by loading charges;
- amount due = round_cents(exact billed), list = round_cents(exact list), discount = list - due:
  rounded once, half up (billing.money), at this boundary and nowhere else;
- optional *parts*: the exact billed of the group split by values of the charges (the journal's
  (source, GL account), the portal's service); `GroupFigures.allocation()` allocates the rounded
  amount due over them with `allocate_cents`, so parts add up to the statement to the cent.

Readers:
- statements/figures.py builds a statement's sections and lines from the same rounding
  (`round_group`), so a statement's totals equal `statement_groups(...)[key].due_amount`;
- the portal's open month reads `statement_groups(period, pi_email=…, parts=PartSpec(...))`;
- journals read `statement_groups(period, parts=PartSpec(...))` with their (source, account) key
  and allocate with `GroupFigures.allocation(order=...)`.

API (stable; journals depend on it):
    GroupKey = (pi_id, project_id, fund_org, currency)
    PartSpec(values={name: field name or expression}, key=callable(row) -> hashable)
    statement_groups(period, *, pi_email=None, parts=None, with_list=True)
        -> dict[GroupKey, GroupFigures], in (pi_email, project_code, fund_org, currency) order
    GroupFigures: key, pi_id, project_id, fund_org, currency, pi_email, pi_name, project_code,
        project_name, exact_billed, exact_list, charge_count, parts, part_counts, list_parts,
        due_amount, list_amount, discount_amount, allocation(order=None),
        list_allocation(order=None)
    round_group(exact_billed, exact_list) -> (due_amount, list_amount)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Count, Expression
from django.db.models.functions import Coalesce

from billing.models import PI, BillingPeriod, Charge, Project
from billing.money import ZERO, ExactSum, exact_sum, round_cents
from billing.rounding import allocate_cents

GROUP_FIELDS = ("pi_id", "project_id", "fund_org", "billing_currency")
GroupKey = tuple[int, int, str, str]


def billable_charges(period: BillingPeriod, pi_email: str | None = None):
    """The charges statements bill: the period's approved (billable) charges, maybe of one PI."""
    qs = Charge.objects.filter(period=period, review_status__in=Charge.BILLABLE_STATUSES)
    if pi_email:
        qs = qs.filter(pi__email=pi_email.strip().lower())
    return qs


def round_group(exact_billed: Decimal, exact_list: Decimal) -> tuple[Decimal, Decimal]:
    """(amount due, list) of a group from its exact sums: the rounding rule, once per group."""
    return round_cents(exact_billed or ZERO), round_cents(exact_list or ZERO)


@dataclass(frozen=True)
class PartSpec:
    """How to split a group into parts: extra GROUP BY `values` (a field name or an expression,
    by the name it gets in the row) and `key(row) -> part` (rows with the same part are summed)."""

    values: dict[str, str | Expression]
    key: Callable[[dict], Hashable]


@dataclass
class GroupFigures:
    """One statement group's figures: exact sums, the rounded totals, and optional parts."""

    pi_id: int
    project_id: int
    fund_org: str
    currency: str
    pi_email: str = ""
    pi_name: str = ""
    project_code: str = ""
    project_name: str = ""
    exact_billed: Decimal = ZERO
    exact_list: Decimal = ZERO  # a charge without ListCost counts at its BilledCost
    charge_count: int = 0
    parts: dict[Hashable, Decimal] = field(default_factory=dict)  # part -> exact billed
    part_counts: dict[Hashable, int] = field(default_factory=dict)
    list_parts: dict[Hashable, Decimal] = field(default_factory=dict)  # part -> exact list

    @property
    def key(self) -> GroupKey:
        return (self.pi_id, self.project_id, self.fund_org, self.currency)

    @property
    def due_amount(self) -> Decimal:
        return round_group(self.exact_billed, self.exact_list)[0]

    @property
    def list_amount(self) -> Decimal:
        return round_group(self.exact_billed, self.exact_list)[1]

    @property
    def discount_amount(self) -> Decimal:
        return self.list_amount - self.due_amount

    def allocation(self, order: Callable[[Hashable], object] | None = None) -> dict:
        """The rounded amount due allocated over the parts (cents that add up to it exactly).

        `order` sorts the parts (ties in the allocation go by this order); default: the parts'
        natural order."""
        keys = sorted(self.parts, key=order) if order else sorted(self.parts)
        return allocate_cents({k: self.parts[k] for k in keys}, total=self.due_amount)

    def list_allocation(self, order: Callable[[Hashable], object] | None = None) -> dict:
        """The rounded list price allocated over the parts (needs `with_list`)."""
        keys = sorted(self.list_parts, key=order) if order else sorted(self.list_parts)
        return allocate_cents({k: self.list_parts[k] for k in keys}, total=self.list_amount)


def statement_groups(
    period: BillingPeriod,
    *,
    pi_email: str | None = None,
    parts: PartSpec | None = None,
    with_list: bool = True,
) -> dict[GroupKey, GroupFigures]:
    """Every statement group of the period (or of one PI) with its figures, one GROUP BY.

    Ordered by PI email, project code, fund/org, currency. `with_list=False` skips the list
    price sum (the GL does not need it)."""
    sums = {"billed": ExactSum("billed_cost"), "n": Count("id")}
    if with_list:
        sums["listed"] = ExactSum(Coalesce("list_cost", "billed_cost"))
    qs = billable_charges(period, pi_email)
    columns: dict[str, str] = {}  # part value name -> column of the row
    if parts is not None:
        expressions = {k: v for k, v in parts.values.items() if not isinstance(v, str)}
        if expressions:
            qs = qs.annotate(**expressions)
        columns = {k: v if isinstance(v, str) else k for k, v in parts.values.items()}
    rows = qs.values(*GROUP_FIELDS, *dict.fromkeys(columns.values())).annotate(**sums).order_by()
    groups: dict[GroupKey, GroupFigures] = {}
    # Fetched whole, not through `.iterator()`: the rows are the groups' parts (thousands), and
    # PostgreSQL plans a server-side cursor for its first rows (cursor_tuple_fraction): it then
    # walks an index in PI order and sorts instead of hashing, and never scans in parallel
    # (6.3 s instead of 1.1 s for a million charges, journals' key; docs/benchmarks.md).
    for row in rows:
        key = (row["pi_id"], row["project_id"], row["fund_org"], row["billing_currency"])
        group = groups.get(key)
        if group is None:
            group = groups[key] = GroupFigures(*key)
        billed = row["billed"] or ZERO
        group.exact_billed = exact_sum((group.exact_billed, billed))
        if with_list:
            group.exact_list = exact_sum((group.exact_list, row["listed"] or ZERO))
        group.charge_count += row["n"]
        if parts is not None:
            part = parts.key({k: row[c] for k, c in columns.items()})
            group.parts[part] = exact_sum((group.parts.get(part, ZERO), billed))
            group.part_counts[part] = group.part_counts.get(part, 0) + row["n"]
            if with_list:
                listed = row["listed"] or ZERO
                group.list_parts[part] = exact_sum((group.list_parts.get(part, ZERO), listed))
    _attach_names(groups.values())
    ordered = sorted(
        groups.values(), key=lambda g: (g.pi_email, g.project_code, g.fund_org, g.currency)
    )
    return {g.key: g for g in ordered}


def _attach_names(groups) -> None:
    groups = list(groups)
    pis = {
        p["id"]: p
        for p in PI.objects.filter(id__in={g.pi_id for g in groups}).values("id", "email", "name")
    }
    projects = {
        p["id"]: p
        for p in Project.objects.filter(id__in={g.project_id for g in groups}).values(
            "id", "code", "name"
        )
    }
    for g in groups:
        pi, project = pis.get(g.pi_id, {}), projects.get(g.project_id, {})
        g.pi_email, g.pi_name = pi.get("email", ""), pi.get("name", "")
        g.project_code, g.project_name = project.get("code", ""), project.get("name", "")


__all__ = [
    "GROUP_FIELDS",
    "GroupFigures",
    "GroupKey",
    "PartSpec",
    "billable_charges",
    "round_group",
    "statement_groups",
]
