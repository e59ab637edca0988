"""A PI's portal login is never staff nor superuser, enforced by the database.

User.save and PI.save check it with a friendly message; these triggers refuse every other path
(QuerySet.update, raw SQL, a concurrent link and promotion). It lives in billing because it reads
billing_pi, and billing depends on accounts, not the reverse.

PostgreSQL: the PI side locks the user row (FOR UPDATE), so a promotion and a link racing in two
transactions serialise on that row and the second one sees the first. SQLite has one writer.
The same triggers are registered guards (billing/dbguards.py), so every `migrate` reinstalls
them; on SQLite they are dropped before a migrate and installed after it (accounts/dbguards.py).
"""

from django.db import migrations

MESSAGE = "A PI''s portal login can''t be staff or superuser"

POSTGRESQL = [
    f"""
    CREATE OR REPLACE FUNCTION billing_pi_login_not_staff() RETURNS trigger AS $$
    BEGIN
      IF TG_TABLE_NAME = 'accounts_user' THEN
        IF (NEW.is_staff OR NEW.is_superuser)
           AND EXISTS (SELECT 1 FROM billing_pi WHERE user_id = NEW.id) THEN
          RAISE EXCEPTION '{MESSAGE} (user %)', NEW.id USING ERRCODE = 'check_violation';
        END IF;
      ELSIF NEW.user_id IS NOT NULL THEN
        PERFORM 1 FROM accounts_user WHERE id = NEW.user_id FOR UPDATE;
        IF EXISTS (SELECT 1 FROM accounts_user
                   WHERE id = NEW.user_id AND (is_staff OR is_superuser)) THEN
          RAISE EXCEPTION '{MESSAGE} (user %)', NEW.user_id USING ERRCODE = 'check_violation';
        END IF;
      END IF;
      RETURN NEW;
    END
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER accounts_user_pi_login_not_staff
    BEFORE UPDATE OF is_staff, is_superuser ON accounts_user
    FOR EACH ROW EXECUTE FUNCTION billing_pi_login_not_staff()
    """,
    """
    CREATE TRIGGER billing_pi_login_not_staff
    BEFORE INSERT OR UPDATE OF user_id ON billing_pi
    FOR EACH ROW EXECUTE FUNCTION billing_pi_login_not_staff()
    """,
]
POSTGRESQL_REVERSE = [
    "DROP TRIGGER IF EXISTS accounts_user_pi_login_not_staff ON accounts_user",
    "DROP TRIGGER IF EXISTS billing_pi_login_not_staff ON billing_pi",
    "DROP FUNCTION IF EXISTS billing_pi_login_not_staff()",
]

_PI_SIDE_WHEN = (
    "NEW.user_id IS NOT NULL AND EXISTS (SELECT 1 FROM accounts_user "
    "WHERE id = NEW.user_id AND (is_staff OR is_superuser))"
)
SQLITE = [
    f"""
    CREATE TRIGGER accounts_user_pi_login_not_staff
    BEFORE UPDATE OF is_staff, is_superuser ON accounts_user
    FOR EACH ROW WHEN (NEW.is_staff OR NEW.is_superuser)
      AND EXISTS (SELECT 1 FROM billing_pi WHERE user_id = NEW.id)
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
    """,
    f"""
    CREATE TRIGGER billing_pi_login_not_staff_insert
    BEFORE INSERT ON billing_pi FOR EACH ROW WHEN {_PI_SIDE_WHEN}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
    """,
    f"""
    CREATE TRIGGER billing_pi_login_not_staff_update
    BEFORE UPDATE OF user_id ON billing_pi FOR EACH ROW WHEN {_PI_SIDE_WHEN}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
    """,
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS accounts_user_pi_login_not_staff",
    "DROP TRIGGER IF EXISTS billing_pi_login_not_staff_insert",
    "DROP TRIGGER IF EXISTS billing_pi_login_not_staff_update",
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        from accounts.dbguards import deferred_on

        if deferred_on(schema_editor.connection):
            return  # SQLite inside migrate: billing/dbguards.py's copies come at post_migrate
        for sql in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql, params=None)  # plpgsql holds a literal %

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_roles"),
        ("billing", "0006_charge_unique_fingerprint"),
    ]

    operations = [
        migrations.RunPython(
            _run({"postgresql": POSTGRESQL, "sqlite": SQLITE}),
            _run({"postgresql": POSTGRESQL_REVERSE, "sqlite": SQLITE_REVERSE}),
        ),
    ]
