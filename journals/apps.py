from django.apps import AppConfig
from django.db.models.signals import post_migrate


class JournalsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "journals"

    def ready(self):
        from billing.services import register_finalize_check

        from .selectors import period_has_journal

        register_finalize_check(
            period_has_journal,
            "no general-ledger journal has been exported since the statements last changed",
            label="A general-ledger journal exported since the statements last changed",
        )

        from . import dbguards  # noqa: F401  (registers this app's database guards)
        from .dbindexes import ensure_after_migrate

        post_migrate.connect(ensure_after_migrate, dispatch_uid="journals.dbindexes")
