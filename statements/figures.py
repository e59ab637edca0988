"""The figures of statements, computed from the billable charges of a period.

This is the one place that says what a statement shows, so statements, the journal and the
portal read the same numbers (docs/statements.md, "The rounding rule"):

- A statement group is the billable charges (`Charge.BILLABLE_STATUSES`) of one period with the
  same (PI, project, fund/org, currency).
- amount due = round_cents(exact sum of BilledCost); list = round_cents(exact sum of ListCost,
  taking BilledCost where ListCost is null); discount = list - due. Rounded once, half up.
- Every breakdown is allocated from those rounded totals with `billing.rounding.allocate_cents`:
  sections (one per service; credits, refunds, taxes, adjustments and corrections as their own
  labelled sections) from the statement's totals, and detail lines (one per resource and unit)
  from their section's. So lines add up to sections, and sections to the totals, to the cent.

Sums are done by the database (GROUP BY with `ExactSum`), never by loading charges.
"""

from __future__ import annotations

import decimal
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Case, Count, DateTimeField, Value, When
from django.db.models.functions import Coalesce, TruncMonth

from billing.models import PI, BillingPeriod, Charge, Flag, Project
from billing.money import MONEY_CONTEXT as MONEY
from billing.money import ZERO, ExactSum, exact_sum, money_text
from billing.rounding import allocate_cents

from .groups import GROUP_FIELDS, PartSpec, billable_charges, round_group, statement_groups

REFERENCE_FIELDS = ("reference_1", "reference_2", "cost_center")
MAX_REFERENCE_VALUES = 10

# Section categories in the order a statement shows them, with their labels.
CATEGORY_ORDER = ("usage", "purchase", "credit", "refund", "tax", "adjustment", "correction")
CATEGORY_LABELS = {
    "credit": "Credits",
    "refund": "Refunds",
    "tax": "Taxes",
    "adjustment": "Adjustments",
    "correction": "Correction",
}
CENTS_ZERO = Decimal("0.00")
_PERCENT_CONTEXT = decimal.Context(prec=28, rounding=decimal.ROUND_HALF_UP)


def section_category(charge_category: str, charge_class: str) -> str:
    """The statement section a charge belongs to, from its FOCUS ChargeCategory/ChargeClass."""
    if (charge_class or "").strip().lower() == "correction":
        return "correction"
    category = (charge_category or "").strip().lower()
    if category in CATEGORY_LABELS:
        return category
    return "usage"  # Usage, Purchase, empty or unknown: shown under their service


def month_label(key: str) -> str:
    """'2025-01' -> 'January 2025'."""
    return date(int(key[:4]), int(key[5:7]), 1).strftime("%B %Y")


def percent_text(discount: Decimal, list_amount: Decimal, due: Decimal) -> str:
    """A discount as a percentage of list, 2 decimals, half up.

    Never "100.00%" unless nothing is due, never "0.00%" for a real discount: 3,660.00 off
    3,665.00 is 99.86%, and 0.004 off 1,000 is shown as 0.01%. Blank ("—") without a positive
    list price (credits and refunds).
    """
    if list_amount <= 0:
        return "—"
    pct = _PERCENT_CONTEXT.divide(discount * 100, list_amount).quantize(
        Decimal("0.01"), rounding=decimal.ROUND_HALF_UP
    )
    if pct >= 100 and due != 0:
        pct = Decimal("99.99")
    elif pct <= 0 and discount > 0:
        pct = Decimal("0.01")
    elif pct <= 0 and discount < 0 and pct > Decimal("-0.01"):  # -0.00: a real surcharge
        pct = Decimal("-0.01")
    return f"{pct.copy_abs() if not pct else pct:,.2f}%"


@dataclass
class Line:
    """A detail line: one resource (and unit) within a section."""

    service_name: str
    resource_id: str
    resource_name: str
    unit: str
    quantity: Decimal | None
    charge_count: int
    exact_billed: Decimal
    exact_list: Decimal
    list_amount: Decimal = ZERO
    due_amount: Decimal = ZERO

    @property
    def discount_amount(self) -> Decimal:
        return self.list_amount - self.due_amount

    @property
    def label(self) -> str:
        return self.resource_name or self.resource_id or "(no resource)"


@dataclass
class Reduction:
    """Part of a section's discount, named: an allowance ("first 10,000 core-hours included")
    or a subsidy percentage, from the x_AllowanceAmount / x_SubsidyAmount columns that usage
    converters write (billing/usage). Allocated from the section's rounded discount, so a
    section's reductions (and its "other discount", if any) add up to its discount to the cent.
    """

    kind: str  # "allowance" or "subsidy"
    label: str
    exact_amount: Decimal
    quantity: Decimal | None = None  # consumed units the allowance included
    unit: str = ""
    amount: Decimal = ZERO


@dataclass
class Section:
    """A section: one service's usage, or one labelled kind of line (credits, a correction)."""

    category: str
    label: str
    service_name: str = ""
    corrects_period: str = ""
    lines: list[Line] = field(default_factory=list)
    list_amount: Decimal = ZERO
    due_amount: Decimal = ZERO
    reductions: list[Reduction] = field(default_factory=list)

    @property
    def discount_amount(self) -> Decimal:
        return self.list_amount - self.due_amount

    @property
    def exact_billed(self) -> Decimal:
        return exact_sum(line.exact_billed for line in self.lines)

    @property
    def exact_list(self) -> Decimal:
        return exact_sum(line.exact_list for line in self.lines)

    @property
    def charge_count(self) -> int:
        return sum(line.charge_count for line in self.lines)

    def sort_key(self):
        return (CATEGORY_ORDER.index(self.category), self.corrects_period, self.label.lower())


@dataclass
class StatementFigures:
    """Everything a statement shows, for one group. Amounts rounded and allocated."""

    pi_id: int
    project_id: int
    fund_org: str
    currency: str
    pi_email: str = ""
    pi_name: str = ""
    project_code: str = ""
    project_name: str = ""
    sections: list[Section] = field(default_factory=list)
    references: dict[str, list[str]] = field(default_factory=dict)
    list_amount: Decimal = CENTS_ZERO
    due_amount: Decimal = CENTS_ZERO
    exact_billed: Decimal = ZERO
    exact_list: Decimal = ZERO
    charge_count: int = 0
    note: str = ""  # a 0.00 revision's reason, printed on its PDF

    @property
    def key(self) -> tuple[int, int, str, str]:
        return (self.pi_id, self.project_id, self.fund_org, self.currency)

    @property
    def discount_amount(self) -> Decimal:
        return self.list_amount - self.due_amount

    def content_hash(self) -> str:
        """Hash of what the statement shows (not its date): equal hash, same statement."""
        data = {
            "pi": [self.pi_email, self.pi_name],
            "project": [self.project_code, self.project_name],
            "fund_org": self.fund_org,
            "currency": self.currency,
            "totals": [money_text(self.list_amount), money_text(self.due_amount)],
            "references": self.references,
            "sections": [
                [
                    s.category,
                    s.label,
                    money_text(s.list_amount),
                    money_text(s.due_amount),
                    [
                        [
                            ln.service_name,
                            ln.resource_id,
                            ln.resource_name,
                            ln.unit,
                            money_text(ln.quantity),
                            ln.charge_count,
                            money_text(ln.list_amount),
                            money_text(ln.due_amount),
                        ]
                        for ln in s.lines
                    ],
                ]
                for s in self.sections
            ],
        }
        if self.note:  # only when set: hashes of statements without a note stay as they were
            data["note"] = self.note
        reductions = [
            [i, r.kind, r.label, money_text(r.amount)]
            for i, s in enumerate(self.sections)
            for r in s.reductions
        ]
        if reductions:  # likewise: only statements of converted usage carry them
            data["reductions"] = reductions
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _allocate(figures: StatementFigures) -> None:
    """Round the totals once and allocate every section and line from them."""
    figures.sections.sort(key=Section.sort_key)
    billed = [s.exact_billed for s in figures.sections]  # each sums its lines: once
    listed = [s.exact_list for s in figures.sections]
    figures.exact_billed = exact_sum(billed)
    figures.exact_list = exact_sum(listed)
    figures.charge_count = sum(s.charge_count for s in figures.sections)
    figures.due_amount, figures.list_amount = round_group(figures.exact_billed, figures.exact_list)
    dues = allocate_cents(dict(enumerate(billed)), figures.due_amount)
    lists = allocate_cents(dict(enumerate(listed)), figures.list_amount)
    for i, section in enumerate(figures.sections):
        section.due_amount, section.list_amount = dues[i], lists[i]
        section.lines.sort(key=lambda ln: (ln.service_name.lower(), ln.label.lower(), ln.unit))
        n = range(len(section.lines))
        line_dues = allocate_cents({j: section.lines[j].exact_billed for j in n}, dues[i])
        line_lists = allocate_cents({j: section.lines[j].exact_list for j in n}, lists[i])
        for j, line in enumerate(section.lines):
            line.due_amount, line.list_amount = line_dues[j], line_lists[j]
        if section.reductions:
            _allocate_reductions(section)


def _allocate_reductions(section: Section) -> None:
    """The section's rounded discount over its named reductions and the rest (exact shares)."""
    exact_discount = MONEY.subtract(section.exact_list, section.exact_billed)
    parts = {i: r.exact_amount for i, r in enumerate(section.reductions)}
    parts["other"] = MONEY.subtract(exact_discount, exact_sum(parts.values()))
    amounts = allocate_cents(parts, section.discount_amount)
    for i, reduction in enumerate(section.reductions):
        reduction.amount = amounts[i]


def _month_key(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):  # SQLite without conversion
        return value[:7]
    if isinstance(value, (datetime, date)):
        return f"{value.year:04d}-{value.month:02d}"
    return ""


def statement_figures(
    period: BillingPeriod, *, pi_email: str | None = None
) -> list[StatementFigures]:
    """The figures of every statement group of the period (or of one PI), ordered by PI email,
    project, fund/org and currency."""
    charges = billable_charges(period, pi_email)
    corrects = Case(
        When(charge_class__iexact="correction", then=TruncMonth("charge_period_start")),
        default=Value(None),
        output_field=DateTimeField(),
    )
    rows = (
        charges.annotate(corrects=corrects)
        .values(
            *GROUP_FIELDS,
            "charge_category",
            "charge_class",
            "corrects",
            "service_name",
            "resource_id",
            "resource_name",
            "consumed_unit",
        )
        .annotate(
            billed=ExactSum("billed_cost"),
            listed=ExactSum(Coalesce("list_cost", "billed_cost")),
            quantity=ExactSum("consumed_quantity"),
            n=Count("id"),
        )
        .order_by()
    )
    groups: dict[tuple, StatementFigures] = {}
    sections: dict[tuple, Section] = {}
    for row in rows.iterator(chunk_size=5000):
        key = (row["pi_id"], row["project_id"], row["fund_org"], row["billing_currency"])
        figures = groups.get(key)
        if figures is None:
            figures = groups[key] = StatementFigures(*key)
        category = section_category(row["charge_category"], row["charge_class"])
        service = row["service_name"] or ""
        corrects_period = _month_key(row["corrects"]) if category == "correction" else ""
        if category == "usage":
            label = service or "Other charges"
        elif category == "correction":
            label = (
                f"Correction to {month_label(corrects_period)}" if corrects_period else "Correction"
            )
        else:
            label = CATEGORY_LABELS[category]
        skey = (key, category, service if category == "usage" else "", corrects_period)
        section = sections.get(skey)
        if section is None:
            section = sections[skey] = Section(
                category=category,
                label=label,
                service_name=service if category == "usage" else "",
                corrects_period=corrects_period,
            )
            figures.sections.append(section)
        section.lines.append(
            Line(
                service_name=service,
                resource_id=row["resource_id"] or "",
                resource_name=row["resource_name"] or "",
                unit=row["consumed_unit"] or "",
                quantity=row["quantity"],
                charge_count=row["n"],
                exact_billed=row["billed"] or ZERO,
                exact_list=row["listed"] or ZERO,
            )
        )
    _attach_reductions(charges, sections)
    # Lines that differ only in category/class fold into one per resource within a section.
    for figures in groups.values():
        for section in figures.sections:
            section.lines = _merge_lines(section.lines)
        _allocate(figures)
    _attach_names(groups.values())
    _attach_references(charges, groups)
    return sorted(
        groups.values(),
        key=lambda f: (f.pi_email, f.project_code, f.fund_org, f.currency),
    )


def _attach_reductions(charges, sections: dict[tuple, Section]) -> None:
    """Allowance and subsidy lines of usage sections, from converted usage's own columns.

    Only rows a usage converter wrote carry x_Converter; there are few of them (one per account,
    partition and resource a month), so they are summed here, exactly, from their text.
    """
    rows = charges.filter(
        extra__has_key="x_Converter", charge_category__iexact="usage"
    ).values_list(*GROUP_FIELDS, "service_name", "consumed_unit", "extra")
    found: dict[tuple, dict[tuple, list]] = defaultdict(dict)
    for pi_id, project_id, fund_org, currency, service, unit, extra in rows.iterator(2000):
        skey = ((pi_id, project_id, fund_org, currency), "usage", service or "", "")
        allowance = _decimal(extra.get("x_AllowanceAmount"))
        if allowance:
            slot = found[skey].setdefault(("allowance", unit or ""), [ZERO, ZERO])
            slot[0] = exact_sum((slot[0], allowance))
            slot[1] = exact_sum((slot[1], _decimal(extra.get("x_AllowanceQuantity"))))
        subsidy = _decimal(extra.get("x_SubsidyAmount"))
        if subsidy:
            percent = _decimal(extra.get("x_SubsidyPercent"))
            slot = found[skey].setdefault(("subsidy", percent), [ZERO, ZERO])
            slot[0] = exact_sum((slot[0], subsidy))
    for skey, named in found.items():
        section = sections.get(skey)
        if section is None:
            continue
        for (kind, detail), (amount, quantity) in sorted(named.items(), key=lambda i: str(i[0])):
            if kind == "allowance":
                label = f"Allowance: first {_quantity(quantity)} {detail}s included"
                section.reductions.append(Reduction(kind, label, amount, quantity, detail))
            else:
                label = f"Subsidy ({_quantity(detail)}%)"
                section.reductions.append(Reduction(kind, label, amount))


def _decimal(text) -> Decimal:
    try:
        return Decimal(str(text)) if text not in (None, "") else ZERO
    except decimal.InvalidOperation:
        return ZERO


def _quantity(value: Decimal) -> str:
    """10000 -> '10,000'; 2.5 -> '2.5' (exact, no trailing zeros)."""
    text = f"{value.normalize():,f}" if value else "0"
    return text


def _merge_lines(lines: list[Line]) -> list[Line]:
    merged: dict[tuple, Line] = {}
    for line in lines:
        key = (line.service_name, line.resource_id, line.resource_name, line.unit)
        found = merged.get(key)
        if found is None:
            merged[key] = line
            continue
        found.exact_billed = exact_sum([found.exact_billed, line.exact_billed])
        found.exact_list = exact_sum([found.exact_list, line.exact_list])
        found.charge_count += line.charge_count
        if line.quantity is not None:
            found.quantity = exact_sum([found.quantity or ZERO, line.quantity])
    return list(merged.values())


def _attach_names(groups: Iterable[StatementFigures]) -> None:
    groups = list(groups)
    pis = {p.pk: p for p in PI.objects.filter(pk__in={g.pi_id for g in groups})}
    projects = {p.pk: p for p in Project.objects.filter(pk__in={g.project_id for g in groups})}
    for g in groups:
        pi, project = pis[g.pi_id], projects[g.project_id]
        g.pi_email, g.pi_name = pi.email, pi.name
        g.project_code, g.project_name = project.code, project.name


def _attach_references(charges, groups: dict[tuple, StatementFigures]) -> None:
    values: dict[tuple, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    rows = charges.values_list(*GROUP_FIELDS, *REFERENCE_FIELDS).distinct().order_by()
    for row in rows.iterator(chunk_size=5000):
        found = values[row[:4]]
        for name, value in zip(REFERENCE_FIELDS, row[4:], strict=True):
            if value:
                found[name].add(value)
    for key, found in values.items():
        if key in groups:
            groups[key].references = {
                name: sorted(found[name])[:MAX_REFERENCE_VALUES]
                for name in REFERENCE_FIELDS
                if found.get(name)
            }


def group_totals(period: BillingPeriod, *, pi_email: str | None = None) -> dict[tuple, dict]:
    """Per group key (pi_id, project_id, fund_org, currency): rounded list, due and count.

    The cheap form of `statement_figures` (one GROUP BY, no lines), for checks; a view of
    statements.groups.statement_groups.
    """
    return {
        key: {"list": g.list_amount, "due": g.due_amount, "charges": g.charge_count}
        for key, g in statement_groups(period, pi_email=pi_email).items()
    }


def statement_breakdown(
    period: BillingPeriod, fields: Sequence[str], *, pi_email: str | None = None
) -> dict[tuple, dict[tuple, Decimal]]:
    """Each group's rounded amount due allocated over the values of charge `fields`.

    `statement_breakdown(period, ["source_id"])` gives, per statement group, the cents of its
    amount due by source; they add up to the statement's amount due exactly. A view of
    statements.groups.statement_groups with parts.
    """
    spec = PartSpec(values={f: f for f in fields}, key=lambda row: tuple(row[f] for f in fields))
    groups = statement_groups(period, pi_email=pi_email, parts=spec, with_list=False)
    return {key: g.allocation() for key, g in groups.items()}


def excluded_summary(period: BillingPeriod, *, pi_email: str | None = None) -> dict:
    """What was left out of the statements and why: flagged and rejected charges.

    Count and exact amount (BilledCost, per currency) in total, per review status, and per
    reason (a charge with two reasons counts under both reasons, once in the totals).
    """
    qs = Charge.objects.filter(period=period).exclude(review_status__in=Charge.BILLABLE_STATUSES)
    if pi_email:
        qs = qs.filter(pi__email=pi_email.strip().lower())
    rows = (
        qs.values("review_status", "flags", "billing_currency")
        .annotate(n=Count("id"), amount=ExactSum("billed_cost"))
        .order_by()
    )
    total = {"count": 0, "amount": defaultdict(Decimal)}
    by_status: dict[str, dict] = {}
    by_reason: dict[str, dict] = {}

    def add(bucket: dict, n: int, currency: str, amount: Decimal) -> None:
        bucket["count"] += n
        bucket["amount"][currency] = exact_sum([bucket["amount"][currency], amount])

    for row in rows:
        n, currency, amount = row["n"], row["billing_currency"], row["amount"] or ZERO
        add(total, n, currency, amount)
        status = by_status.setdefault(
            row["review_status"], {"count": 0, "amount": defaultdict(Decimal)}
        )
        add(status, n, currency, amount)
        for flag in Flag:
            if row["flags"] & flag:
                reason = by_reason.setdefault(
                    flag.code, {"label": flag.label, "count": 0, "amount": defaultdict(Decimal)}
                )
                add(reason, n, currency, amount)

    def out(bucket: dict) -> dict:
        return {
            **bucket,
            "amount": {c: money_text(v) for c, v in sorted(bucket["amount"].items())},
        }

    return {
        **out(total),
        "by_status": {k: out(v) for k, v in sorted(by_status.items())},
        "by_reason": {k: out(v) for k, v in by_reason.items()},
    }


def billable_total(
    period: BillingPeriod,
    *,
    pi_email: str | None = None,
    figures: Iterable[StatementFigures] | None = None,
) -> dict[str, Decimal]:
    """Per currency, the exact sum of BilledCost of the billable charges.

    `figures`: the period's `statement_figures` (same `pi_email`), already computed: their exact
    sums add up to the same total without reading the charges again."""
    if figures is not None:
        by_currency: dict[str, list[Decimal]] = defaultdict(list)
        for f in figures:
            by_currency[f.currency].append(f.exact_billed)
        return {c: exact_sum(v) for c, v in sorted(by_currency.items())}
    rows = (
        billable_charges(period, pi_email)
        .values("billing_currency")
        .annotate(billed=ExactSum("billed_cost"))
        .order_by()
    )
    return {r["billing_currency"]: r["billed"] or ZERO for r in rows}


__all__ = [
    "Line",
    "Section",
    "StatementFigures",
    "billable_total",
    "excluded_summary",
    "group_totals",
    "month_label",
    "percent_text",
    "section_category",
    "statement_breakdown",
    "statement_figures",
]
