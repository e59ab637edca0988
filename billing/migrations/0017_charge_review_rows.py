"""PostgreSQL: a small partial index of the charges in review (every status but clean).

The review queue and the charge list's status and reason filters read only these rows, a few
percent of a month. Without the index, PostgreSQL reaches them through (review_status, period),
whose entries point at rows spread over the whole table, and reads most of it to add up the
queue's totals or to find the newest 10,001 (docs/benchmarks.md, session 6). The index holds
only charges that are not clean, keyed by id (the lists' order), with the columns those pages
filter on and add up, so their queries never touch the table. An import adds to it only its
flagged rows, at the right end.

SQLite (a small group's database) gets nothing: it has no INCLUDE, and its planner uses a
partial index only for a WHERE clause that repeats the index's own condition.
"""

from django.db import migrations

NAME = "charge_review_rows"
CREATE = f"""
CREATE INDEX IF NOT EXISTS {NAME} ON billing_charge (id)
INCLUDE (period_id, source_id, pi_id, project_id, review_status, flags, billing_currency,
         billed_cost, service_name, resource_id, fund_org, sub_account_id)
WHERE review_status <> 'clean'
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {NAME}")


class Migration(migrations.Migration):
    dependencies = [("billing", "0014_charge_pi_period")]

    operations = [migrations.RunPython(create, drop)]
