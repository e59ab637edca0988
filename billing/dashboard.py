"""The admin's landing page, assembled: one period's figures, the trend and its chart, import
history and statement status.

The reads are in billing/selectors/dashboard.py (every amount by the statements' rounding,
explained there); the chart is billing/charts.py. openchargeback/admin.py calls
`dashboard_context`; the worker calls it too, to warm the cache after an import.
"""

from __future__ import annotations

from .charts import trend_svg
from .selectors import figures_versions
from .selectors.dashboard import (
    Amount,
    choose_period,
    import_history,
    month_keys,
    period_choices,
    period_figures,
    statement_status,
    status_items,
    trend,
)

__all__ = ["dashboard_context", "month_keys", "trend_svg"]


# -- everything the landing page shows ----------------------------------------------------------


def dashboard_context(requested: str | None) -> dict:
    choices = period_choices()
    period = choose_period(choices, requested)
    context = {"dashboard": True, "period_choices": choices, "period": period}
    if period is None:
        return context
    versions = figures_versions()  # every period's: the chosen one's and the trend's months
    figures = period_figures(period, versions[period.pk])
    main = figures["currencies"][0]["currency"] if figures["currencies"] else _config_currency()
    points = trend(period, main, choices, figures=figures, versions=versions)
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
