"""Celery without a broker: tasks run in-process, and quietly.

Issue 12: every `generate` printed kombu's "No hostname was supplied. Reverting to default
'localhost'", because an eager task still takes a producer from Celery's pool, and the pool's
connection had no host. Checked in a fresh process, as a command runs (a test process may have
made its pool long before).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# What an eager task's apply_async does first (celery.app.task.Task.apply_async).
TAKE_A_PRODUCER = """
import django
django.setup()
from django.conf import settings
from openchargeback.celery import app
assert settings.CELERY_TASK_ALWAYS_EAGER and app.conf.task_always_eager
with app.producer_or_acquire() as producer:
    print(producer.connection.transport_cls, producer.connection.hostname)
"""


def test_no_broker_means_in_process_tasks_without_a_hostname_warning():
    env = dict(os.environ, DJANGO_DEBUG="1", DJANGO_SETTINGS_MODULE="openchargeback.settings")
    env.pop("CELERY_BROKER_URL", None)
    env.pop("CELERY_RESULT_BACKEND", None)
    done = subprocess.run(
        [sys.executable, "-c", TAKE_A_PRODUCER],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "hostname" not in done.stderr.lower(), done.stderr
    # In memory: nothing on the network is tried (the old default was amqp://localhost:5672).
    assert done.stdout.split() == ["memory", "localhost"]


def test_beat_runs_the_month_end_cycle_on_the_configured_day(settings):
    """Beat's schedule is built by the Celery app, not the settings (whose crontab imported
    Celery into every process): the same entry, on OPENCHARGEBACK_CYCLE_DAY at 06:00 UTC."""
    from openchargeback.celery import app, beat_schedule

    assert app.conf.beat_schedule == beat_schedule(settings.OPENCHARGEBACK_CYCLE_DAY)
    entry = beat_schedule("12")["month-end-cycle"]
    assert entry["task"] == "journals.cycle_last_month"
    schedule = entry["schedule"]
    assert (schedule.day_of_month, schedule.hour, schedule.minute) == ({12}, {6}, {0})
    assert beat_schedule("") == {}
