"""The Celery application.

With no CELERY_BROKER_URL, settings make every task run in-process (eagerly), so a single
machine needs no broker. With a broker, `celery -A openchargeback worker` runs them.
"""

import os

from celery import Celery

from .logs import connect_celery_signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openchargeback.settings")

app = Celery("openchargeback")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Every log record of a task names it (openchargeback/logs.py).
connect_celery_signals()
