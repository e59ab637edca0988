"""Reads for billing: period summaries and totals, exact on every database."""

from __future__ import annotations

from django.db.models import Count, Q

from .models import BillingPeriod, Charge
from .money import ZERO, ExactSum, money_text

NOT_REJECTED = ~Q(review_status=Charge.ReviewStatus.REJECTED)
FLAGGED = Q(review_status=Charge.ReviewStatus.FLAGGED)


def period_totals(period: BillingPeriod) -> dict[str, dict[str, str]]:
    """Per currency: billed and list of every charge not rejected, and the flagged part."""
    rows = (
        Charge.objects.filter(NOT_REJECTED, period=period)
        .values("billing_currency")
        .annotate(
            billed=ExactSum("billed_cost"),
            list=ExactSum("list_cost"),
            flagged_billed=ExactSum("billed_cost", filter=FLAGGED),
        )
        .order_by("billing_currency")
    )
    return {
        row["billing_currency"]: {
            "billed": money_text(row["billed"] or ZERO),
            "list": money_text(row["list"] or ZERO),
            "flagged_billed": money_text(row["flagged_billed"] or ZERO),
            "billable": money_text((row["billed"] or ZERO) - (row["flagged_billed"] or ZERO)),
        }
        for row in rows
    }


def period_summary(period: BillingPeriod) -> dict:
    counts = Charge.objects.filter(period=period).aggregate(
        charges=Count("id", filter=NOT_REJECTED),
        flagged=Count("id", filter=FLAGGED),
        rejected=Count("id", filter=Q(review_status=Charge.ReviewStatus.REJECTED)),
    )
    return {
        "period": period.key,
        "status": period.status,
        "charges": counts["charges"],
        "flagged": counts["flagged"],
        "rejected": counts["rejected"],
        "totals": period_totals(period),
    }


def period_list() -> list[dict]:
    periods = BillingPeriod.objects.annotate(
        charge_count=Count("charges", filter=~Q(charges__review_status="rejected")),
        flagged_count=Count("charges", filter=Q(charges__review_status="flagged")),
    ).order_by("-key")
    return [
        {"period": p.key, "status": p.status, "charges": p.charge_count, "flagged": p.flagged_count}
        for p in periods
    ]
