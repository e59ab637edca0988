"""Reads for the admin dashboard, and its chart as server-rendered SVG.

Figures for one period come from `billing.selectors.period_rollup` (one GROUP BY over the
period's charges by source, PI, project, fund/org, currency and review status, summed with
`ExactSum`, cached until the data changes), folded here with exact decimal sums; the
twelve-month trend is one more GROUP BY. Rejected charges are counted nowhere but in
their own count. Billable means `Charge.BILLABLE_STATUSES` (clean, approved), as on statements.

The figures reconcile with `billing.selectors.period_summary` (`periods show --json`): the
billable, flagged and rejected parts add up to its `billed`, `list`, `flagged_billed`,
`billable`, `charges`, `flagged` and `rejected`.

The sums are cached under `selectors.data_version()` (the latest Import and review decision):
charges change only through an import or a review decision, so a cached figure is never stale,
and a page view after the first costs index look-ups only. Names (PIs, projects, sources) are
always read fresh.

The chart converts amounts to pixel positions with Decimal arithmetic (never float), and labels
every axis, bar group and value in text, so it reads without colour and without a mouse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal
from html import escape

from django.db.models import Count, Exists, OuterRef
from django.utils.safestring import SafeString, mark_safe

from .models import PI, BillingPeriod, Charge, Flag, Import, Project, Source
from .money import ZERO, ExactSum, cents_text, exact_sum, money_text
from .selectors import cached_figures, data_version, period_rollup

BILLABLE = {str(s) for s in Charge.BILLABLE_STATUSES}
FLAGGED = str(Charge.ReviewStatus.FLAGGED)
REJECTED = str(Charge.ReviewStatus.REJECTED)
TREND_MONTHS = 12
TOP = 10
IMPORT_HISTORY = 8
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Amount:
    """An exact amount with its display text (to the cent, half up, grouped)."""

    value: Decimal

    @property
    def exact(self) -> str:
        return money_text(self.value)

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
class _Sums:
    count: int = 0
    billed: list[Decimal] = field(default_factory=list)
    listed: list[Decimal] = field(default_factory=list)

    def add(self, count: int, billed: Decimal | None, listed: Decimal | None) -> None:
        self.count += count
        if billed is not None:
            self.billed.append(billed)
        if listed is not None:
            self.listed.append(listed)

    @property
    def billed_total(self) -> Decimal:
        return exact_sum(self.billed)

    @property
    def list_total(self) -> Decimal:
        return exact_sum(self.listed)


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


def _cached(key: str, version: str | None, compute):
    if version is None:
        return compute()
    return cached_figures(f"dashboard:{key}", compute, version)


def period_figures(period: BillingPeriod, version: str | None = None) -> dict:
    """Totals per currency, by source, top PIs and projects, and flagged counts by reason.

    Two GROUP BY queries over the period's charges (cached under `version`, see
    `data_version`), and three small name look-ups, always fresh.
    """
    rows = period_rollup(period)  # cached by the selector, shared with `periods show`
    totals: dict[str, dict[str, _Sums]] = {}
    by_source: dict[tuple, dict[str, _Sums]] = {}
    by_pi: dict[tuple, _Sums] = {}
    by_project: dict[tuple, _Sums] = {}
    for row in rows:
        currency, status = row["billing_currency"], row["review_status"]
        bucket = "billable" if status in BILLABLE else status
        args = (row["n"], row["billed"], row["list"])
        per_currency = totals.setdefault(currency, {})
        per_currency.setdefault(bucket, _Sums()).add(*args)
        if status == REJECTED:
            continue
        source_key = (row["source_id"], currency)
        by_source.setdefault(source_key, {}).setdefault(bucket, _Sums()).add(*args)
        if bucket == "billable":
            by_pi.setdefault((row["pi_id"], currency), _Sums()).add(*args)
            by_project.setdefault((row["project_id"], currency), _Sums()).add(*args)

    currencies = []
    for currency in sorted(totals, key=lambda c: (-_count(totals[c]), c)):
        parts = totals[currency]
        billable = parts.get("billable", _Sums())
        flagged = parts.get(FLAGGED, _Sums())
        rejected = parts.get(REJECTED, _Sums())
        billable_billed, billable_list = billable.billed_total, billable.list_total
        flagged_billed = flagged.billed_total
        currencies.append(
            {
                "currency": currency,
                "billable_count": billable.count,
                "billable": Amount(billable_billed),
                "billable_list": Amount(billable_list),
                "discount": Amount(billable_list - billable_billed),
                "discount_percent": discount_percent(billable_list, billable_billed),
                "flagged_count": flagged.count,
                "flagged": Amount(flagged_billed),
                "flagged_list": Amount(flagged.list_total),
                "rejected_count": rejected.count,
                "rejected": Amount(rejected.billed_total),
                # Everything not rejected: what `periods show` calls billed and list.
                "charges": billable.count + flagged.count,
                "billed": Amount(billable_billed + flagged_billed),
                "list": Amount(billable_list + flagged.list_total),
            }
        )

    source_ids = {key[0] for key in by_source}
    sources = dict(Source.objects.filter(pk__in=source_ids).values_list("pk", "name"))
    source_rows = []
    for (source_id, currency), parts in by_source.items():
        billable = parts.get("billable", _Sums())
        flagged = parts.get(FLAGGED, _Sums())
        source_rows.append(
            {
                "source": sources.get(source_id, "?"),
                "source_id": source_id,
                "currency": currency,
                "count": billable.count + flagged.count,
                "billable": Amount(billable.billed_total),
                "list": Amount(billable.list_total),
                "flagged_count": flagged.count,
                "flagged": Amount(flagged.billed_total),
            }
        )
    source_rows.sort(key=lambda r: (r["currency"], -r["billable"].value, r["source"]))

    return {
        "currencies": currencies,
        "sources": source_rows,
        "top_pis": _top(by_pi, PI, "email"),
        "top_projects": _top(by_project, Project, "code"),
        "flag_reasons": _cached(f"reasons:{period.pk}", version, lambda: flag_reasons(period)),
    }


def _count(parts: dict[str, _Sums]) -> int:
    return sum(s.count for s in parts.values())


def _top(groups: dict[tuple, _Sums], model, label_field: str) -> list[dict]:
    ranked = sorted(
        ((key, sums, sums.billed_total) for key, sums in groups.items()),
        key=lambda item: (-item[2], item[0][1], item[0][0] or 0),
    )[:TOP]
    ids = {key[0] for key, _, _ in ranked if key[0] is not None}
    names = {obj.pk: obj for obj in model.objects.filter(pk__in=ids)}
    out = []
    for (pk, currency), sums, billed in ranked:
        obj = names.get(pk)
        out.append(
            {
                "id": pk,
                "label": getattr(obj, label_field, "") if obj else "(none)",
                "name": getattr(obj, "name", "") if obj else "",
                "currency": currency,
                "count": sums.count,
                "billable": Amount(billed),
                "list": Amount(sums.list_total),
            }
        )
    return out


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
    """The latest import receipts that touched the period (its key is in their `periods`)."""
    return list(
        Import.objects.filter(periods__icontains=f'"{period.key}"')
        .select_related("source")
        .order_by("-created_at", "-id")[:limit]
    )


def statement_status(period: BillingPeriod):
    """Statement and email status from the statements app, once it provides it; else None."""
    try:
        from statements.selectors import period_status
    except ImportError:
        return None
    return period_status(period)


def status_items(status) -> list[tuple[str, str]]:
    """(label, text) pairs for the statement status the statements app returns."""
    if status is None:
        return []
    if not isinstance(status, dict):
        return [("Status", str(status))]
    if not status.get("statements") and not any((status.get("emails") or {}).values()):
        return []  # nothing generated yet: the template says so in words
    items = []
    for key, value in status.items():
        if key == "period":
            continue
        label = str(key).replace("_", " ").capitalize()
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, dict):
            value = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in value.items() if v) or "0"
        elif isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value)
        items.append((label, "" if value is None else str(value)))
    return items


# -- the trend ----------------------------------------------------------------------------------


def trend(
    period: BillingPeriod,
    currency: str,
    choices: list[dict] | None = None,
    *,
    figures: dict | None = None,
    version: str | None = None,
) -> list[dict]:
    """Billable billed and list per month, for the 12 months ending with `period`.

    One GROUP BY over the other months' charges (cached under `version`); the chosen month's
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
        return list(
            Charge.objects.filter(
                period_id__in=sorted(ids), review_status__in=BILLABLE, billing_currency=currency
            )
            .values("period_id")
            .annotate(billed=ExactSum("billed_cost"), listed=ExactSum("list_cost"))
            .order_by()
        )

    rows = _cached(f"trend:{currency}:{','.join(map(str, sorted(ids)))}", version, compute)
    found.update({ids[row["period_id"]]: row for row in rows if row["period_id"] in ids})
    points = []
    for key in keys:
        row = found.get(key, {})
        points.append(
            {
                "key": key,
                "billed": row.get("billed") or ZERO,
                "list": row.get("listed") or ZERO,
                "selected": key == period.key,
            }
        )
    return points


def _nice_step(span: Decimal, ticks: int = 4) -> Decimal:
    raw = span / ticks
    magnitude = Decimal(1).scaleb(raw.adjusted())
    for multiple in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10)):
        if raw <= multiple * magnitude:
            return multiple * magnitude
    return 10 * magnitude


def _axis(points: list[dict]) -> tuple[Decimal, Decimal, Decimal]:
    values = [p["billed"] for p in points] + [p["list"] for p in points]
    low, high = min([ZERO, *values]), max([ZERO, *values])
    if low == high:
        high = Decimal(1)
    step = _nice_step(high - low)
    low = (low / step).to_integral_value(rounding=ROUND_FLOOR) * step
    high = (high / step).to_integral_value(rounding=ROUND_CEILING) * step
    return low, high, step


def _px(value: Decimal) -> str:
    text = format(value.quantize(Decimal("0.1")), "f")
    return text[:-2] if text.endswith(".0") else text


def _tick_label(value: Decimal) -> str:
    value = value.normalize()
    if abs(value) >= 1_000_000:
        return f"{format((value / 1_000_000).normalize(), ',f')}M"
    if abs(value) >= 10_000:
        return f"{format((value / 1_000).normalize(), ',f')}k"
    return format(value.quantize(Decimal(1)) if value == value.to_integral() else value, ",f")


def trend_svg(points: list[dict], currency: str) -> SafeString:
    """Grouped bars (list price, billed) per month as an accessible inline SVG."""
    width, height = Decimal(1000), Decimal(290)
    left, right, top, bottom = Decimal(64), Decimal(12), Decimal(36), Decimal(44)
    plot_w, plot_h = width - left - right, height - top - bottom
    low, high, step = _axis(points)
    span = high - low

    def y(value: Decimal) -> Decimal:
        return top + (high - value) * plot_h / span

    n = len(points)
    group = plot_w / n
    bar = group * Decimal("0.34")
    gap = group * Decimal("0.08")
    first, last = points[0]["key"], points[-1]["key"]
    out = [
        f'<svg class="ocb-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"'
        ' role="img" aria-labelledby="ocb-chart-title ocb-chart-desc"'
        ' preserveAspectRatio="xMidYMid meet">',
        f'<title id="ocb-chart-title">Billable charges by month, {first} to {last}'
        f" ({escape(currency)})</title>",
        '<desc id="ocb-chart-desc">'
        + escape(
            "; ".join(
                f"{p['key']}: list {Amount(p['list']).display}, billed "
                f"{Amount(p['billed']).display}"
                for p in points
            )
        )
        + "</desc>",
    ]
    # Legend.
    out.append(
        f'<g class="legend" font-size="12"><rect x="{left}" y="10" width="12" height="12"'
        ' class="bar-list" fill="#b8c7d9"/>'
        f'<text x="{left + 18}" y="20.5" class="label">List price</text>'
        f'<rect x="{left + 100}" y="10" width="12" height="12" class="bar-billed"'
        ' fill="#417690"/>'
        f'<text x="{left + 118}" y="20.5" class="label">Billed</text>'
        f'<text x="{width - right}" y="20.5" text-anchor="end" class="label axis-unit">'
        f"{escape(currency)}</text></g>"
    )
    # Grid lines and y labels.
    out.append('<g class="grid" font-size="11">')
    tick = low
    while tick <= high:
        ty = _px(y(tick))
        line_class = "zero" if tick == 0 else "gridline"
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{ty}" y2="{ty}" class="{line_class}"'
            ' stroke="#d5dde6" stroke-width="1"/>'
            f'<text x="{left - 8}" y="{_px(y(tick) + 4)}" text-anchor="end" class="label">'
            f"{_tick_label(tick)}</text>"
        )
        tick += step
    out.append("</g>")
    # Bars and month labels.
    zero_y = y(ZERO)
    out.append('<g class="bars" font-size="11">')
    for i, point in enumerate(points):
        x0 = left + group * i
        cx = x0 + group / 2
        if point["selected"]:
            out.append(
                f'<rect x="{_px(x0 + 1)}" y="{top}" width="{_px(group - 2)}" height="{plot_h}"'
                ' class="selected" fill="#eef3f7"/>'
            )
        for kind, x, css, colour in (
            ("list", cx - gap / 2 - bar, "bar-list", "#b8c7d9"),
            ("billed", cx + gap / 2, "bar-billed", "#417690"),
        ):
            value = point[kind]
            y_value = y(value)
            top_y, h = (y_value, zero_y - y_value) if value >= 0 else (zero_y, y_value - zero_y)
            label = "List price" if kind == "list" else "Billed"
            out.append(
                f'<rect x="{_px(x)}" y="{_px(top_y)}" width="{_px(bar)}" height="{_px(h)}"'
                f' class="{css}" fill="{colour}"><title>{point["key"]} {label}: '
                f"{escape(currency)} {Amount(value).display}</title></rect>"
            )
        year, month = point["key"].split("-")
        weight = ' font-weight="bold"' if point["selected"] else ""
        out.append(
            f'<text x="{_px(cx)}" y="{height - bottom + 16}" text-anchor="middle"'
            f' class="label month"{weight}>{MONTHS[int(month) - 1]}</text>'
        )
        if i == 0 or month == "01":
            out.append(
                f'<text x="{_px(cx)}" y="{height - bottom + 31}" text-anchor="middle"'
                f' class="label year">{year}</text>'
            )
    out.append("</g></svg>")
    return mark_safe("".join(out))


# -- everything the landing page shows ----------------------------------------------------------


def dashboard_context(requested: str | None) -> dict:
    choices = period_choices()
    period = choose_period(choices, requested)
    context = {"dashboard": True, "period_choices": choices, "period": period}
    if period is None:
        return context
    version = data_version()
    figures = period_figures(period, version)
    main = figures["currencies"][0]["currency"] if figures["currencies"] else _config_currency()
    points = trend(period, main, choices, figures=figures, version=version)
    status = statement_status(period)
    context.update(
        {
            "figures": figures,
            "main_currency": main,
            "trend_points": [
                {**p, "billed": Amount(p["billed"]), "list": Amount(p["list"])} for p in points
            ],
            "trend_svg": trend_svg(points, main),
            "imports": import_history(period),
            "statement_status": status,
            "statement_items": status_items(status),
        }
    )
    return context


def _config_currency() -> str:
    from .config import ConfigError, load_config

    try:
        return load_config().currency
    except ConfigError:
        return "USD"
