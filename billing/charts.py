"""The dashboard's chart: billable list price and billed by month as server-rendered SVG.

Amounts become pixel positions with Decimal arithmetic (never float). Every axis, bar group and
value is labelled in text (the bars' titles carry the amounts to the cent), so the chart reads
without colour and without a mouse. The y axis uses one unit for all its labels (0, 5k, 10k,
15k; never "15k" beside "5,000"). Colours come from classes in billing/dashboard.css, which
follow the admin's light and dark themes; the fill attributes are only a fallback.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from html import escape

from django.utils.safestring import SafeString, mark_safe

from .money import ZERO, cents_text

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


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


def _tick_unit(low: Decimal, high: Decimal) -> tuple[Decimal, str]:
    """One unit for every label of the axis, chosen by its largest value: M, k or none."""
    largest = max(abs(low), abs(high))
    if largest >= 1_000_000:
        return Decimal(1_000_000), "M"
    if largest >= 10_000:
        return Decimal(1_000), "k"
    return Decimal(1), ""


def _tick_label(value: Decimal, unit: tuple[Decimal, str] = (Decimal(1), "")) -> str:
    divisor, suffix = unit
    if not value:
        return "0"
    scaled = (value / divisor).normalize()
    if scaled == scaled.to_integral():
        scaled = scaled.quantize(Decimal(1))
    return f"{format(scaled, ',f')}{suffix}"


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
                f"{p['key']}: list {cents_text(p['list'])}, billed {cents_text(p['billed'])}"
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
    unit = _tick_unit(low, high)
    tick = low
    while tick <= high:
        ty = _px(y(tick))
        line_class = "zero" if tick == 0 else "gridline"
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{ty}" y2="{ty}" class="{line_class}"'
            ' stroke="#d5dde6" stroke-width="1"/>'
            f'<text x="{left - 8}" y="{_px(y(tick) + 4)}" text-anchor="end" class="label">'
            f"{_tick_label(tick, unit)}</text>"
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
                f"{escape(currency)} {cents_text(value)}</title></rect>"
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
