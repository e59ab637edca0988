"""The period lifecycle: open → closed → finalized; closed → open again with a reason.

Invariants:
- Every transition is one transaction with its audit event; every reopening is its own event,
  so the history is kept, never overwritten.
- A closed period takes no imports; a finalized one takes no write at all (`period_writable`
  is the one check every write service makes, under a row lock).
- Finalizing is permanent and needs nothing flagged, and the period's statements and GL journal.
- Statuses are changed here only, never by queryset.update() elsewhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.dbguards import guard_refusal
from accounts.services import audit_record

from ..models import PERIOD_RE, BillingPeriod, Charge
from .figures import figures_changed


class PeriodError(Exception):
    """A period transition that isn't allowed; the message says why."""


@contextlib.contextmanager
def guard_refusals():
    """Turn the database guards' refusal (accounts/dbguards.py) into a PeriodError.

    The services check first, so this is the backstop: a path that forgot the check still gets
    a sentence, not a traceback.
    """
    try:
        yield
    except IntegrityError as exc:
        message = guard_refusal(exc)
        if message is None:
            raise
        raise PeriodError(f"refused by the database: {message}") from exc


def _valid_key(key: str) -> str:
    if not PERIOD_RE.match(key or ""):
        raise PeriodError(f"period must be YYYY-MM, got {key!r}")
    return key


def period_get_or_create(*, key: str) -> BillingPeriod:
    period, _ = BillingPeriod.objects.get_or_create(key=_valid_key(key))
    return period


def period_writable(period: BillingPeriod | int, *, what: str = "change") -> BillingPeriod:
    """Lock the period row and refuse if it is finalized. Call inside the write's transaction."""
    pk = period.pk if isinstance(period, BillingPeriod) else period
    locked = BillingPeriod.objects.select_for_update().get(pk=pk)
    if locked.is_locked():
        raise PeriodError(f"period {locked.key} is finalized; nothing in it can {what}")
    return locked


def finalize_checklist(period: BillingPeriod) -> list[dict]:
    """What finalizing the period needs, each item with whether it is done.

    Each item: `label` (what is needed, in words), `ok`, and `explain` (what to do while it is
    not). The period page shows it; `period_finalize` refuses while any item is not ok.
    """
    closed = period.status != BillingPeriod.Status.OPEN
    items = [
        {
            "label": "The period is closed (it takes no more imports)",
            "ok": closed,
            "explain": "close the period first",
        }
    ]
    count = Charge.objects.filter(period=period, review_status=Charge.ReviewStatus.FLAGGED).count()
    items.append(
        {
            "label": "Nothing is flagged",
            "ok": not count,
            "explain": f"{count} charge(s) are still flagged; approve, reject or reassign them",
        }
    )
    for check, explain in _FINALIZE_CHECKS:
        label = _FINALIZE_LABELS.get(check, explain)
        items.append({"label": label, "ok": bool(check(period)), "explain": explain})
    return items


def _finalize_blockers(period: BillingPeriod) -> list[str]:
    """Why the period can't be finalized yet (empty when it can); its status is checked apart."""
    return [item["explain"] for item in finalize_checklist(period)[1:] if not item["ok"]]


# Checks the apps built on billing add (statements, journals) from their AppConfig.ready():
# billing never imports them. Each is (check(period) -> True when it may be finalized,
# what to do while it is False); the checklist's words for each are in _FINALIZE_LABELS.
_FINALIZE_CHECKS: list[tuple[Callable[[BillingPeriod], bool], str]] = []
_FINALIZE_LABELS: dict[Callable[[BillingPeriod], bool], str] = {}


def register_finalize_check(
    check: Callable[[BillingPeriod], bool], explain: str, *, label: str = ""
) -> None:
    """Refuse `period_finalize` while `check(period)` is False, saying `explain`; the period
    page lists it as `label` (what it needs). Idempotent (registering the same check twice keeps
    one), so a reloaded AppConfig adds nothing."""
    if all(existing is not check for existing, _ in _FINALIZE_CHECKS):
        _FINALIZE_CHECKS.append((check, explain))
    if label:
        _FINALIZE_LABELS[check] = label


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
    figures_changed([period.pk])  # the figures' key has the status
    return period


@transaction.atomic
def period_finalize(
    *, key: str, acting_user=None, actor: str = "", reason: str = ""
) -> BillingPeriod:
    """closed → finalized, for good: nothing flagged, statements and journal made."""
    period = BillingPeriod.objects.select_for_update().filter(key=_valid_key(key)).first()
    if period is None:
        raise PeriodError(f"period {key} does not exist")
    if period.status != BillingPeriod.Status.CLOSED:
        raise PeriodError(f"period {key} is {period.status}; only a closed period can be finalized")
    blockers = _finalize_blockers(period)
    if blockers:
        raise PeriodError(f"period {key} can't be finalized: " + "; ".join(blockers))
    period.status = BillingPeriod.Status.FINALIZED
    period.finalized_at = timezone.now()
    period.save(update_fields=["status", "finalized_at"])
    audit_record(
        action="period.finalize",
        acting_user=acting_user,
        actor=actor,
        obj=period,
        before={"status": "closed"},
        after={"status": "finalized"},
        reason=reason,
    )
    figures_changed([period.pk])  # the figures' key has the status
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
    figures_changed([period.pk])  # the figures' key has the status
    return period
