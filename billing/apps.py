from django.apps import AppConfig
from django.db.models.signals import post_migrate


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

        post_migrate.connect(seed_review_patterns, sender=self, dispatch_uid="billing.patterns")


def seed_review_patterns(sender, using="default", **kwargs):
    """After `migrate`, the configuration file's review patterns become rows (see
    billing/services/patterns.py for which wins afterwards)."""
    from .config import ConfigError, load_config
    from .services.patterns import review_patterns_seed

    try:
        config = load_config()
    except ConfigError:
        return  # every command that reads the configuration reports the error itself
    review_patterns_seed(config=config)
