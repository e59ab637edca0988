"""The staff roles: finance admin, reviewer, viewer (see accounts/roles.py)."""

from django.db import migrations

ROLES = ("finance admin", "reviewer", "viewer")


def create_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    from accounts.roles import sync_role_permissions

    # On a fresh database the permissions don't exist yet; the post_migrate sync fills them in.
    sync_role_permissions(Group, Permission)


def delete_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, delete_roles)]
