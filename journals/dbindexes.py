"""SQLite only: an index that hands a period's statement groups to SQLite already in order.

SQLite has no hash aggregate: a GROUP BY over a million charges sorts them all in a temporary
B-tree first (about 2 s of the GL journal's 2.7 s at a million charges). This index holds, per
period, the statement group's columns in GROUP BY order followed by what the group's sums read
(status, BilledCost, ListCost), so `statements.groups.statement_groups` reads the groups in one
pass over the index, no table access and no sort (docs/benchmarks.md, session 6).

PostgreSQL hashes the groups in a (parallel) scan of the table and would only pay for the index
at import, so it is SQLite's alone. Django's model state doesn't know it, and SQLite's schema
editor drops unknown indexes when it remakes the charge table for an ALTER, so like the database
guards it is made by a migration and made again after every `migrate` (idempotent).
"""

from __future__ import annotations

TABLE = "billing_charge"
NAME = "charge_period_groups"
COLUMNS = (
    "period_id",
    "pi_id",
    "project_id",
    "fund_org",
    "billing_currency",
    "source_id",
    "review_status",
    "billed_cost",
    "list_cost",
)


def ensure_group_index(connection) -> bool:
    """Create the index on a SQLite database that has the charge table; True when it is there."""
    if connection.vendor != "sqlite":
        return False
    with connection.cursor() as cursor:
        if TABLE not in connection.introspection.table_names(cursor):
            return False
        cursor.execute(f"CREATE INDEX IF NOT EXISTS {NAME} ON {TABLE} ({', '.join(COLUMNS)})")
    return True


def drop_group_index(connection) -> None:
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(f"DROP INDEX IF EXISTS {NAME}")


def has_group_index(connection) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = %s", [NAME])
        return cursor.fetchone() is not None


def ensure_after_migrate(sender, using="default", **kwargs) -> None:
    """post_migrate: a remade charge table lost the index; make it again."""
    from django.db import connections

    ensure_group_index(connections[using])
