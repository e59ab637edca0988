"""PostgreSQL: an index of the charges by (project, period), for the charge list's project filter.

Without it the filter reads the whole table (1.65 s at ten million charges; 0.05 s with). A
month has ~1,500 projects, so the entries deduplicate (68 MB at ten million) and an import adds
to ~1,500 places: no measurable cost on a million-row import (docs/benchmarks.md, session 7).

SQLite gets none: there the filter reads a million charges in 0.33 s, and the index cost a
million-row import 3.2 s (+13 %).
"""

from django.db import migrations


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE INDEX IF NOT EXISTS charge_project_period ON billing_charge "
            "(project_id, period_id)"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS charge_project_period")


class Migration(migrations.Migration):
    dependencies = [("billing", "0018_rate_exact_quantities")]

    operations = [migrations.RunPython(create, drop)]
