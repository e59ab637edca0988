"""The admin app, with OpenChargeback's own site (its landing page is the dashboard)."""

from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class AdminConfig(DjangoAdminConfig):
    default_site = "openchargeback.admin.OpenChargebackAdminSite"

    def ready(self):
        super().ready()  # autodiscover: every app's admin.py
        # The upload pages, which the dashboard links to (a no-op once billing/admin.py
        # imports the module itself).
        import billing.admin_upload  # noqa: F401
