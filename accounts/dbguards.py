"""Database guards: triggers that make invariants hold whatever writes (services, admin, shell).

Each app declares its triggers in its own `dbguards.py` with `register_guard` (imported from its
AppConfig.ready), so a lower app never imports a higher one; this module, in the lowest app, only
keeps the registry and installs what is registered. See docs/integrity.md.

- Installed by each app's migration (`install_guards(connection, app_label=...)`) and again, for
  every app, after every `migrate` (post_migrate): SQLite's schema editor remakes a table for many
  ALTERs (new table, copy, drop, rename), which silently drops its triggers. Installing is
  idempotent (DROP IF EXISTS + CREATE, in one transaction).
- `missing_guards()` lists registered triggers absent from the live database; the system check
  `accounts.W001` and a test use it.
- A refused write raises IntegrityError whose message starts with one of `REFUSAL_PREFIXES`;
  `guard_refusal(exc)` turns it into a message for a person (None for any other error).
- Maintenance bypass (flush only): PostgreSQL's flush uses TRUNCATE, which fires no row or
  statement trigger of ours. SQLite's flush uses DELETE FROM, so SQLite triggers call the SQL
  function `oc_guard_on()`, registered on every connection, which returns 1 unless
  `guards_suspended()` is active in this thread. A connection without the function fails closed
  ("no such function"). Only the `flush` command (and so test teardown) uses `guards_suspended`.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from dataclasses import dataclass

from django.core import checks
from django.db import DatabaseError, connections, transaction
from django.db.backends.signals import connection_created

# Every refusal message starts with one of these; the services and the admin look for them.
REFUSAL_PREFIXES = ("finalized period:", "period not open:", "audit trail:")
_REFUSAL_RE = re.compile("(" + "|".join(re.escape(p) for p in REFUSAL_PREFIXES) + r")[^\n]*")

SQLITE_GUARD_FUNCTION = "oc_guard_on"
VENDORS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Guard:
    """One trigger. `name` is the trigger's name (and, on PostgreSQL, its function's stem)."""

    app_label: str
    name: str
    table: str
    sqlite: str  # one CREATE TRIGGER statement ("" where the rule needs none on SQLite)
    postgresql: tuple[str, ...]  # CREATE OR REPLACE FUNCTION ..., CREATE TRIGGER ... (or ())

    def applies_to(self, vendor: str) -> bool:
        return bool(self.sqlite if vendor == "sqlite" else self.postgresql)

    def install_sql(self, vendor: str) -> list[str]:
        if not self.applies_to(vendor):
            return []
        if vendor == "sqlite":
            return [f"DROP TRIGGER IF EXISTS {self.name}", self.sqlite]
        return [f"DROP TRIGGER IF EXISTS {self.name} ON {self.table}", *self.postgresql]


_REGISTRY: dict[str, Guard] = {}


def register_guard(guard: Guard) -> Guard:
    _REGISTRY[guard.name] = guard
    return guard


def registered_guards(app_label: str | None = None, vendor: str | None = None) -> list[Guard]:
    return [
        g
        for g in _REGISTRY.values()
        if (app_label is None or g.app_label == app_label)
        and (vendor is None or g.applies_to(vendor))
    ]


def install_guards(connection=None, *, app_label: str | None = None) -> int:
    """(Re)install the registered guards whose tables exist; returns how many were installed.

    Inside a `migrate` on SQLite, an app's migration asking for its guards gets none: they are
    all installed once, at post_migrate (see `drop_before_migrate`)."""
    connection = connection or connections["default"]
    if connection.vendor not in VENDORS:
        return 0
    if app_label is not None and deferred_on(connection):
        return 0
    tables = set(connection.introspection.table_names())
    count = 0
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        for guard in registered_guards(app_label, connection.vendor):
            if guard.table in tables:
                for sql in guard.install_sql(connection.vendor):
                    cursor.execute(sql)
                count += 1
    return count


def missing_guards(connection=None) -> list[str]:
    """Names of registered guards that are absent (or disabled) in the live database."""
    connection = connection or connections["default"]
    if connection.vendor not in VENDORS:
        return []
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'")
        else:
            cursor.execute(
                "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                " WHERE NOT t.tgisinternal AND t.tgenabled <> 'D'"
                " AND pg_table_is_visible(c.oid)"
            )
        present = {(name, table) for name, table in cursor.fetchall()}
    return [
        g.name
        for g in registered_guards(vendor=connection.vendor)
        if (g.name, g.table) not in present
    ]


def guard_refusal(exc: BaseException) -> str | None:
    """The guard's message if `exc` (or its cause) is a guard's refusal, else None."""
    while exc is not None:
        match = _REFUSAL_RE.search(str(exc))
        if match:
            return match.group(0).strip()
        exc = exc.__cause__
    return None


# --- Maintenance bypass (SQLite; see module docstring) ----------------------------------------

_suspended = contextvars.ContextVar("oc_guards_suspended", default=False)


@contextlib.contextmanager
def guards_suspended():
    """For `flush` only: SQLite guards let this thread's writes through. Never in product code."""
    token = _suspended.set(True)
    try:
        yield
    finally:
        _suspended.reset(token)


def _guard_on() -> int:
    return 0 if _suspended.get() else 1


def _register_sqlite_function(sender, connection, **kwargs):
    if connection.vendor == "sqlite":
        connection.connection.create_function(SQLITE_GUARD_FUNCTION, 0, _guard_on)


connection_created.connect(_register_sqlite_function, dispatch_uid="accounts.dbguards.function")


# SQLite remakes a table for most ALTERs (new table, copy, drop, rename), and refuses the rename
# while a trigger on another table names the old one (the charge guards name the periods table,
# the PI-login guard on accounts_user names billing_pi). So `migrate` on SQLite drops every guard
# before the first migration and installs them all after the last; PostgreSQL keeps them.
_migrating: set[str] = set()  # aliases of SQLite databases inside a migrate


def deferred_on(connection) -> bool:
    return connection.vendor == "sqlite" and connection.alias in _migrating


def drop_before_migrate(sender, using="default", **kwargs):
    """pre_migrate: on SQLite, drop every registered guard (post_migrate reinstalls them)."""
    connection = connections[using]
    if sender.label != "accounts" or connection.vendor != "sqlite":
        return
    _migrating.add(using)
    with transaction.atomic(using=using), connection.cursor() as cursor:
        for guard in registered_guards(vendor="sqlite"):
            cursor.execute(f"DROP TRIGGER IF EXISTS {guard.name}")


def install_after_migrate(sender, using="default", **kwargs):
    """post_migrate: reinstall every app's guards (a remade SQLite table lost its triggers)."""
    if sender.label == "accounts":  # once per migrate; every migration has run by now
        _migrating.discard(using)
        install_guards(connections[using])


@checks.register(checks.Tags.database)
def check_guards_installed(app_configs=None, databases=None, **kwargs):
    """`manage.py check --database default` (and migrate) warn when a guard is missing."""
    found = []
    for alias in databases or []:
        try:
            tables = set(connections[alias].introspection.table_names())
            missing = [
                name
                for name in missing_guards(connections[alias])
                if _REGISTRY[name].table in tables
            ]
        except DatabaseError:
            continue
        if missing:
            found.append(
                checks.Warning(
                    f"database guards missing on {alias!r}: {', '.join(missing)}",
                    hint="run `manage.py migrate` (it reinstalls them); see docs/integrity.md",
                    id="accounts.W001",
                )
            )
    return found


@checks.register()
def check_guards_installed_default(app_configs=None, **kwargs):
    """Plain `manage.py check` (and runserver) warn too, when the database is reachable."""
    if kwargs.get("databases"):
        return []  # the database-tagged check above reports it
    return check_guards_installed(databases=["default"])


# --- The audit trail's guard (accounts' own) ---------------------------------------------------

register_guard(
    Guard(
        app_label="accounts",
        name="oc_guard_auditevent",
        table="accounts_auditevent",
        sqlite=(
            "CREATE TRIGGER oc_guard_auditevent BEFORE DELETE ON accounts_auditevent"
            f" WHEN {SQLITE_GUARD_FUNCTION}()"
            " BEGIN SELECT RAISE(ABORT, 'audit trail: audit events are never deleted'); END"
        ),
        postgresql=(
            """CREATE OR REPLACE FUNCTION oc_guard_auditevent() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit trail: audit events are never %', lower(TG_OP) || 'd'
                    USING ERRCODE = 'integrity_constraint_violation';
            END $$""",
            "CREATE TRIGGER oc_guard_auditevent BEFORE DELETE ON accounts_auditevent"
            " FOR EACH ROW EXECUTE FUNCTION oc_guard_auditevent()",
        ),
    )
)
register_guard(
    Guard(
        app_label="accounts",
        name="oc_guard_auditevent_update",
        table="accounts_auditevent",
        sqlite=(
            "CREATE TRIGGER oc_guard_auditevent_update BEFORE UPDATE ON accounts_auditevent"
            f" WHEN {SQLITE_GUARD_FUNCTION}()"
            " BEGIN SELECT RAISE(ABORT, 'audit trail: audit events are never updated'); END"
        ),
        postgresql=(
            "CREATE TRIGGER oc_guard_auditevent_update BEFORE UPDATE ON accounts_auditevent"
            " FOR EACH ROW EXECUTE FUNCTION oc_guard_auditevent()",
        ),
    )
)
