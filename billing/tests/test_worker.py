"""The real worker path: PostgreSQL, Redis and a Celery worker process.

Runs only when CELERY_BROKER_URL and a PostgreSQL DATABASE_URL are set (as .ci/run does);
with no broker, tasks run in-process and this path is covered by the eager tests.
"""

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from billing.models import Charge, Import
from billing.selectors import period_summary
from billing.tasks import import_files_task

from .reference_month import write_reference_month

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.worker,
    pytest.mark.skipif(
        settings.CELERY_TASK_ALWAYS_EAGER or connection.vendor != "postgresql",
        reason="needs CELERY_BROKER_URL and DATABASE_URL=postgres://…",
    ),
]


@pytest.fixture
def worker():
    """A real `celery worker` process on the test database, on an empty queue (a message left by
    an interrupted earlier run must not run against this test's database)."""
    from openchargeback.celery import app

    app.control.purge()
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = dict(os.environ, DATABASE_URL=url)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "openchargeback",
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "--loglevel=WARNING",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
    )
    time.sleep(1)
    yield proc
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.mark.django_db(transaction=True)
def test_import_runs_in_a_real_worker(worker, tmp_path):
    # The worker reads the files by path: the reference month, written where it can see them.
    paths = sorted(str(p) for p in write_reference_month(tmp_path).glob("aws_*.csv"))
    config = str(ROOT / "config.example.yaml")

    result = import_files_task.delay(
        paths=paths, source="aws", period="2025-01", config_path=config
    )
    receipt = result.get(timeout=120)

    assert receipt["status"] == "imported"
    assert receipt["rows_imported"] == 25
    assert Decimal(receipt["totals"]["USD"]["billed"]) == Decimal("19086.75")
    summary = period_summary(Charge.objects.first().period)
    assert Decimal(summary["totals"]["USD"]["list"]) == Decimal("22455.00")

    # Redelivered (as after a worker dies mid-task): idempotent, nothing doubles.
    again = import_files_task.delay(paths=paths, source="aws", period="2025-01", config_path=config)
    assert again.get(timeout=120)["status"] == "unchanged"
    assert Charge.objects.count() == 25
    assert Import.objects.count() == 2
