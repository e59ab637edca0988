"""Install accounts's database guards (accounts/dbguards.py; reinstalled after every migrate)."""

from django.db import migrations


def install(apps, schema_editor):
    from accounts.dbguards import install_guards

    install_guards(schema_editor.connection, app_label="accounts")


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_roles")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
