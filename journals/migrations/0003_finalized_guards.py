"""Install journals's database guards (accounts/dbguards.py; reinstalled after every migrate)."""

from django.db import migrations


def install(apps, schema_editor):
    from accounts.dbguards import install_guards

    install_guards(schema_editor.connection, app_label="journals")


class Migration(migrations.Migration):
    dependencies = [("journals", "0002_builtin_templates"), ("billing", "0008_finalized_guards")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
