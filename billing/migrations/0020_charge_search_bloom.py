"""PostgreSQL: a BRIN bloom index over the four columns the charge list's search box matches.

The search box compares a term with the resource id, fund/org, sub-account and invoice id of
every charge; without an index that is a read of the whole table (1.6-2.0 s at ten million
charges). B-tree indexes on the four columns cost a million-row import +8.3 s (+32 %,
docs/benchmarks.md, session 7). This index keeps, for each run of 16 table pages, a bloom filter
of each column's values: an import appends rows to pages no range summarises yet, so it pays
nothing; the ranges are summarised afterwards (autosummarize, by autovacuum; VACUUM does it too)
at about a second of server time per million rows. Until then a search also reads the newest
pages, as it read every page before. 66 MB at ten million charges.

The planner prices a BRIN scan by how well the column's order follows the table's, which for
identifiers is not at all, so it never chooses this index by itself: the search asks for it
(billing/admin/charges.py). SQLite (a small group's database) has no BRIN: its search reads the
table, as before. (The bloom operator classes are PostgreSQL 14's; Django 5.2 needs 14.)
"""

from django.db import migrations

BLOOM = "text_bloom_ops(n_distinct_per_range = 256, false_positive_rate = 0.01)"
CREATE = f"""
    CREATE INDEX IF NOT EXISTS charge_search_bloom ON billing_charge USING brin (
        resource_id {BLOOM}, fund_org {BLOOM}, sub_account_id {BLOOM}, invoice_id {BLOOM}
    ) WITH (pages_per_range = 16, autosummarize = on)
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS charge_search_bloom")


class Migration(migrations.Migration):
    dependencies = [("billing", "0019_charge_project_period")]

    operations = [migrations.RunPython(create, drop)]
