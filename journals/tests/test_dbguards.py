"""The database refuses every write to a finalized period, whoever makes it (issue 11, item 3).

A month goes through the product's own paths (import, review, close, generate, export, finalize);
then each of the issue's shell writes is tried straight on the models and must be refused by the
database, leaving the data as it was. Runs on SQLite and on PostgreSQL (DATABASE_URL).
"""

from __future__ import annotations

import sqlite3

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from accounts.dbguards import (
    guard_refusal,
    guards_suspended,
    install_guards,
    missing_guards,
    registered_guards,
)
from accounts.models import AuditEvent
from billing.models import BillingPeriod, Charge, ReviewDecision
from billing.services import (
    charge_reject,
    charge_return,
    period_close,
    period_finalize,
    period_open,
)
from journals.models import JournalExport
from journals.services import journal_export
from statements.models import Statement, StatementLine
from statements.services import statement_generate

from .conftest import GOOD_TAGS

pytestmark = pytest.mark.django_db

ROWS = [
    {"BilledCost": "10.00", "ResourceId": "vm-1", "Tags": GOOD_TAGS},
    {"BilledCost": "2.50", "ResourceId": "vm-2", "Tags": GOOD_TAGS},
    {"BilledCost": "7.25", "ResourceId": "untagged", "Tags": ""},
]


def month_to_finalized(load_rows, config, capture):
    """Import, review, close, generate, export, finalize: every step a legitimate path."""
    load_rows(ROWS)
    charge_reject(charges=Charge.objects.filter(resource_id="untagged"), note="not ours")
    period_close(key="2025-01")
    with capture(execute=True):  # statements render after commit
        statement_generate(period_key="2025-01", config=config)
    journal_export(period_key="2025-01", template="gl", config=config)
    period_finalize(key="2025-01")
    return BillingPeriod.objects.get(key="2025-01")


@pytest.fixture
def finalized(load_rows, small_config, django_capture_on_commit_callbacks):
    return month_to_finalized(load_rows, small_config, django_capture_on_commit_callbacks)


def builtin_templates():
    import importlib

    from django.apps import apps

    from journals.models import JournalTemplate

    if not JournalTemplate.objects.exists():
        importlib.import_module("journals.migrations.0002_builtin_templates").install(apps, None)


def snapshot():
    """Everything a finalized period holds, to check a refused write changed nothing."""
    return (
        list(Charge.objects.order_by("id").values()),
        list(BillingPeriod.objects.order_by("id").values()),
        list(Statement.objects.order_by("id").values()),
        list(StatementLine.objects.order_by("id").values()),
        list(JournalExport.objects.order_by("id").values()),
        list(AuditEvent.objects.order_by("id").values()),
        list(ReviewDecision.objects.order_by("id").values()),
    )


def refused(write, prefix):
    before = snapshot()
    with pytest.raises(IntegrityError) as caught:
        with transaction.atomic():
            write()
    message = guard_refusal(caught.value)
    assert message is not None and message.startswith(prefix), str(caught.value)
    assert snapshot() == before
    return message


def _charge(period):
    return Charge.objects.filter(period=period).first()


def _raw(sql):
    with connection.cursor() as cursor:
        cursor.execute(sql)


def _bulk_create(period):
    template = _charge(period)
    template.pk = None
    template.fingerprint = "f" * 32  # a new row, not a duplicate: the guard, not uniqueness
    Charge.objects.bulk_create([template])


def _resave(charge):
    charge.billed_cost = "999"
    charge.save()


def _reopen(period):
    period.status = BillingPeriod.Status.OPEN
    period.save()


def _edit_statement():
    statement = Statement.objects.first()
    statement.due_amount = "0"
    statement.save()


def _new_statement():
    statement = Statement.objects.first()
    statement.pk = None
    statement.number = statement.base_number = "ST-NEW"
    statement.save()


def _new_line():
    line = StatementLine.objects.first()
    line.pk = None
    line.save()


def _new_export():
    export = JournalExport.objects.first()
    export.pk = None
    export.save()


SHELL_WRITES = {
    "charge update": (lambda p: Charge.objects.filter(period=p).update(billed_cost="0"), "final"),
    "charge delete": (lambda p: _charge(p).delete(), "period not open"),
    # Django deletes the charges' review-decision links first: refused there already.
    "charge queryset delete": (lambda p: Charge.objects.filter(period=p).delete(), "finalized"),
    "charge bulk_create": (_bulk_create, "period not open"),
    "charge save": (lambda p: _resave(_charge(p)), "finalized"),
    "charge raw SQL update": (
        lambda p: _raw("UPDATE billing_charge SET billed_cost = '0' WHERE resource_id = 'vm-1'"),
        "finalized",
    ),
    "period save status=open": (_reopen, "finalized"),
    "period queryset update": (
        lambda p: BillingPeriod.objects.filter(pk=p.pk).update(status="open"),
        "finalized",
    ),
    # (The ORM's delete stops at the PROTECT foreign keys first; raw SQL reaches the database.)
    "period delete": (lambda p: _raw(f"DELETE FROM billing_billingperiod WHERE id = {p.pk}"), "f"),
    "statement update": (lambda p: _edit_statement(), "finalized"),
    "statement delete": (lambda p: Statement.objects.filter(period=p).delete(), "finalized"),
    "statement create": (lambda p: _new_statement(), "finalized"),
    "statement line update": (lambda p: StatementLine.objects.update(label="x"), "final"),
    "statement line delete": (lambda p: StatementLine.objects.first().delete(), "finalized"),
    "statement line create": (lambda p: _new_line(), "finalized"),
    "journal export update": (lambda p: JournalExport.objects.update(sha256="0"), "finalized"),
    "journal export delete": (lambda p: JournalExport.objects.first().delete(), "finalized"),
    "journal export create": (lambda p: _new_export(), "finalized"),
    "review decision delete": (lambda p: ReviewDecision.objects.all().delete(), "finalized"),
    "audit event update": (lambda p: AuditEvent.objects.update(reason="x"), "audit trail"),
    "audit event delete": (lambda p: AuditEvent.objects.first().delete(), "audit trail"),
    "audit event bulk delete": (lambda p: AuditEvent.objects.all().delete(), "audit trail"),
}


@pytest.mark.parametrize("name", SHELL_WRITES)
def test_shell_write_to_a_finalized_period_is_refused(finalized, name):
    write, prefix = SHELL_WRITES[name]
    refused(lambda: write(finalized), prefix)


def test_legitimate_paths_still_work(load_rows, small_config, django_capture_on_commit_callbacks):
    """Import into open, review, close, reopen, close, generate, export, finalize."""
    load_rows(ROWS)
    untagged = Charge.objects.filter(resource_id="untagged")
    charge_reject(charges=untagged, note="in open")  # (unattributed: approval is refused)
    charge_return(charges=untagged)
    period_close(key="2025-01")
    charge_reject(charges=untagged, note="in closed")
    period_open(key="2025-01", reason="late file")
    # A re-delivery of the month with one more row.
    load_rows([*ROWS, {"BilledCost": "1.00", "ResourceId": "late", "Tags": GOOD_TAGS}])
    period = month_to_finalized(lambda rows: None, small_config, django_capture_on_commit_callbacks)
    assert period.status == "finalized"
    assert Charge.objects.filter(period=period).count() == 4
    assert Statement.objects.filter(period=period).exists()
    assert JournalExport.objects.filter(period=period).exists()


def test_charges_go_only_into_an_open_period(load_rows, small_config):
    load_rows(ROWS)
    period_close(key="2025-01")
    period = BillingPeriod.objects.get(key="2025-01")
    message = refused(lambda: _bulk_create(period), "period not open")
    assert "open period" in message
    # Deleting is refused in a closed period too: only replace-mode imports delete, in open ones.
    refused(lambda: _charge(period).delete(), "period not open")
    # Updating (review, reassignment) stays allowed in a closed period.
    assert Charge.objects.filter(period=period).update(resource_name="checked") == 3


def test_a_closed_period_can_be_reopened_and_closed_directly(load_rows):
    """The guards leave open ⇄ closed and closed → finalized to the period services."""
    load_rows(ROWS)
    BillingPeriod.objects.filter(key="2025-01").update(status="closed")
    BillingPeriod.objects.filter(key="2025-01").update(status="open")
    assert BillingPeriod.objects.get(key="2025-01").status == "open"


def test_every_registered_guard_is_installed_after_migrate():
    assert len(registered_guards()) >= 20
    assert missing_guards(connection) == []


def test_a_missing_guard_is_found_and_reinstalled(django_db_blocker):
    table = "billing_charge"
    drop = (
        "DROP TRIGGER oc_guard_charge_insert"
        if connection.vendor == "sqlite"
        else f"DROP TRIGGER oc_guard_charge_insert ON {table}"
    )
    with connection.cursor() as cursor:
        cursor.execute(drop)
    assert missing_guards(connection) == ["oc_guard_charge_insert"]
    from accounts.dbguards import check_guards_installed

    warnings = check_guards_installed(databases=["default"])
    assert [w.id for w in warnings] == ["accounts.W001"]
    assert "oc_guard_charge_insert" in warnings[0].msg
    install_guards(connection)
    assert missing_guards(connection) == []
    assert check_guards_installed(databases=["default"]) == []


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's remade tables")
@pytest.mark.django_db(transaction=True)
def test_a_remade_sqlite_table_gets_its_guards_back():
    """SQLite's schema editor remakes a table for an ALTER, dropping its triggers; the
    post_migrate reinstall (every migrate) brings them back."""
    from django.apps import apps

    from accounts.dbguards import install_after_migrate

    with connection.schema_editor() as editor:
        editor._remake_table(Charge)  # what any ALTER of billing_charge does
    assert set(missing_guards(connection)) == {
        "oc_guard_charge_insert",
        "oc_guard_charge_update",
        "oc_guard_charge_delete",
    }
    install_after_migrate(sender=apps.get_app_config("accounts"), using="default")
    assert missing_guards(connection) == []


def test_a_sqlite_connection_without_the_guard_function_fails_closed():
    """A connection that didn't register oc_guard_on() (e.g. the sqlite3 shell) is refused."""
    from accounts.dbguards import _REGISTRY

    raw = sqlite3.connect(":memory:")
    raw.execute("CREATE TABLE billing_billingperiod (id integer primary key, key, status)")
    raw.execute("CREATE TABLE billing_charge (id integer primary key, period_id, billed_cost)")
    raw.execute("INSERT INTO billing_billingperiod VALUES (1, '2025-01', 'finalized')")
    raw.execute("INSERT INTO billing_charge VALUES (1, 1, '10')")
    for name in ("oc_guard_charge_insert", "oc_guard_charge_update", "oc_guard_charge_delete"):
        raw.execute(_REGISTRY[name].sqlite)
    for write in (
        "UPDATE billing_charge SET billed_cost = '0'",
        "DELETE FROM billing_charge",
        "INSERT INTO billing_charge VALUES (2, 1, '1')",
    ):
        with pytest.raises(sqlite3.OperationalError, match="no such function: oc_guard_on"):
            raw.execute(write)
    assert raw.execute("SELECT billed_cost FROM billing_charge").fetchall() == [("10",)]
    raw.close()


@pytest.mark.django_db(transaction=True)
def test_flush_empties_a_finalized_period(
    load_rows, small_config, django_capture_on_commit_callbacks
):
    """The maintenance path (flush, as every TransactionTestCase's teardown) is not refused."""
    builtin_templates()  # an earlier transactional test's flush removed the migration's rows
    month_to_finalized(load_rows, small_config, django_capture_on_commit_callbacks)
    call_command("flush", interactive=False, verbosity=0)
    assert not Charge.objects.exists() and not AuditEvent.objects.exists()
    assert not BillingPeriod.objects.exists()


def test_guards_suspended_is_sqlite_only_and_scoped(finalized):
    """Outside the context the guards are back at once (the flag is per thread and restored)."""
    if connection.vendor == "sqlite":
        with guards_suspended(), transaction.atomic():
            Charge.objects.filter(period=finalized).update(resource_name="maintenance")
            transaction.set_rollback(True)
    refused(lambda: Charge.objects.filter(period=finalized).update(resource_name="x"), "finalized")


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's importer-only path")
def test_the_sqlite_importer_sets_the_insert_guard_aside_only_inside_its_transaction(
    load_rows, monkeypatch
):
    """The importer drops the charge INSERT trigger inside its own transaction and puts it back
    before commit; a refused import's rollback puts it back too; other writers always meet it."""
    from billing.ingest import loader
    from billing.ingest.errors import ImportRefused

    seen = []
    insert = loader._sqlite_insert

    def insert_and_look(raw, rows):
        (present,) = raw.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'oc_guard_charge_insert'"
        ).fetchone()
        seen.append(present)
        insert(raw, rows)

    monkeypatch.setattr(loader, "_sqlite_insert", insert_and_look)
    load_rows(ROWS)
    assert Charge.objects.exists()
    assert seen and set(seen) == {0}  # set aside while the importer wrote
    assert not missing_guards()  # back after commit

    period_close(key="2025-01")
    with pytest.raises(ImportRefused):
        load_rows([*ROWS, {"BilledCost": "1.00", "ResourceId": "late", "Tags": GOOD_TAGS}])
    assert not missing_guards()  # back after the refusal's rollback
    # And it still refuses a write that is not the importer's.
    charge = Charge.objects.first()
    charge.pk, charge.fingerprint = None, "0" * 32
    refused(charge.save, "period not open")
