"""Warm period figures: after a change commits, a worker recomputes what the dashboard and
`periods show` read, so the first person to look doesn't wait for a GROUP BY over the period.

Invariants:
- Only after commit, and never inside the change: warming is a read, and a failure to queue
  it (the broker down) is logged, never reported as a failed import or decision.
- Only with workers. Without a broker, Celery runs tasks in-process, which would make the
  import or the decision itself wait for the figures; the first view computes them instead.
- Correctness never depends on it: cached figures are keyed by the data version
  (`billing.selectors.data_version`), so a figure is either current or not found.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction


def tasks_run_in_process() -> bool:
    """True when Celery has no workers to send tasks to (no broker, or the tests' setting)."""
    from ..tasks import warm_period_figures

    return bool(warm_period_figures.app.conf.task_always_eager)


def figures_warm_after_commit(period_ids: Iterable[int]) -> None:
    """Queue the recomputation of these periods' figures for when the transaction commits."""
    from ..tasks import warm_period_figures

    ids = sorted({int(pk) for pk in period_ids})
    if not ids or tasks_run_in_process():
        return
    transaction.on_commit(lambda: warm_period_figures.delay(ids), robust=True)
