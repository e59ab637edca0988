from django.apps import AppConfig


class BillingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "billing"

    def ready(self):
        # Registers the exact-sum aggregate on SQLite connections.
        from . import (  # noqa: F401  (database guards; audit of PIs...)
            dbguards,
            money,  # noqa: F401
            reference_audit,
        )
