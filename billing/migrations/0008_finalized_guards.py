"""Install billing's database guards (accounts/dbguards.py; reinstalled after every migrate)."""

from django.db import migrations


def install(apps, schema_editor):
    from accounts.dbguards import install_guards

    install_guards(schema_editor.connection, app_label="billing")


class Migration(migrations.Migration):
    dependencies = [("billing", "0007_pi_login_not_staff")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
