"""Writes for billing: imports and period transitions.

Invariants:
- Every state change is one transaction with its audit event.
- A closed period takes no imports; a finalized one takes no write at all.
- Statuses are changed here only, never by queryset.update() elsewhere.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.services import audit_record

from .ingest.errors import ImportRefused
from .ingest.pipeline import PERIOD_RE, ImportResult, import_files
from .models import BillingPeriod

__all__ = [
    "ImportRefused",
    "ImportResult",
    "PeriodError",
    "import_files",
    "period_close",
    "period_get_or_create",
    "period_open",
]


class PeriodError(Exception):
    """A period transition that isn't allowed; the message says why."""


def _valid_key(key: str) -> str:
    if not PERIOD_RE.match(key or ""):
        raise PeriodError(f"period must be YYYY-MM, got {key!r}")
    return key


def period_get_or_create(*, key: str) -> BillingPeriod:
    period, _ = BillingPeriod.objects.get_or_create(key=_valid_key(key))
    return period


@transaction.atomic
def period_close(*, key: str, acting_user=None, actor: str = "", reason: str = "") -> BillingPeriod:
    """open → closed: the period takes no more imports."""
    period = BillingPeriod.objects.select_for_update().filter(key=_valid_key(key)).first()
    if period is None:
        raise PeriodError(f"period {key} does not exist")
    if period.status != BillingPeriod.Status.OPEN:
        raise PeriodError(f"period {key} is {period.status}; only an open period can be closed")
    period.status = BillingPeriod.Status.CLOSED
    period.closed_at = timezone.now()
    period.save(update_fields=["status", "closed_at"])
    audit_record(
        action="period.close",
        acting_user=acting_user,
        actor=actor,
        obj=period,
        before={"status": "open"},
        after={"status": "closed"},
        reason=reason,
    )
    return period


@transaction.atomic
def period_open(*, key: str, acting_user=None, actor: str = "", reason: str = "") -> BillingPeriod:
    """Create a period as open, or reopen a closed one (a reason is required to reopen)."""
    key = _valid_key(key)
    period, created = BillingPeriod.objects.get_or_create(key=key)
    period = BillingPeriod.objects.select_for_update().get(pk=period.pk)
    if created:
        audit_record(
            action="period.open",
            acting_user=acting_user,
            actor=actor,
            obj=period,
            after={"status": "open"},
            reason=reason,
        )
        return period
    if period.is_locked():
        raise PeriodError(f"period {key} is finalized; it can never be reopened")
    if period.is_open():
        raise PeriodError(f"period {key} is already open")
    if not reason.strip():
        raise PeriodError(f"reopening {key} needs a reason (--reason TEXT)")
    period.status = BillingPeriod.Status.OPEN
    period.closed_at = None
    period.save(update_fields=["status", "closed_at"])
    audit_record(
        action="period.reopen",
        acting_user=acting_user,
        actor=actor,
        obj=period,
        before={"status": "closed"},
        after={"status": "open"},
        reason=reason,
    )
    return period
