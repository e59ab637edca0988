"""Real Celery workers over Redis, on PostgreSQL: the batch they make is the one made in-process,
and a worker killed mid-batch and started again leaves nobody mailed twice.

Runs only when CELERY_BROKER_URL and a PostgreSQL DATABASE_URL are set, e.g.
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/oc_statements \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/14 .venv/bin/pytest statements/tests/test_worker.py
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection

from billing.models import PI, BillingPeriod, Project
from statements.models import Statement, StatementEmail
from statements.pdf import render_pdf
from statements.selectors import run_progress, statement_pdf_data
from statements.services import statement_generate

from .conftest import mailed

ROOT = Path(__file__).resolve().parents[2]
N_PIS = 120  # two projects each: 240 statements, 120 emails

pytestmark = [
    pytest.mark.worker,
    pytest.mark.skipif(
        settings.CELERY_TASK_ALWAYS_EAGER or connection.vendor != "postgresql",
        reason="needs CELERY_BROKER_URL and DATABASE_URL=postgres://…",
    ),
]

# A worker whose unacknowledged tasks come back 5 s after it dies (Redis visibility timeout),
# drawing a statement in no less than 25 ms, so that the kill below lands mid-batch (and most
# likely mid-chunk) however fast the machine is (a one-page render takes a few milliseconds).
WORKER = (
    "import sys, time\n"
    "import django\n"
    "from openchargeback.celery import app\n"
    "django.setup()\n"
    "from statements.services import delivery\n"
    "draw = delivery.render_pdf\n"
    "delivery.render_pdf = lambda data: (time.sleep(0.025), draw(data))[1]\n"
    "app.conf.broker_transport_options = {'visibility_timeout': 5,"
    " 'unacked_restore_interval': 1, 'unacked_restore_throttle': 1}\n"
    "app.worker_main(sys.argv[1:])\n"
)


@pytest.fixture
def workers(private_media):
    """start(name) -> a real `celery worker` process on the test database and this test's
    media and mail folders. All are stopped at the end."""
    import redis

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    db = connection.settings_dict
    env = dict(
        os.environ,
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        OPENCHARGEBACK_HOME=str(private_media),
        DJANGO_EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        DJANGO_EMAIL_FILE_PATH=str(private_media / "mail"),
    )
    procs = []

    def start(name: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                "worker",
                "--pool=solo",
                "--loglevel=WARNING",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"{name}@%h",
            ],
            cwd=ROOT,
            env=env,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def closed_month(make_charges):
    for i in range(N_PIS):
        pi = PI.objects.create(email=f"pi{i:03d}@example.edu", name=f"PI {i}")
        for p in range(2):
            project = Project.objects.create(code=f"p{i:03d}-{p}")
            for r in range(8):
                make_charges(
                    [Decimal("3.3333333333"), Decimal(f"{r}.0000000001")],
                    pi=pi,
                    project=project,
                    fund_org=f"FUND-{i:03d}",
                    service_name=["Compute", "Storage"][r % 2],
                    resource_id=f"r-{r}",
                    list_cost=Decimal("9.99"),
                )
    BillingPeriod.objects.filter(key="2025-01").update(status="closed")


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.mark.django_db(transaction=True)
def test_two_workers_a_kill_and_a_restart_mail_everyone_at_most_once(
    closed_month, workers, config, private_media
):
    preview = statement_generate(period_key="2025-01", dry_run=True, config=config)
    first, second = workers("w1"), workers("w2")
    time.sleep(2)

    result = statement_generate(period_key="2025-01", send=True, config=config)
    run_id = result.run_id
    from statements.models import StatementRun

    run = StatementRun.objects.get(pk=run_id)
    # Kill one worker mid-batch (SIGKILL: no clean shutdown, its task stays unacknowledged).
    assert wait_for(lambda: run_progress(run)["rendered"] >= 60, 120)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    progress_at_kill = run_progress(run)
    assert not progress_at_kill["done"], "the batch finished before the kill: make it bigger"
    workers("w1-restarted")
    assert wait_for(lambda: run_progress(run)["done"], 240), run_progress(run)
    assert second.poll() is None

    # Same statements as made in-process: figures, numbers, and byte for byte the same PDFs.
    statements = Statement.objects.select_related("period", "pi", "project", "run").order_by(
        "number"
    )
    assert [
        (s.number, s.pi.email, s.project.code, str(s.list_amount), str(s.due_amount))
        for s in statements
    ] == [
        (
            p["number"].removesuffix(" (new)"),
            p["pi_email"],
            p["project"],
            p["list"],
            p["amount_due"],
        )
        for p in sorted(preview.statements, key=lambda p: p["number"])
    ]
    for s in statements:
        eager = render_pdf(statement_pdf_data(s))
        with default_storage.open(s.pdf_path, "rb") as fh:
            stored = fh.read()
        assert (
            hashlib.sha256(eager).hexdigest() == s.pdf_sha256 == hashlib.sha256(stored).hexdigest()
        )

    # Nobody mailed twice; everyone mailed, except at most an email interrupted at the kill.
    messages = mailed(private_media / "mail")
    per_pi = Counter(m["To"] for m in messages)
    assert max(per_pi.values()) == 1
    emails = StatementEmail.objects.filter(run=run)
    assert emails.count() == N_PIS
    statuses = Counter(emails.values_list("status", flat=True))
    interrupted = emails.filter(status="failed", error__contains="may have been delivered")
    assert statuses["sent"] + interrupted.count() == N_PIS
    assert interrupted.count() <= 1
    assert statuses["sent"] <= len(messages) <= N_PIS
    sent_to = set(emails.filter(status="sent").values_list("to_address", flat=True))
    assert sent_to <= set(per_pi)
    for m in messages:
        attachments = [p.get_filename() for p in m.walk() if p.get_filename()]
        assert len(attachments) == 2
    print(
        f"\nkilled at {progress_at_kill}; emails {dict(statuses)}; messages {len(messages)}",
        file=sys.stderr,
    )
