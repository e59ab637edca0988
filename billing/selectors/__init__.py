"""Reads for billing: period summaries and totals, exact on every database."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from decimal import Decimal

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, F, Q

from ..models import BillingPeriod, Charge, Flag, Import
from ..money import ZERO, ExactSum, money_text

NOT_REJECTED = ~Q(review_status=Charge.ReviewStatus.REJECTED)
FLAGGED = Q(review_status=Charge.ReviewStatus.FLAGGED)


def period_rollup(period: BillingPeriod, version: str | None = None) -> list[dict]:
    """The period's charges grouped by source, PI, project, fund/org, status and currency.

    Each row: the group's keys, `n` charges, exact `billed` and `list` sums (Decimal, or None
    when no charge of the group has the value). Every figure of `periods show`, the admin's period
    page and the dashboard derives from these rows, so they always agree.

    One pass over the period's charges, then cached under the period's figures version (raised
    by every import and review decision that changes its charges, and by its status changes;
    `version` when the caller already read it). Never cached inside a transaction, which may
    still roll back.
    """
    return cached_figures(
        _rollup_name(period.pk),
        lambda: list(
            Charge.objects.filter(period=period)
            .values(
                "source_id", "pi_id", "project_id", "fund_org", "review_status", "billing_currency"
            )
            .annotate(n=Count("id"), billed=ExactSum("billed_cost"), list=ExactSum("list_cost"))
            .order_by()
        ),
        version or figures_versions([period.pk])[period.pk],
    )


FIGURES_CACHE_SECONDS = 24 * 3600  # correctness comes from the version in the key


def figures_versions(period_ids: Iterable[int] | None = None) -> dict[int, str]:
    """Each period's figures version (all periods when `period_ids` is None), in one query.

    The version names the period (its id and creation time, so a period deleted and made again
    is another one), its status, and its `FiguresVersion` counter, which every change to its
    charges raises in the change's own transaction (`billing.services.figures.figures_changed`).
    Figures cached under it are never stale. A period that doesn't exist has no entry.
    """
    periods = BillingPeriod.objects.order_by("pk")
    if period_ids is not None:
        periods = periods.filter(pk__in=list(period_ids))
    return {
        pk: f"{pk}@{created.isoformat()}/{status}/{counter or 0}"
        for pk, created, status, counter in periods.values_list(
            "pk", "created_at", "status", "figures_version__counter"
        )
    }


def data_version() -> str:
    """The version of every period's charges: changes whenever any charge may have changed."""
    return ";".join(figures_versions().values())


def cached_figures(name: str, compute, version: str | None = None):
    """`compute()`, cached under `name` and the data version (pass `version`, a period's from
    `figures_versions` or `data_version()`, when the figures read only some periods).

    Never cached inside a transaction: what it reads may still roll back.
    """
    if connection.in_atomic_block:
        return compute()
    key = _figures_key(name, version or data_version())
    value = cache.get(key)
    if value is None:
        value = compute()
        cache.set(key, value, FIGURES_CACHE_SECONDS)
    return value


def _rollup_name(period_id: int) -> str:
    return f"rollup:{period_id}"


def _figures_key(name: str, version: str) -> str:
    digest = hashlib.blake2b(f"{name}|{version}".encode(), digest_size=16).hexdigest()
    return f"billing:figures:{digest}"


def cached_period_rollups(
    period_ids: Iterable[int] | None = None,
) -> tuple[dict[int, list[dict]], list[int]] | None:
    """The `period_rollup`s of these periods (every period when `period_ids` is None) that are
    in the cache under their current version, and the ids of the periods whose rollup is not;
    never computes one. None inside a transaction.

    For a page that adds up from the rollups what it can and reads the rest from the charges of
    the months missing: an import warms its own months, workers warm after every change, and the
    cache forgets after a day, so some may be missing while the rest are warm. A rollup is too
    dear for a page to compute (12.7 s for a month of ten million charges, against 3.5 s for a
    GROUP BY over them by the two columns a page needs: docs/benchmarks.md, "Session 8")."""
    if connection.in_atomic_block:
        return None
    versions = figures_versions(period_ids)
    keys = {_figures_key(_rollup_name(pk), version): pk for pk, version in versions.items()}
    found = {keys[key]: rows for key, rows in cache.get_many(list(keys)).items()}
    return found, [pk for pk in versions if pk not in found]


def period_totals(period: BillingPeriod, rollup: list[dict] | None = None) -> dict:
    """Per currency: billed and list of every charge not rejected, the flagged part, and the
    billable part (clean + approved)."""
    totals: dict[str, dict] = {}
    for row in rollup if rollup is not None else period_rollup(period):
        if row["review_status"] == Charge.ReviewStatus.REJECTED:
            continue
        t = totals.setdefault(
            row["billing_currency"], {"billed": ZERO, "list": ZERO, "flagged_billed": ZERO}
        )
        t["billed"] += row["billed"] or ZERO
        t["list"] += row["list"] or ZERO
        if row["review_status"] == Charge.ReviewStatus.FLAGGED:
            t["flagged_billed"] += row["billed"] or ZERO
    return {
        currency: {
            "billed": money_text(t["billed"]),
            "list": money_text(t["list"]),
            "flagged_billed": money_text(t["flagged_billed"]),
            "billable": money_text(t["billed"] - t["flagged_billed"]),
        }
        for currency, t in sorted(totals.items())
    }


def period_summary(period: BillingPeriod) -> dict:
    rollup = period_rollup(period)
    counts = {status: 0 for status in Charge.ReviewStatus.values}
    for row in rollup:
        counts[row["review_status"]] += row["n"]
    return {
        "period": period.key,
        "status": period.status,
        "charges": counts["clean"] + counts["flagged"] + counts["approved"],
        "flagged": counts["flagged"],
        "rejected": counts["rejected"],
        "totals": period_totals(period, rollup),
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


def reference_months(*, source=None, project=None, months: int = 12) -> list[dict]:
    """Month totals of one source or one project, newest first: per period and currency the
    charges, exact billed and billable (clean + approved) sums, and flagged charges. Rejected
    charges are left out of all of them, as `period_totals` leaves them out (one meaning of
    "billed" wherever it is shown).

    A source's charges are reached by period (the composite index); a project's have no index
    of their own (docs/architecture.md: left out to keep imports fast), so a project's page
    reads its charges once, grouped in the database.
    """
    charges = Charge.objects.all()
    if source is not None:
        charges = charges.filter(source=source)
    if project is not None:
        charges = charges.filter(project=project)
    periods = list(BillingPeriod.objects.order_by("-key")[:months])
    billable = Q(review_status__in=Charge.BILLABLE_STATUSES)
    rows = (
        charges.filter(period__in=periods)
        .exclude(review_status=Charge.ReviewStatus.REJECTED)
        .values("period_id", "billing_currency")
        .annotate(
            n=Count("id"),
            billed=ExactSum("billed_cost"),
            billable=ExactSum("billed_cost", filter=billable),
            flagged=Count("id", filter=FLAGGED),
        )
        .order_by()
    )
    by_period = {p.pk: p for p in periods}
    result = [
        {
            "period": by_period[row["period_id"]].key,
            "status": by_period[row["period_id"]].status,
            "currency": row["billing_currency"],
            "charges": row["n"],
            "flagged": row["flagged"],
            "billed": row["billed"] or ZERO,
            "billable": row["billable"] or ZERO,
        }
        for row in rows
    ]
    return sorted(result, key=lambda r: (r["period"], r["currency"]), reverse=True)


def last_import(*, source=None, project=None) -> Import | None:
    """The latest import of a source, or the latest that wrote a charge of a project."""
    if source is not None:
        return Import.objects.filter(source=source).order_by("-created_at", "-id").first()
    latest_file = Charge.objects.filter(project=project).order_by("-import_file_id")
    file_id = latest_file.values_list("import_file_id", flat=True).first()
    if file_id is None:
        return None
    return Import.objects.filter(files__id=file_id).select_related("source").first()
