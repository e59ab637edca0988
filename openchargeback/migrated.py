"""A command run before `migrate` says so, instead of a "no such table" traceback."""

from __future__ import annotations

from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

NOT_MIGRATED = (
    "the database is not set up yet (or not up to date with this version): run "
    "`openchargeback migrate` first"
)


def pending_migrations(using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """The migrations not yet applied to the database, as "app.name"."""
    from django.db.migrations.executor import MigrationExecutor

    connection = connections[using]
    executor = MigrationExecutor(connection)
    targets = executor.loader.graph.leaf_nodes()
    return [f"{m.app_label}.{m.name}" for m, _ in executor.migration_plan(targets)]


# Databases this process found fully migrated: checked once (reading the migration graph takes a
# tenth of a second), since migrations are applied between runs, not during one.
_migrated: set[str] = set()


def require_migrated(using: str = DEFAULT_DB_ALIAS) -> None:
    """Raise a CommandError naming `migrate` when migrations are pending."""
    if using in _migrated:
        return
    try:
        pending = pending_migrations(using)
    except DatabaseError as exc:
        raise CommandError(f"cannot read the database: {exc}") from None
    if pending:
        raise CommandError(f"{NOT_MIGRATED} ({len(pending)} migration(s) to apply)")
    _migrated.add(using)


def is_missing_table(exc: BaseException) -> bool:
    """A database error that means the tables aren't there: SQLite's "no such table", or
    PostgreSQL's 'relation "…" does not exist'."""
    text = str(exc)
    return "no such table" in text or ("relation" in text and "does not exist" in text)
