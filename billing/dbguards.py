"""Billing's database guards: a finalized period is immutable whatever writes to it.

- billing_charge: INSERT only into an open period; UPDATE refused when the old or new row's
  period is finalized; DELETE only in an open period (replace-mode imports are the one path that
  deletes charges, and they run in open periods; review never deletes).
  On PostgreSQL these are statement-level AFTER triggers over transition tables, so a COPY of a
  million rows pays one check per statement; on SQLite (row-level only) INSERT costs one
  primary-key look-up of the period per row.
- billing_billingperiod: a finalized row refuses UPDATE and DELETE (the period services make the
  open ⇄ closed → finalized transitions).
- billing_reviewdecision and its charge links: no INSERT/UPDATE/DELETE in a finalized period.

`period_guards` builds the same row-level guard for the statements and journals tables.
"""

from __future__ import annotations

from accounts.dbguards import SQLITE_GUARD_FUNCTION as ON
from accounts.dbguards import Guard, register_guard

PERIODS = "billing_billingperiod"
RAISE_PG = "USING ERRCODE = 'integrity_constraint_violation'"


def _sqlite_trigger(name, when, op, table, condition, message):
    return (
        f"CREATE TRIGGER {name} {when} {op} ON {table} WHEN {condition} AND {ON}()"
        f" BEGIN SELECT RAISE(ABORT, '{message}'); END"
    )


def period_guards(app_label: str, table: str, *, what: str, period_of: str) -> list[Guard]:
    """Row-level guards: no INSERT, UPDATE or DELETE of `table` rows in a finalized period.

    `period_of` is an SQL expression giving the row's period id, with `{row}` standing for NEW
    or OLD, e.g. "{row}.period_id" or "(SELECT period_id FROM t WHERE id = {row}.parent_id)".
    """
    message = f"finalized period: {what} of a finalized period can''t change"
    new, old = period_of.format(row="NEW"), period_of.format(row="OLD")

    def finalized(expr):
        return f"EXISTS (SELECT 1 FROM {PERIODS} WHERE id = {expr} AND status = 'finalized')"

    stem = f"oc_guard_{table}"
    guards = [
        Guard(
            app_label,
            f"{stem}_insert",
            table,
            _sqlite_trigger(f"{stem}_insert", "BEFORE", "INSERT", table, finalized(new), message),
            (
                f"""CREATE OR REPLACE FUNCTION {stem}() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF TG_OP <> 'INSERT' AND {finalized(old)} THEN
                        RAISE EXCEPTION '{message}' {RAISE_PG};
                    END IF;
                    IF TG_OP <> 'DELETE' AND {finalized(new)} THEN
                        RAISE EXCEPTION '{message}' {RAISE_PG};
                    END IF;
                    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
                    RETURN NEW;
                END $$""",
                f"CREATE TRIGGER {stem}_insert BEFORE INSERT ON {table}"
                f" FOR EACH ROW EXECUTE FUNCTION {stem}()",
            ),
        ),
        Guard(
            app_label,
            f"{stem}_update",
            table,
            _sqlite_trigger(
                f"{stem}_update",
                "BEFORE",
                "UPDATE",
                table,
                f"({finalized(old)} OR {finalized(new)})",
                message,
            ),
            (
                f"CREATE TRIGGER {stem}_update BEFORE UPDATE ON {table}"
                f" FOR EACH ROW EXECUTE FUNCTION {stem}()",
            ),
        ),
        Guard(
            app_label,
            f"{stem}_delete",
            table,
            _sqlite_trigger(f"{stem}_delete", "BEFORE", "DELETE", table, finalized(old), message),
            (
                f"CREATE TRIGGER {stem}_delete BEFORE DELETE ON {table}"
                f" FOR EACH ROW EXECUTE FUNCTION {stem}()",
            ),
        ),
    ]
    for guard in guards:
        register_guard(guard)
    return guards


# --- billing_charge --------------------------------------------------------------------------

NOT_OPEN = "period not open: charges can be added or deleted only in an open period"
CHARGE_FINALIZED = "finalized period: charges of a finalized period can''t change"


def _charge_statement_fn(name, transition_sql, message):
    """A statement-level function that raises when `transition_sql` finds an offending period."""
    return f"""CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE bad text;
    BEGIN
        {transition_sql}
        IF FOUND THEN
            RAISE EXCEPTION '{message} (%)', bad {RAISE_PG};
        END IF;
        RETURN NULL;
    END $$"""


register_guard(
    Guard(
        "billing",
        "oc_guard_charge_insert",
        "billing_charge",
        # One primary-key look-up per row; the function is called only for a refused row.
        _sqlite_trigger(
            "oc_guard_charge_insert",
            "BEFORE",
            "INSERT",
            "billing_charge",
            f"(SELECT status FROM {PERIODS} WHERE id = NEW.period_id) IS NOT 'open'",
            NOT_OPEN,
        ),
        (
            _charge_statement_fn(
                "oc_guard_charge_insert",
                # A missing period (charges have no database foreign key) is refused too.
                f"""SELECT coalesce(p.key, n.period_id::text) INTO bad
                FROM (SELECT DISTINCT period_id FROM oc_new) n
                LEFT JOIN {PERIODS} p ON p.id = n.period_id
                WHERE p.status IS DISTINCT FROM 'open' LIMIT 1;""",
                NOT_OPEN,
            ),
            "CREATE TRIGGER oc_guard_charge_insert AFTER INSERT ON billing_charge"
            " REFERENCING NEW TABLE AS oc_new FOR EACH STATEMENT"
            " EXECUTE FUNCTION oc_guard_charge_insert()",
        ),
    )
)
register_guard(
    Guard(
        "billing",
        "oc_guard_charge_update",
        "billing_charge",
        _sqlite_trigger(
            "oc_guard_charge_update",
            "BEFORE",
            "UPDATE",
            "billing_charge",
            f"EXISTS (SELECT 1 FROM {PERIODS} WHERE id IN (OLD.period_id, NEW.period_id)"
            " AND status = 'finalized')",
            CHARGE_FINALIZED,
        ),
        (
            _charge_statement_fn(
                "oc_guard_charge_update",
                f"""SELECT p.key INTO bad FROM {PERIODS} p
                WHERE p.status = 'finalized' AND p.id IN (
                    SELECT period_id FROM oc_old UNION SELECT period_id FROM oc_new
                ) LIMIT 1;""",
                CHARGE_FINALIZED,
            ),
            "CREATE TRIGGER oc_guard_charge_update AFTER UPDATE ON billing_charge"
            " REFERENCING OLD TABLE AS oc_old NEW TABLE AS oc_new FOR EACH STATEMENT"
            " EXECUTE FUNCTION oc_guard_charge_update()",
        ),
    )
)
register_guard(
    Guard(
        "billing",
        "oc_guard_charge_delete",
        "billing_charge",
        _sqlite_trigger(
            "oc_guard_charge_delete",
            "BEFORE",
            "DELETE",
            "billing_charge",
            f"(SELECT status FROM {PERIODS} WHERE id = OLD.period_id) IS NOT 'open'",
            NOT_OPEN,
        ),
        (
            _charge_statement_fn(
                "oc_guard_charge_delete",
                f"""SELECT p.key INTO bad FROM {PERIODS} p
                WHERE p.status <> 'open' AND p.id IN (SELECT period_id FROM oc_old) LIMIT 1;""",
                NOT_OPEN,
            ),
            "CREATE TRIGGER oc_guard_charge_delete AFTER DELETE ON billing_charge"
            " REFERENCING OLD TABLE AS oc_old FOR EACH STATEMENT"
            " EXECUTE FUNCTION oc_guard_charge_delete()",
        ),
    )
)

# --- billing_billingperiod -------------------------------------------------------------------

PERIOD_FINALIZED = "finalized period: a finalized period can''t change or be deleted"
_PERIOD_FN = f"""CREATE OR REPLACE FUNCTION oc_guard_billingperiod() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'finalized' THEN
        RAISE EXCEPTION '{PERIOD_FINALIZED} (%)', OLD.key {RAISE_PG};
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END $$"""
for _op in ("UPDATE", "DELETE"):
    _name = f"oc_guard_billingperiod_{_op.lower()}"
    register_guard(
        Guard(
            "billing",
            _name,
            PERIODS,
            _sqlite_trigger(
                _name, "BEFORE", _op, PERIODS, "OLD.status = 'finalized'", PERIOD_FINALIZED
            ),
            (
                _PERIOD_FN,
                f"CREATE TRIGGER {_name} BEFORE {_op} ON {PERIODS}"
                " FOR EACH ROW EXECUTE FUNCTION oc_guard_billingperiod()",
            ),
        )
    )

# --- review decisions and their charge links -------------------------------------------------

period_guards(
    "billing", "billing_reviewdecision", what="review decisions", period_of="{row}.period_id"
)
period_guards(
    "billing",
    "billing_reviewdecision_charges",
    what="review decisions",
    period_of="(SELECT period_id FROM billing_reviewdecision WHERE id = {row}.reviewdecision_id)",
)

# --- A PI's portal login is never staff nor superuser ------------------------------------------
# First made by migration 0007; registered here so that every `migrate` reinstalls them (SQLite
# drops a table's triggers when it remakes the table for an ALTER of accounts_user or billing_pi).
# PostgreSQL: the PI side locks the user row (FOR UPDATE), so a promotion and a link racing in two
# transactions serialise on that row and the second sees the first. SQLite has one writer.

PI_LOGIN = "A PI''s portal login can''t be staff or superuser"
_PI_LOGIN_FN = f"""CREATE OR REPLACE FUNCTION billing_pi_login_not_staff() RETURNS trigger AS $$
BEGIN
  IF TG_TABLE_NAME = 'accounts_user' THEN
    IF (NEW.is_staff OR NEW.is_superuser)
       AND EXISTS (SELECT 1 FROM billing_pi WHERE user_id = NEW.id) THEN
      RAISE EXCEPTION '{PI_LOGIN} (user %)', NEW.id USING ERRCODE = 'check_violation';
    END IF;
  ELSIF NEW.user_id IS NOT NULL THEN
    PERFORM 1 FROM accounts_user WHERE id = NEW.user_id FOR UPDATE;
    IF EXISTS (SELECT 1 FROM accounts_user
               WHERE id = NEW.user_id AND (is_staff OR is_superuser)) THEN
      RAISE EXCEPTION '{PI_LOGIN} (user %)', NEW.user_id USING ERRCODE = 'check_violation';
    END IF;
  END IF;
  RETURN NEW;
END
$$ LANGUAGE plpgsql"""
_PI_SIDE = (
    "NEW.user_id IS NOT NULL AND EXISTS (SELECT 1 FROM accounts_user "
    "WHERE id = NEW.user_id AND (is_staff OR is_superuser))"
)
register_guard(
    Guard(
        "billing",
        "accounts_user_pi_login_not_staff",
        "accounts_user",
        "CREATE TRIGGER accounts_user_pi_login_not_staff"
        " BEFORE UPDATE OF is_staff, is_superuser ON accounts_user"
        " FOR EACH ROW WHEN (NEW.is_staff OR NEW.is_superuser)"
        " AND EXISTS (SELECT 1 FROM billing_pi WHERE user_id = NEW.id)"
        f" BEGIN SELECT RAISE(ABORT, '{PI_LOGIN}'); END",
        (
            _PI_LOGIN_FN,
            "CREATE TRIGGER accounts_user_pi_login_not_staff"
            " BEFORE UPDATE OF is_staff, is_superuser ON accounts_user"
            " FOR EACH ROW EXECUTE FUNCTION billing_pi_login_not_staff()",
        ),
    )
)
# PostgreSQL has one trigger for INSERT OR UPDATE; SQLite needs one per operation.
register_guard(
    Guard(
        "billing",
        "billing_pi_login_not_staff",
        "billing_pi",
        "",
        (
            _PI_LOGIN_FN,
            "CREATE TRIGGER billing_pi_login_not_staff"
            " BEFORE INSERT OR UPDATE OF user_id ON billing_pi"
            " FOR EACH ROW EXECUTE FUNCTION billing_pi_login_not_staff()",
        ),
    )
)
for _op, _when in (("insert", "INSERT"), ("update", "UPDATE OF user_id")):
    register_guard(
        Guard(
            "billing",
            f"billing_pi_login_not_staff_{_op}",
            "billing_pi",
            f"CREATE TRIGGER billing_pi_login_not_staff_{_op} BEFORE {_when} ON billing_pi"
            f" FOR EACH ROW WHEN {_PI_SIDE} BEGIN SELECT RAISE(ABORT, '{PI_LOGIN}'); END",
            (),
        )
    )
