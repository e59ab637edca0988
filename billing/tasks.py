"""Celery tasks for billing. Tasks take primary keys and paths, re-read state, call a service.

Importing is idempotent (the same files again are `unchanged`), so a task redelivered after a
worker dies does no harm.
"""

from __future__ import annotations

from celery import shared_task
from django.contrib.auth import get_user_model

# The project's Celery app, loaded before the tasks are declared so @shared_task binds to it
# (Django's start-up no longer loads it: openchargeback/__init__.py).
import openchargeback.celery  # noqa: F401
from openchargeback.logs import log_context

from .config import load_config
from .services import import_files

PROGRESS_EVERY = 50_000  # rows between progress reports


@shared_task(bind=True, acks_late=True)
def import_files_task(
    self,
    *,
    paths: list[str],
    source: str,
    period: str | None = None,
    append: bool = False,
    user_id: int | None = None,
    config_path: str | None = None,
    display_names: list[str] | None = None,
) -> dict:
    """Run an import in a worker; progress (rows so far) is visible as the task's meta."""
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    done = {"rows": 0, "reported": 0}

    def progress(rows: int) -> None:
        done["rows"] += rows
        if done["rows"] - done["reported"] >= PROGRESS_EVERY and self.request.id:
            done["reported"] = done["rows"]
            self.update_state(state="PROGRESS", meta={"rows": done["rows"]})

    with log_context(user=user and user.get_username(), period=period):
        result = import_files(
            paths=paths,
            source=source,
            period=period,
            append=append,
            acting_user=user,
            config=load_config(config_path),
            progress=progress,
            display_names=display_names,
        )
    return result.as_dict()


def _user(user_id: int | None):
    return get_user_model().objects.filter(pk=user_id).first() if user_id else None


@shared_task(acks_late=True)
def import_job_check(job_id: int, user_id: int | None = None) -> str:
    """Dry-run a big admin upload (billing.services.uploads); a job already checked is left."""
    from .services import uploads

    user = _user(user_id)
    with log_context(user=user and user.get_username(), upload_id=job_id):
        return uploads.import_job_check(job_id=job_id, acting_user=user).status


@shared_task(acks_late=True)
def import_job_run(job_id: int, user_id: int | None = None) -> str:
    """Import a confirmed admin upload. Idempotent: a job already imported does nothing."""
    from .services import uploads

    user = _user(user_id)
    with log_context(user=user and user.get_username(), upload_id=job_id):
        return uploads.import_job_run(job_id=job_id, acting_user=user).status


@shared_task(acks_late=True, ignore_result=True)
def warm_period_figures(period_ids: list[int]) -> list[str]:
    """Compute and cache the dashboard's figures for these periods (after an import or a
    decision changed them), then what the other apps registered (`register_figures_warmer`);
    returns the periods warmed. Safe to run twice: it only reads."""
    from .dashboard import dashboard_context
    from .models import BillingPeriod
    from .services.figures import run_figures_warmers

    warmed = []
    for period in BillingPeriod.objects.filter(pk__in=period_ids).order_by("key"):
        try:
            dashboard_context(period.key)
        finally:  # each warms on its own (a failure here is logged by the caller)
            run_figures_warmers(period)
        warmed.append(period.key)
    return warmed
