"""The project's own app (its commands: `openchargeback health`), and the admin app with
OpenChargeback's own site (its landing page is the dashboard)."""

from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class OpenChargebackConfig(AppConfig):
    name = "openchargeback"
    verbose_name = "OpenChargeback"


class AdminConfig(DjangoAdminConfig):
    default_site = "openchargeback.admin.OpenChargebackAdminSite"

    def ready(self):
        super().ready()
        from . import checks  # noqa: F401  (registers the product's system checks)
