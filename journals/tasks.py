"""Celery tasks of the journals app: the month-end cycle Celery beat runs (journals/cycle.py)."""

from __future__ import annotations

import logging
from datetime import date

from celery import shared_task

# The project's Celery app, loaded before the tasks are declared so @shared_task binds to it
# (Django's start-up no longer loads it: openchargeback/__init__.py).
import openchargeback.celery  # noqa: F401

logger = logging.getLogger("openchargeback.cycle")


def month_before(today: date) -> str:
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return f"{year:04d}-{month:02d}"


@shared_task(name="journals.cycle_last_month", ignore_result=True)
def cycle_last_month(period_key: str | None = None) -> dict:
    """One pass of the cycle over the month before today (or `period_key`); logs its report.

    Emails are mailed by the other workers; this pass doesn't wait for them (the next pass, or
    a person running `openchargeback cycle`, sees how they ended)."""
    from django.utils import timezone

    from billing.config import load_config
    from openchargeback.logs import log_context

    from .cycle import run_cycle

    key = period_key or month_before(timezone.now().date())
    with log_context(period=key):
        report = run_cycle(period_key=key, config=load_config(), wait_seconds=0)
        log = logger.info if report.outcome == "done" else logger.warning
        log("cycle %s: %s %s", key, report.outcome, report.action)
    return report.as_dict()
