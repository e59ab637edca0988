"""PostgreSQL: two small partial indexes, of the charges in review and of those not usage.

The review queue and the charge list's status and reason filters read only these rows, a few
percent of a month. Without the index, PostgreSQL reaches them through (review_status, period),
whose entries point at rows spread over the whole table, and reads most of it to add up the
queue's totals or to find the newest 10,001 (docs/benchmarks.md, session 6). The index holds
only charges that are not clean, keyed by id (the lists' order), with the columns those pages
filter on and add up, so their queries never touch the table. An import adds to it only its
flagged rows, at the right end.

The second holds the charges whose category isn't Usage (credits, purchases, taxes and
adjustments: about 1% of a cloud month), so the charge list's category filter finds the newest
10,001 credits without reading a million usage rows to get there.

SQLite (a small group's database) gets nothing: it has no INCLUDE, and its planner uses a
partial index only for a WHERE clause that repeats the index's own condition.
"""

from django.db import migrations

INDEXES = {
    "charge_review_rows": """
        CREATE INDEX IF NOT EXISTS charge_review_rows ON billing_charge (id)
        INCLUDE (period_id, source_id, pi_id, project_id, review_status, flags,
                 billing_currency, billed_cost, service_name, resource_id, fund_org,
                 sub_account_id)
        WHERE review_status <> 'clean'
    """,
    "charge_not_usage": """
        CREATE INDEX IF NOT EXISTS charge_not_usage ON billing_charge (id)
        INCLUDE (period_id, charge_category)
        WHERE charge_category <> 'Usage'
    """,
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in INDEXES.values():
            schema_editor.execute(sql)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name in INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("billing", "0016_figures_version")]

    operations = [migrations.RunPython(create, drop)]
