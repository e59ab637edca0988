"""The period figures' version and their warming: every change to a period's charges (an
import, a review decision) or status calls `figures_changed` at the end of its transaction.

Invariants:
- The version is raised in the change's own transaction (`FiguresVersion`), so it commits or
  rolls back with the change, and concurrent writers raise it in their commit order. Cached
  figures are keyed by it (`billing.selectors.figures_versions`): current or not found.
- Warming happens only after commit, and never inside the change: it is a read, and a failure
  to queue or run it is logged, never reported as a failed import or decision.
- With workers, a worker warms. Without them (tasks run in-process), an import warms its
  months itself after commit: an import is a batch job of seconds, and the GROUP BY over the
  month is a second at a million charges, which the first person to open the dashboard would
  otherwise wait for. A decision does not (a reviewer's click stays quick); the first view
  after it computes.
- Higher apps warm figures of their own with billing's (`register_figures_warmer`: billing
  never imports them). Each warmer runs on its own: one that fails is logged, and the others,
  and the change, go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import F

if TYPE_CHECKING:
    from ..models import BillingPeriod

log = logging.getLogger(__name__)

# What the higher apps cache per figures version (the statements app: the period page's
# statements check), warmed after billing's own figures. Registered from their AppConfig.ready().
_FIGURES_WARMERS: list[Callable[[BillingPeriod], object]] = []


def register_figures_warmer(warmer: Callable[[BillingPeriod], object]) -> None:
    """Call `warmer(period)` whenever billing warms a period's figures (after commit of an
    import, or in a worker after any change). It reads and caches under the period's current
    figures version; it should return at once when the period has nothing of its own to warm.
    Idempotent: registering the same warmer twice keeps one."""
    if warmer not in _FIGURES_WARMERS:
        _FIGURES_WARMERS.append(warmer)


def run_figures_warmers(period: BillingPeriod) -> None:
    """Every registered warmer for this period; a failure is logged and the next one runs."""
    for warmer in list(_FIGURES_WARMERS):
        try:
            warmer(period)
        except Exception:  # a read: the first view computes what this could not
            log.exception(
                "warming %s for period %s failed",
                getattr(warmer, "__qualname__", warmer),
                period.key,
            )


def tasks_run_in_process() -> bool:
    """True when Celery has no workers to send tasks to (no broker, or the tests' setting)."""
    from ..tasks import warm_period_figures

    return bool(warm_period_figures.app.conf.task_always_eager)


def figures_changed(period_ids: Iterable[int], *, warm_in_process: bool = False) -> None:
    """These periods' charges or status changed in the current transaction: raise their
    figures' version, and warm their figures after commit (see the module's docstring).

    Call it last in the change's transaction: the version rows stay locked until commit, in
    period order, so concurrent changes of one period queue here rather than deadlock.
    """
    from ..models import FiguresVersion

    ids = sorted({int(pk) for pk in period_ids})
    if not ids:
        return
    FiguresVersion.objects.bulk_create(
        [FiguresVersion(period_id=pk) for pk in ids], ignore_conflicts=True
    )
    for pk in ids:
        FiguresVersion.objects.filter(period_id=pk).update(counter=F("counter") + 1)
    figures_warm_after_commit(ids, in_process=warm_in_process)


def figures_warm_after_commit(period_ids: Iterable[int], *, in_process: bool = False) -> None:
    """Queue the recomputation of these periods' figures for when the transaction commits;
    without workers, compute them then only when `in_process`."""
    from ..tasks import warm_period_figures

    ids = sorted({int(pk) for pk in period_ids})
    if not ids:
        return
    if not tasks_run_in_process():
        transaction.on_commit(lambda: warm_period_figures.delay(ids), robust=True)
    elif in_process:
        transaction.on_commit(lambda: _warm_here(ids), robust=True)


def _warm_here(ids: list[int]) -> None:
    from ..tasks import warm_period_figures

    try:
        warm_period_figures(ids)
    except Exception:  # a read: the first view computes what this could not
        log.exception("warming the figures of periods %s failed", ids)
