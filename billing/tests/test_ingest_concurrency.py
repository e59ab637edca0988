"""Imports against each other and against period changes; what replace touches; per-month receipts.

The PostgreSQL tests run real concurrency: each import or transition runs on its own thread with
its own connection. A test makes one import wait just before it commits (the pipeline's test
hook) and checks, through pg_stat_activity, that the other side waits for it instead of racing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import IntegrityError, connection, connections, transaction

from billing.config import load_config
from billing.ingest import pipeline
from billing.ingest.errors import ImportRefused
from billing.models import PI, BillingPeriod, Charge, Flag, Project, Source
from billing.services.periods import period_close, period_open

from .conftest import EXAMPLE_CONFIG, REPO, billed_total

D = Decimal
ON_POSTGRES = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def postgres_only(test):
    """Real concurrency on PostgreSQL (SQLite's one writer lock serialises everything there)."""
    for mark in (
        pytest.mark.postgres,
        pytest.mark.skipif(not ON_POSTGRES, reason="needs DATABASE_URL pointing at PostgreSQL"),
        pytest.mark.django_db(transaction=True),
    ):
        test = mark(test)
    return test


def tags(**values) -> str:
    return json.dumps(values)


DEC = {"BillingPeriodStart": "2024-12-01T00:00:00Z", "BillingPeriodEnd": "2025-01-01T00:00:00Z"}


def dec_row(cost: str, resource: str) -> dict:
    return {**DEC, "BilledCost": cost, "ResourceId": resource}


# --- Replace means the claimed month only (SQLite and PostgreSQL) -------------------------------


@pytest.mark.django_db
def test_requested_month_replaces_that_month_only(ingest, write_focus):
    december = [dec_row(f"{i}.25", f"vm-{i}") for i in range(1, 26)]
    ingest(write_focus(december, name="dec.csv"), source="aws")
    dec_total = billed_total(period__key="2024-12")
    assert Charge.objects.filter(period__key="2024-12").count() == 25

    january = write_focus([{"BilledCost": "10.00"}, dec_row("3.00", "late-1")], name="jan.csv")
    receipt = ingest(january, source="aws", extra=("-p", "2025-01"))

    # December keeps its 25 charges, untouched; the late row is January's delivery, billed in
    # January and flagged for review. The receipt names only the month it claimed.
    assert Charge.objects.filter(period__key="2024-12").count() == 25
    assert billed_total(period__key="2024-12") == dec_total
    late = Charge.objects.get(resource_id="late-1")
    assert late.period.key == "2025-01"
    assert Flag(late.flags) & Flag.OTHER_PERIOD
    assert set(receipt["changes"]) == {"2025-01"}
    assert receipt["changes"]["2025-01"] == {
        "rows_added": 2,
        "rows_removed": 0,
        "rows_unchanged": 0,
        "billed_change": {"USD": "13.00"},
    }

    # The same delivery again changes nothing.
    again = ingest(january, source="aws", extra=("-p", "2025-01"))
    assert again["status"] == "unchanged"
    assert again["changes"]["2025-01"]["rows_unchanged"] == 2

    # December closed and finalized or not, a late row for it never reaches it.
    from billing.services.periods import period_close

    period_close(key="2024-12")
    restated = write_focus([{"BilledCost": "11.00"}, dec_row("3.00", "late-1")], name="j2.csv")
    replaced = ingest(restated, source="aws", extra=("-p", "2025-01"))
    assert replaced["status"] == "replaced"
    assert billed_total(period__key="2025-01") == D("14.00")
    assert Charge.objects.filter(period__key="2024-12").count() == 25
    assert billed_total(period__key="2024-12") == dec_total
    assert replaced["changes"]["2025-01"]["billed_change"] == {"USD": "1.00"}


@pytest.mark.django_db
def test_receipt_reports_each_month_apart_never_netted(ingest, write_focus, run):
    ingest(write_focus([{"BilledCost": "5.00"}], name="jan.csv"), source="aws")
    # Without -p the months the file contains are replaced: December gains 5.00, January loses
    # it. Netted, that is +0.00; per month it is +5.00 and -5.00.
    moved = write_focus([dec_row("5.00", "vm-1")], name="moved.csv")
    dec_only = write_focus([dec_row("5.00", "vm-1"), {"BilledCost": "0.00"}], name="both.csv")
    receipt = ingest(dec_only, source="aws")
    assert receipt["billed_change"] == {"USD": "0.00"}
    assert receipt["changes"]["2024-12"]["billed_change"] == {"USD": "5.00"}
    assert receipt["changes"]["2025-01"]["billed_change"] == {"USD": "-5.00"}
    assert receipt["changes"]["2025-01"]["rows_removed"] == 1

    text = run("ingest", moved, "-s", "aws", "-c", str(EXAMPLE_CONFIG))
    assert "2024-12  added 0, removed 0, unchanged 1" in text


@pytest.mark.django_db
def test_the_database_refuses_a_second_charge_for_one_delivered_row(ingest, write_focus):
    ingest(write_focus([{"BilledCost": "10.00"}]), source="aws")
    charge = Charge.objects.get()
    charge.pk = None
    with pytest.raises(IntegrityError), transaction.atomic():
        charge.save()
    assert Charge.objects.count() == 1


@pytest.mark.django_db
def test_append_mode_meets_the_unique_constraint(ingest, write_focus):
    ingest(write_focus([{"BilledCost": "1.00"}] * 3, name="a.csv"), source="aws")
    ingest(
        write_focus([{"BilledCost": "1.00"}] * 2, name="b.csv"), source="aws", extra=("--append",)
    )
    assert Charge.objects.count() == 5
    assert len(set(Charge.objects.values_list("fingerprint", flat=True))) == 5


# --- PostgreSQL: real concurrency ---------------------------------------------------------------


class Worker(threading.Thread):
    """Runs `work` on its own thread and connection; keeps its result or exception."""

    def __init__(self, name, work):
        super().__init__(name=name, daemon=True)
        self.work, self.result, self.error = work, None, None

    def run(self):
        try:
            self.result = self.work()
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            connections.close_all()


def import_on_thread(name, path, source, period=None):
    config = load_config(EXAMPLE_CONFIG)

    def work():
        return pipeline.import_files(
            paths=[path], source=source, period=period, config=config, actor="test"
        )

    return Worker(name, work)


@pytest.fixture
def hold_import(monkeypatch):
    """Make the import on the thread named "held" wait before its commit until released."""
    reached, release = threading.Event(), threading.Event()

    def hook():
        if threading.current_thread().name == "held":
            reached.set()
            assert release.wait(60), "the test never released the held import"

    monkeypatch.setattr(pipeline, "before_commit_hook", hook)
    yield reached, release
    release.set()


def waits_on_a_lock(worker: Worker, timeout: float = 30.0) -> bool:
    """True once another backend waits on a lock; False if `worker` finished first."""
    deadline = time.monotonic() + timeout
    with connections["default"].cursor() as cursor:
        while time.monotonic() < deadline:
            if not worker.is_alive():
                return False
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if cursor.fetchone()[0]:
                return True
            time.sleep(0.02)
    raise AssertionError("neither finished nor waiting on a lock")


def known_attribution() -> None:
    """The files' PI, project and month exist already: these tests are about the charges alone
    (creating any of them would make the second import wait on the first's new row)."""
    PI.objects.create(email="ada@example.edu")
    Project.objects.create(code="engines")
    period_open(key="2025-01")


def finish(*workers: Worker) -> None:
    for worker in workers:
        worker.join(60)
        assert not worker.is_alive()


@pytest.mark.parametrize("transition", ["close", "finalize"])
@postgres_only
def test_a_period_change_waits_for_a_running_import(transition, write_focus, hold_import):
    reached, release = hold_import
    period_open(key="2025-01")
    held = import_on_thread("held", write_focus([{"BilledCost": "7.00"}]), "aws")
    held.start()
    assert reached.wait(60)

    def change():
        period_close(key="2025-01")
        if transition == "finalize":
            from billing.services.periods import period_finalize

            try:
                period_finalize(key="2025-01")
            except Exception as exc:  # statements and journal are missing: refused, not raced
                return str(exc)
        return "done"

    changer = Worker("changer", change)
    changer.start()
    assert waits_on_a_lock(changer), "the close went ahead while the import was still running"
    release.set()
    finish(held, changer)
    assert held.error is None and changer.error is None
    # The import committed while the month was open; the close came after it, never before.
    assert billed_total(period__key="2025-01") == D("7.00")
    assert BillingPeriod.objects.get(key="2025-01").status == "closed"
    assert Charge.objects.get().period.key == "2025-01"


@postgres_only
def test_an_import_that_waited_for_a_close_is_refused_naming_the_month(write_focus):
    period_open(key="2025-01")
    closing, closed = threading.Event(), threading.Event()

    def close_and_hold():
        with transaction.atomic():
            period_close(key="2025-01")
            closing.set()
            assert closed.wait(60)

    closer = Worker("closer", close_and_hold)
    closer.start()
    assert closing.wait(60)
    importer = import_on_thread("importer", write_focus([{"BilledCost": "7.00"}]), "aws")
    importer.start()
    try:
        assert waits_on_a_lock(importer), "the import did not wait for the close"
    finally:
        closed.set()
    finish(closer, importer)
    assert isinstance(importer.error, ImportRefused)
    assert "2025-01" in str(importer.error) and "closed" in str(importer.error)
    assert Charge.objects.count() == 0


@postgres_only
def test_the_same_file_twice_at_once_on_an_admin_source_bills_once(write_focus, hold_import):
    reached, release = hold_import
    Source.objects.create(name="lab", display_name="Lab")  # made in the admin, not the YAML
    known_attribution()
    path = write_focus([{"BilledCost": "1.50", "ResourceId": f"r{i}"} for i in range(50)])
    first = import_on_thread("held", path, "lab")
    first.start()
    assert reached.wait(60)
    second = import_on_thread("second", path, "lab")
    second.start()
    waited = waits_on_a_lock(second)
    release.set()
    finish(first, second)
    assert first.error is None and second.error is None
    assert Charge.objects.count() == 50
    assert billed_total() == D("75.00")
    assert sorted([first.result.status, second.result.status]) == ["imported", "unchanged"]
    assert waited, "the second import did not wait for the first"


@postgres_only
def test_two_replace_files_at_once_last_one_wins(write_focus, hold_import):
    reached, release = hold_import
    Source.objects.create(name="lab", display_name="Lab")
    known_attribution()
    one = write_focus([{"BilledCost": "1.00", "ResourceId": f"a{i}"} for i in range(20)], "1.csv")
    two = write_focus([{"BilledCost": "2.00", "ResourceId": f"b{i}"} for i in range(30)], "2.csv")
    first = import_on_thread("held", one, "lab")
    first.start()
    assert reached.wait(60)
    second = import_on_thread("second", two, "lab")
    second.start()
    waited = waits_on_a_lock(second)
    release.set()
    finish(first, second)
    assert first.error is None and second.error is None
    assert Charge.objects.count() == 30
    assert billed_total() == D("60.00")
    assert second.result.status == "replaced"
    assert waited, "the second import did not wait for the first"


@postgres_only
def test_two_sources_into_a_new_month_create_a_new_pi_once(write_focus, hold_import):
    reached, release = hold_import
    new = tags(pi_email="New.PI@example.edu", project_id="brand-new", fund_org="MATH-1843")
    path = write_focus([{"BilledCost": "4.00", "Tags": new, "BillingPeriodStart": "2025-03-01"}])
    first = import_on_thread("held", path, "aws")
    first.start()
    assert reached.wait(60)
    second = import_on_thread("second", path, "azure")
    second.start()
    assert waits_on_a_lock(second), "the second import did not wait on the new PI's row"
    release.set()
    finish(first, second)
    assert first.error is None, first.error
    assert second.error is None, second.error
    assert PI.objects.filter(email="new.pi@example.edu").count() == 1
    assert Project.objects.filter(code="brand-new").count() == 1
    assert Charge.objects.filter(pi__email="new.pi@example.edu").count() == 2


@postgres_only
def test_many_imports_at_once_count_every_row_once(write_focus):
    sources = ["aws", "azure", "hpc", "it_storage", "storage"]
    shared = tags(pi_email="common@example.edu", project_id="common", fund_org="MATH-1843")
    files, expected = {}, {}
    for n, source in enumerate(sources):
        rows = [
            {"BilledCost": f"{n + 1}.{i:02d}", "ResourceId": f"{source}-{i}", "Tags": shared}
            for i in range(40)
        ] + [dec_row("0.01", f"{source}-late")]
        files[source] = write_focus(rows, name=f"{source}.csv")
        expected[source] = sum((D(r["BilledCost"]) for r in rows), D(0))
    # Every source's file twice, all ten imports at once.
    workers = [
        import_on_thread(f"{source}-{k}", files[source], source)
        for k in range(2)
        for source in sources
    ]
    for worker in workers:
        worker.start()
    finish(*workers)
    assert [w.error for w in workers] == [None] * len(workers)
    for source in sources:
        statuses = sorted(w.result.status for w in workers if w.name.startswith(f"{source}-"))
        assert statuses == ["imported", "unchanged"], source
        assert Charge.objects.filter(source__name=source).count() == 41
        assert billed_total(source__name=source) == expected[source]
    assert PI.objects.filter(email="common@example.edu").count() == 1
    assert connection.vendor == "postgresql"


# --- SQLite: one writer at a time, and a clear refusal when it waits too long -------------------


def manage(db_path, *args, timeout="30"):
    env = dict(
        os.environ,
        DATABASE_URL=f"sqlite:///{db_path}",
        DJANGO_DEBUG="1",
        SQLITE_BUSY_TIMEOUT=timeout,
    )
    env.pop("CELERY_BROKER_URL", None)
    return subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


def test_sqlite_import_and_close_wait_for_the_writer_then_refuse_clearly(tmp_path, write_focus):
    db = tmp_path / "oc.sqlite3"
    assert manage(db, "migrate", "-v", "0").returncode == 0
    path = write_focus([{"BilledCost": "7.00"}])
    assert manage(db, "periods", "open", "2025-01").returncode == 0

    # Another writer (an import, a close) holds SQLite's writer lock for longer than the timeout.
    holder = sqlite3.connect(db)
    holder.execute("BEGIN IMMEDIATE")
    try:
        imported = manage(db, "ingest", path, "-s", "aws", "-c", EXAMPLE_CONFIG, timeout="0.3")
        closed = manage(db, "periods", "close", "2025-01", timeout="0.3")
    finally:
        holder.rollback()
        holder.close()
    for done in (imported, closed):
        assert done.returncode == 1
        assert "busy" in done.stderr and "Traceback" not in done.stderr

    # Once the writer is gone, both go through, in order: the import lands in an open month.
    assert manage(db, "ingest", path, "-s", "aws", "-c", EXAMPLE_CONFIG).returncode == 0
    assert manage(db, "periods", "close", "2025-01").returncode == 0
    refused = manage(db, "ingest", path, "-s", "aws", "-c", EXAMPLE_CONFIG)
    assert refused.returncode == 1 and "closed" in refused.stderr
    assert "Traceback" not in refused.stderr


@postgres_only
def test_imports_creating_the_same_new_pis_in_opposite_orders_never_deadlock(
    write_focus, monkeypatch
):
    """A creates x then y, B creates y then x. Each import, after its first new PI, waits a
    moment for the other to have created one too (the worst interleaving): without turns that
    is a deadlock and PostgreSQL kills one import."""
    from billing.ingest import rows as rows_module

    insert = rows_module._get_or_insert
    done_first: set[str] = set()

    def insert_then_wait(model, key, value):
        pk = insert(model, key, value)
        name = threading.current_thread().name
        if model is PI and name not in done_first:
            done_first.add(name)
            # Both have made their first PI (no turns), or the other waits for ours (turns).
            deadline = time.monotonic() + 3
            while len(done_first) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
        return pk

    monkeypatch.setattr(rows_module, "_get_or_insert", insert_then_wait)
    x = tags(pi_email="x@example.edu", project_id="px", fund_org="MATH-1843")
    y = tags(pi_email="y@example.edu", project_id="py", fund_org="MATH-1843")
    one = write_focus([{"Tags": x, "ResourceId": "a"}, {"Tags": y, "ResourceId": "b"}], "1.csv")
    two = write_focus([{"Tags": y, "ResourceId": "c"}, {"Tags": x, "ResourceId": "d"}], "2.csv")
    period_open(key="2025-01")
    first = import_on_thread("one", one, "aws")
    second = import_on_thread("two", two, "azure")
    first.start()
    second.start()
    finish(first, second)
    assert first.error is None, first.error
    assert second.error is None, second.error
    assert PI.objects.filter(email__in=["x@example.edu", "y@example.edu"]).count() == 2
    assert Charge.objects.count() == 4
