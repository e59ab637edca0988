"""Reads for the admin dashboard and the period page: one period's figures, the twelve-month
trend, import history and the statement status.

One rounding rule for every figure shown: the statements'. A statement is one group of
billable charges (PI, project, fund/org, currency); its amount is the exact sum of its charges,
rounded once to the cent, half up (`billing.rounding`). So each card is the sum of its groups'
rounded amounts, and agrees to the cent with the statements made from it:

- Billable, List price: per group, the billable (clean, approved) charges' sums, rounded.
- Flagged: per group, the flagged charges' sums, rounded the same way.
- Billed (everything not rejected) = Billable + Flagged, as shown.
- Discount = List price − Billable, as shown.
- By source: each group's rounded amount allocated over its sources (largest remainder), so the
  column sums to the card; top PIs and top projects are sums of their groups, with an
  "others" row and a total row equal to the card.

The exact sums (what `periods show --json` prints) stay with every figure, for the title.

Figures for one period come from `period_rollup` (one GROUP BY over the period's charges,
cached until the data changes). Rejected charges are counted nowhere but in their own count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal

from django.db.models import Count, Exists, OuterRef

from ..models import PI, BillingPeriod, Charge, Flag, Import, Project, Source
from ..money import ZERO, ExactSum, cents_text, exact_sum, money_text, round_cents
from ..rounding import allocate_cents
from . import cached_figures, figures_versions, period_rollup

BILLABLE = {str(s) for s in Charge.BILLABLE_STATUSES}
FLAGGED = str(Charge.ReviewStatus.FLAGGED)
REJECTED = str(Charge.ReviewStatus.REJECTED)
TREND_MONTHS = 12
TOP = 10
IMPORT_HISTORY = 8


@dataclass(frozen=True)
class Amount:
    """A shown amount (`value`, already to the cent by the statements' rule) with the exact
    sum it comes from (`exact_value`)."""

    value: Decimal
    exact_value: Decimal | None = None

    @property
    def exact(self) -> str:
        return money_text(self.value if self.exact_value is None else self.exact_value)

    @property
    def display(self) -> str:
        return cents_text(self.value)

    def __str__(self) -> str:
        return self.display


def discount_percent(listed: Decimal, billed: Decimal) -> str:
    """The discount as a percentage of list, truncated (99.86%, never a rounded-up 100%)."""
    if not listed:
        return ""
    percent = (listed - billed) * 100 / listed
    return f"{percent.quantize(Decimal('0.01'), rounding=ROUND_DOWN)}%"


@dataclass
class _Group:
    """One statement group's charges of one kind (billable or flagged), by source."""

    count: int = 0
    billed: dict[int, list[Decimal]] = field(default_factory=lambda: defaultdict(list))
    listed: dict[int, list[Decimal]] = field(default_factory=lambda: defaultdict(list))
    counts: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, source_id: int, count: int, billed, listed) -> None:
        self.count += count
        self.counts[source_id] += count
        if billed is not None:
            self.billed[source_id].append(billed)
        if listed is not None:
            self.listed[source_id].append(listed)

    def exact(self, what: str) -> Decimal:
        return exact_sum(v for values in getattr(self, what).values() for v in values)

    def rounded(self, what: str) -> Decimal:
        return round_cents(self.exact(what))

    def by_source(self, what: str) -> dict[int, Decimal]:
        """The group's rounded amount allocated over its sources (they sum to it)."""
        parts = {source: exact_sum(values) for source, values in getattr(self, what).items()}
        return allocate_cents(parts, self.rounded(what)) if parts else {}


class _Total:
    """Shown (rounded per group) and exact sums of some groups."""

    def __init__(self) -> None:
        self.count = 0
        self.shown: dict[str, Decimal] = defaultdict(lambda: ZERO)
        self.exact: dict[str, list[Decimal]] = defaultdict(list)

    def add(self, group: _Group) -> None:
        self.count += group.count
        for what in ("billed", "listed"):
            self.shown[what] += group.rounded(what)
            self.exact[what].append(group.exact(what))

    def amount(self, what: str) -> Amount:
        return Amount(self.shown[what], exact_sum(self.exact[what]))


# -- periods ------------------------------------------------------------------------------------


def period_choices() -> list[dict]:
    """Every period, newest first, with whether it has charges (for the dashboard's select)."""
    periods = BillingPeriod.objects.annotate(
        has_charges=Exists(Charge.objects.filter(period=OuterRef("pk")))
    ).order_by("-key")
    return [
        {"id": p.pk, "key": p.key, "status": p.status, "has_charges": p.has_charges, "obj": p}
        for p in periods
    ]


def choose_period(choices: list[dict], requested: str | None) -> BillingPeriod | None:
    """The requested period, else the latest with charges, else the latest."""
    if requested:
        for choice in choices:
            if choice["key"] == requested:
                return choice["obj"]
    for choice in choices:
        if choice["has_charges"]:
            return choice["obj"]
    return choices[0]["obj"] if choices else None


def month_keys(last: str, count: int = TREND_MONTHS) -> list[str]:
    """`count` month keys ending with `last`, oldest first."""
    year, month = (int(part) for part in last.split("-"))
    keys = []
    for _ in range(count):
        keys.append(f"{year:04d}-{month:02d}")
        month -= 1
        if month == 0:
            year, month = year - 1, 12
    return keys[::-1]


# -- one period's figures -----------------------------------------------------------------------


def period_figures(period: BillingPeriod, version: str | None = None) -> dict:
    """Totals per currency, by source, top PIs and projects, and flagged counts by reason,
    every amount by the statements' rounding (see the module's docstring).

    The numbers are cached under the period's figures version (`figures_versions`; `version`
    when the caller already read it), like the rollup they come from; the names of sources,
    PIs and projects are read fresh on every call.
    """
    version = version or figures_versions([period.pk])[period.pk]
    numbers = cached_figures(
        f"dashboard:figures:{period.pk}", lambda: _period_numbers(period, version), version
    )
    sources = dict(
        Source.objects.filter(pk__in={r["source_id"] for r in numbers["sources"]}).values_list(
            "pk", "name"
        )
    )
    return {
        "currencies": numbers["currencies"],
        "sources": sorted(
            ({**r, "source": sources.get(r["source_id"], "?")} for r in numbers["sources"]),
            key=lambda r: (r["currency"], -r["billable"].value, r["source"]),
        ),
        "top_pis": _named(numbers["top_pis"], PI, "email"),
        "top_projects": _named(numbers["top_projects"], Project, "code"),
        "flag_reasons": cached_figures(
            f"dashboard:reasons:{period.pk}", lambda: flag_reasons(period), version
        ),
    }


def _named(rows: list[dict], model, label_field: str) -> list[dict]:
    """The top rows with their PI's or project's label and name, read now."""
    ids = {r["id"] for r in rows if r["id"] is not None}
    objects = {obj.pk: obj for obj in model.objects.filter(pk__in=ids)}
    named = []
    for row in rows:
        if row.get("kind"):  # "others" and "Total" carry their own label
            named.append(row)
            continue
        obj = objects.get(row["id"])
        label = getattr(obj, label_field, "") if obj else "(none)"
        named.append({**row, "label": label, "name": getattr(obj, "name", "") if obj else ""})
    return named


def _period_numbers(period: BillingPeriod, version: str) -> dict:
    """Every amount of `period_figures`, without names (so it can be cached)."""
    groups: dict[str, dict[tuple, _Group]] = {"billable": {}, FLAGGED: {}, REJECTED: {}}
    # Cached by the selector, shared with `periods show`.
    for row in period_rollup(period, version):
        status = row["review_status"]
        bucket = "billable" if status in BILLABLE else status
        key = (row["pi_id"], row["project_id"], row["fund_org"], row["billing_currency"])
        group = groups[bucket].setdefault(key, _Group())
        group.add(row["source_id"], row["n"], row["billed"], row["list"])

    currencies = sorted(
        {key[3] for kind in groups.values() for key in kind},
        key=lambda c: (
            -sum(g.count for k in groups.values() for key, g in k.items() if key[3] == c),
            c,
        ),
    )
    figures = []
    for currency in currencies:
        parts = {}
        for bucket, kind in groups.items():
            total = _Total()
            for key, group in kind.items():
                if key[3] == currency:
                    total.add(group)
            parts[bucket] = total
        billable, flagged, rejected = parts["billable"], parts[FLAGGED], parts[REJECTED]
        shown_billable, shown_list = billable.shown["billed"], billable.shown["listed"]
        figures.append(
            {
                "currency": currency,
                "billable_count": billable.count,
                "billable": billable.amount("billed"),
                "billable_list": billable.amount("listed"),
                "discount": Amount(
                    shown_list - shown_billable,
                    exact_sum(billable.exact["listed"]) - exact_sum(billable.exact["billed"]),
                ),
                "discount_percent": discount_percent(shown_list, shown_billable),
                "flagged_count": flagged.count,
                "flagged": flagged.amount("billed"),
                "flagged_list": flagged.amount("listed"),
                "rejected_count": rejected.count,
                "rejected": rejected.amount("billed"),
                # Everything not rejected: what `periods show` calls billed and list.
                "charges": billable.count + flagged.count,
                "billed": Amount(
                    shown_billable + flagged.shown["billed"],
                    exact_sum([*billable.exact["billed"], *flagged.exact["billed"]]),
                ),
                "list": Amount(
                    shown_list + flagged.shown["listed"],
                    exact_sum([*billable.exact["listed"], *flagged.exact["listed"]]),
                ),
            }
        )

    return {
        "currencies": figures,
        "sources": _by_source(groups),
        "top_pis": _top(groups["billable"], 0, currencies),
        "top_projects": _top(groups["billable"], 1, currencies),
    }


def _by_source(groups: dict[str, dict[tuple, _Group]]) -> list[dict]:
    rows: dict[tuple, dict] = {}
    for bucket in ("billable", FLAGGED):
        for key, group in groups[bucket].items():
            currency = key[3]
            for what, name in (("billed", bucket), ("listed", f"{bucket}_list")):
                for source_id, amount in group.by_source(what).items():
                    row = rows.setdefault((source_id, currency), defaultdict(lambda: ZERO))
                    row[name] += amount
            for source_id, n in group.counts.items():
                rows.setdefault((source_id, currency), defaultdict(lambda: ZERO))
                rows[(source_id, currency)][f"{bucket}_count"] += n
    return [
        {
            "source_id": source_id,
            "currency": currency,
            "count": int(row["billable_count"] + row[f"{FLAGGED}_count"]),
            "billable": Amount(row["billable"]),
            "list": Amount(row["billable_list"]),
            "flagged_count": int(row[f"{FLAGGED}_count"]),
            "flagged": Amount(row[FLAGGED]),
        }
        for (source_id, currency), row in rows.items()
    ]


def _top(groups: dict[tuple, _Group], position: int, currencies) -> list[dict]:
    """The TOP largest (PI or project) by billable amount per currency, then an "others" row
    and a total row: the rows add up to the Billable card."""
    totals: dict[tuple, _Total] = defaultdict(_Total)
    for key, group in groups.items():
        totals[(key[position], key[3])].add(group)
    ranked = sorted(
        totals.items(), key=lambda item: (-item[1].shown["billed"], item[0][1], item[0][0] or 0)
    )
    out = []
    for currency in currencies:
        rows = [(key, total) for key, total in ranked if key[1] == currency]
        if not rows:
            continue
        for (pk, _), total in rows[:TOP]:
            out.append(
                {
                    "id": pk,
                    "currency": currency,
                    "count": total.count,
                    "billable": total.amount("billed"),
                    "list": total.amount("listed"),
                }
            )
        rest = rows[TOP:]
        if rest:
            out.append(
                _summary_row(f"{len(rest)} others", currency, [t for _, t in rest], "others")
            )
        out.append(_summary_row("Total", currency, [t for _, t in rows], "total"))
    return out


def _summary_row(label: str, currency: str, totals: list[_Total], kind: str) -> dict:
    return {
        "id": None,
        "label": label,
        "name": "",
        "currency": currency,
        "count": sum(t.count for t in totals),
        "billable": Amount(
            sum((t.shown["billed"] for t in totals), ZERO),
            exact_sum(v for t in totals for v in t.exact["billed"]),
        ),
        "list": Amount(sum((t.shown["listed"] for t in totals), ZERO)),
        "kind": kind,
    }


def flag_reasons(period: BillingPeriod) -> list[dict]:
    """Flagged charges per reason (a charge counts under each of its reasons)."""
    rows = (
        Charge.objects.filter(period=period, review_status=FLAGGED)
        .values("flags")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts = {flag: 0 for flag in Flag}
    for row in rows:
        for flag in Flag:
            if row["flags"] & flag:
                counts[flag] += row["n"]
    return [{"code": flag.code, "label": flag.label, "count": n} for flag, n in counts.items() if n]


def import_history(period: BillingPeriod, limit: int = IMPORT_HISTORY) -> list[Import]:
    """The latest import receipts that touched the period (its key is in their `periods`),
    each with `billed_amounts`: (currency, Amount) of the files' billed totals."""
    imports = list(
        Import.objects.filter(periods__icontains=f'"{period.key}"')
        .select_related("source")
        .order_by("-created_at", "-id")[:limit]
    )
    for receipt in imports:
        receipt.billed_amounts = [
            (currency, _amount_of(t.get("billed")))
            for currency, t in sorted((receipt.totals or {}).items())
        ]
    return imports


def _amount_of(text) -> Amount:
    exact = Decimal(str(text)) if text not in (None, "") else ZERO
    return Amount(round_cents(exact), exact)


# -- statement status, from the app that makes statements ---------------------------------------

# Billing never imports statements: the statements app registers its reader here from its
# AppConfig.ready() (`register_period_status`). Without it the dashboard shows no status panel.
_PERIOD_STATUS: list[Callable[[BillingPeriod], dict]] = []


def register_period_status(reader: Callable[[BillingPeriod], dict]) -> None:
    """Let the dashboard show `reader(period)`: statements by status, drafts, emails by status."""
    if reader not in _PERIOD_STATUS:
        _PERIOD_STATUS[:] = [reader]


def statement_status(period: BillingPeriod) -> dict | None:
    return _PERIOD_STATUS[0](period) if _PERIOD_STATUS else None


def status_items(status) -> list[tuple[str, str]]:
    """(label, text) pairs for the statement status: each figure once, in words."""
    if not status:
        return []
    emails = {k: v for k, v in (status.get("emails") or {}).items() if v}
    if not status.get("statements") and not emails:
        return []  # nothing generated yet: the template says so in words
    by_status = {k: v for k, v in (status.get("by_status") or {}).items() if v}
    return [
        ("Statements", str(status.get("statements", 0))),
        ("By status", ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in by_status.items()) or "–"),
        ("Drafts", str(status.get("drafts", 0))),
        ("Emails", ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in emails.items()) or "none"),
    ]


# -- the trend ----------------------------------------------------------------------------------


def trend(
    period: BillingPeriod,
    currency: str,
    choices: list[dict] | None = None,
    *,
    figures: dict | None = None,
    versions: dict[int, str] | None = None,
) -> list[dict]:
    """Billable billed and list per month, for the 12 months ending with `period`, each month
    by the statements' rounding (its groups' rounded sums).

    One GROUP BY over the other months' charges, cached under their figures versions
    (`versions`, every period's, when the caller already read them); the chosen month's
    figures are taken from `figures` when given. Months with no period or no charges are zero,
    so the chart always has 12 points.
    """
    keys = month_keys(period.key)
    if choices is None:
        ids = dict(BillingPeriod.objects.filter(key__in=keys).values_list("pk", "key"))
    else:
        ids = {c["id"]: c["key"] for c in choices if c["key"] in keys}
    found: dict[str, dict] = {}
    if figures is not None:
        ids.pop(period.pk, None)
        for c in figures["currencies"]:
            if c["currency"] == currency:
                found[period.key] = {
                    "billed": c["billable"].value,
                    "listed": c["billable_list"].value,
                }

    def compute():
        rows = (
            Charge.objects.filter(
                period_id__in=sorted(ids), review_status__in=BILLABLE, billing_currency=currency
            )
            .values("period_id", "pi_id", "project_id", "fund_org")
            .annotate(billed=ExactSum("billed_cost"), listed=ExactSum("list_cost"))
            .order_by()
        )
        months: dict[int, dict] = {}
        for row in rows:
            month = months.setdefault(row["period_id"], {"billed": ZERO, "listed": ZERO})
            month["billed"] += round_cents(row["billed"] or ZERO)
            month["listed"] += round_cents(row["listed"] or ZERO)
        return months

    if versions is None:
        versions = figures_versions(ids)
    version = ";".join(versions[pk] for pk in sorted(ids) if pk in versions)
    months = cached_figures(f"trend3:{currency}:{sorted(ids)}", compute, version or "none")
    found.update({ids[pk]: month for pk, month in months.items() if pk in ids})
    return [
        {
            "key": key,
            "billed": found.get(key, {}).get("billed") or ZERO,
            "list": found.get(key, {}).get("listed") or ZERO,
            "selected": key == period.key,
        }
        for key in keys
    ]
