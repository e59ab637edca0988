from django.apps import AppConfig


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
