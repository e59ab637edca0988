from django.apps import AppConfig
from django.db.models.signals import post_migrate, pre_migrate


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"
    verbose_name = "Accounts and audit"

    def ready(self):
        from . import dbguards, roles, signals  # noqa: F401  (signals: login, logout, failed login)

        post_migrate.connect(roles.sync_after_migrate, dispatch_uid="accounts.sync_roles")
        pre_migrate.connect(dbguards.drop_before_migrate, dispatch_uid="accounts.dbguards.pre")
        post_migrate.connect(dbguards.install_after_migrate, dispatch_uid="accounts.dbguards")
