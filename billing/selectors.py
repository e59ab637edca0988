"""Reads for billing: period summaries and totals, exact on every database."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Count, F, Q

from .models import BillingPeriod, Charge, Flag
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


def review_queryset(
    *, period_key: str | None = None, reason: str | None = None, status: str = "flagged"
):
    """Charges in the review queue (flagged by default), oldest first."""
    charges = Charge.objects.select_related("period", "pi", "project").order_by("id")
    if status != "all":
        charges = charges.filter(review_status=status)
    if period_key:
        charges = charges.filter(period__key=period_key)
    if reason:
        flag = Flag.from_code(reason)
        charges = charges.alias(hit=F("flags").bitand(int(flag))).filter(hit__gt=0)
    return charges


def review_rows(charges) -> list[dict]:
    return [
        {
            "id": c.pk,
            "period": c.period.key,
            "status": c.review_status,
            "reasons": c.reasons,
            "pi_email": c.pi.email if c.pi else None,
            "project_id": c.project.code if c.project else None,
            "fund_org": c.fund_org,
            "billed": money_text(c.billed_cost),
            "currency": c.billing_currency,
            "service": c.service_name,
            "resource_id": c.resource_id,
        }
        for c in charges
    ]


def pi_period_overview(*, email: str, period: BillingPeriod) -> dict:
    """One PI's month: each project and fund with billable, flagged and rejected figures."""
    charges = Charge.objects.filter(period=period, pi__email=email.strip().lower())
    billable = Q(review_status__in=Charge.BILLABLE_STATUSES)
    rows = (
        charges.values("project__code", "fund_org", "billing_currency")
        .annotate(
            charges=Count("id", filter=NOT_REJECTED),
            billable=ExactSum("billed_cost", filter=billable),
            list=ExactSum("list_cost", filter=billable),
            approved=Count("id", filter=Q(review_status=Charge.ReviewStatus.APPROVED)),
            flagged=Count("id", filter=FLAGGED),
            flagged_billed=ExactSum("billed_cost", filter=FLAGGED),
            rejected=Count("id", filter=Q(review_status=Charge.ReviewStatus.REJECTED)),
        )
        .order_by("project__code", "fund_org", "billing_currency")
    )
    projects = [
        {
            "project_id": r["project__code"],
            "fund_org": r["fund_org"],
            "currency": r["billing_currency"],
            "charges": r["charges"],
            "billable": money_text(r["billable"] or ZERO),
            "list": money_text(r["list"] or ZERO),
            "approved": r["approved"],
            "flagged": r["flagged"],
            "flagged_billed": money_text(r["flagged_billed"] or ZERO),
            "rejected": r["rejected"],
        }
        for r in rows
    ]
    totals: dict[str, dict] = {}
    for p in projects:
        t = totals.setdefault(p["currency"], {"billable": ZERO, "flagged_billed": ZERO})
        t["billable"] += Decimal(p["billable"])
        t["flagged_billed"] += Decimal(p["flagged_billed"])
    return {
        "pi_email": email.strip().lower(),
        "period": period.key,
        "projects": projects,
        "totals": {c: {k: money_text(v) for k, v in t.items()} for c, t in sorted(totals.items())},
    }
