"""SQLite: the index that gives a period's statement groups in order (journals/dbindexes.py)."""

from django.db import migrations


def create(apps, schema_editor):
    from journals.dbindexes import ensure_group_index

    ensure_group_index(schema_editor.connection)


def drop(apps, schema_editor):
    from journals.dbindexes import drop_group_index

    drop_group_index(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("journals", "0003_finalized_guards"), ("billing", "0014_charge_pi_period")]

    operations = [migrations.RunPython(create, drop)]
