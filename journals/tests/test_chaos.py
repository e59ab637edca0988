"""The billing invariants under random operations (issue 11, item 8).

Sequential on every database (the default suite runs it on SQLite); concurrent, several threads
each with its own connection, on PostgreSQL. A failure prints the seed and the operation log;
rerun one seed with CHAOS_SEED=<seed>. bench/chaos_bench.py runs the same driver for longer.
"""

from __future__ import annotations

import os

import pytest
from django.db import connection

from .chaos import STATS, Chaos, Op

SEED = int(os.environ.get("CHAOS_SEED", "20261101"))
# Operation kinds to leave out while exploring past a known defect, e.g. CHAOS_SKIP=late,same.
SKIP = frozenset(filter(None, os.environ.get("CHAOS_SKIP", "").split(",")))
# Keep going after a violation, to count them all (bench/chaos_bench.py --keep-going).
KEEP_GOING = os.environ.get("CHAOS_KEEP_GOING") == "1"


@pytest.fixture
def chaos_env(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.OPENCHARGEBACK_EMAIL_RETRY_DELAY = 0
    return tmp_path


@pytest.mark.django_db(transaction=True)
def test_random_operations_keep_the_invariants(chaos_env):
    """One thread, random operations, the invariants checked after every one."""
    operations = int(os.environ.get("CHAOS_OPERATIONS", "120"))
    chaos = Chaos(seed=SEED, workdir=chaos_env / "files", skip=SKIP, keep_going=KEEP_GOING)
    violations = chaos.run_sequential(operations)
    print(chaos.report())
    assert not violations, chaos.failure()
    assert chaos.stats["operations"] == operations
    assert chaos.ledger.checks == operations + 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_operations_keep_the_invariants(chaos_env):
    """Threads drawing random operations at once; the invariants checked between rounds."""
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL (SQLite has one writer at a time)")
    chaos = Chaos(seed=SEED, workdir=chaos_env / "files", skip=SKIP, keep_going=KEEP_GOING)
    violations = chaos.run_concurrent(
        threads=int(os.environ.get("CHAOS_THREADS", "3")),
        ops_per_round=int(os.environ.get("CHAOS_OPS_PER_ROUND", "3")),
        seconds=float(os.environ.get("CHAOS_SECONDS", "60")),
    )
    print(chaos.report())
    assert not violations, chaos.failure()
    assert chaos.stats["rounds"] > 0


@pytest.mark.django_db(transaction=True)
def test_the_checker_sees_a_planted_defect(chaos_env):
    """The checker is not blind: a charge removed behind the services' back, a doubled row and
    an edited audit event are each reported."""
    import random

    from django.db import connection

    from accounts.dbguards import guards_suspended
    from accounts.models import AuditEvent
    from billing.models import Charge

    chaos = Chaos(seed=1, workdir=chaos_env / "files")
    rng = random.Random(1)
    for source in ("aws", "lab"):
        op = Op("import", {"source": source, "period": "2026-01", "kind": "base"})
        chaos.perform(op, rng)
        assert op.ok, op.outcome
    assert chaos.check([]) == []

    Charge.objects.filter(source__name="aws").order_by("pk").first().delete()
    doubled = Charge.objects.filter(source__name="lab").order_by("pk").first()
    doubled.pk = None
    doubled.fingerprint = "f" * 32
    doubled.save()
    event = AuditEvent.objects.order_by("pk").first()
    with connection.cursor() as cursor:  # as a database owner would, the guard set aside
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE accounts_auditevent DISABLE TRIGGER USER")
        with guards_suspended():
            AuditEvent.objects.filter(pk=event.pk).update(reason="rewritten")
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE accounts_auditevent ENABLE TRIGGER USER")
    found = "\n".join(chaos.check([]))
    assert "charges of aws 2026-01" in found and "1 missing" in found
    assert "charges of lab 2026-01" in found and "1 not from a live file" in found
    assert "billed total of 2026-01 USD" in found
    assert f"audit event #{event.pk} changed or removed" in found
    STATS.pop("seed 1", None)  # not a run worth reporting
