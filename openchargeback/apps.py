"""The admin app, with OpenChargeback's own site (its landing page is the dashboard)."""

from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class AdminConfig(DjangoAdminConfig):
    default_site = "openchargeback.admin.OpenChargebackAdminSite"

    def ready(self):
        super().ready()
        from . import checks  # noqa: F401  (registers the product's system checks)
