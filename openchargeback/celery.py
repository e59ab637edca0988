"""The Celery application.

With no CELERY_BROKER_URL, settings make every task run in-process (eagerly), so a single
machine needs no broker. With a broker, `celery -A openchargeback worker` runs them.

Loaded by the tasks modules (each imports this module before declaring its @shared_task), by
`celery -A openchargeback`, and by code that talks to the broker itself, not at Django's
start-up (openchargeback/__init__.py says why).
"""

import os

from celery import Celery
from celery.schedules import crontab
from django.conf import settings

from .logs import connect_celery_signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openchargeback.settings")


def beat_schedule(cycle_day: str) -> dict:
    """Celery beat's entries: the unattended month (journals/cycle.py) for the month before, on
    OPENCHARGEBACK_CYCLE_DAY at 06:00 UTC; none when it is empty."""
    if not cycle_day:
        return {}
    return {
        "month-end-cycle": {
            "task": "journals.cycle_last_month",
            "schedule": crontab(minute=0, hour=6, day_of_month=cycle_day),
        }
    }


app = Celery("openchargeback")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Not a CELERY_BEAT_SCHEDULE setting: its crontab would import Celery wherever settings are read.
app.conf.beat_schedule = beat_schedule(settings.OPENCHARGEBACK_CYCLE_DAY)

# Every log record of a task names it (openchargeback/logs.py).
connect_celery_signals()
