"""The admin app, with OpenChargeback's own site (its landing page is the dashboard)."""

from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class AdminConfig(DjangoAdminConfig):
    default_site = "openchargeback.admin.OpenChargebackAdminSite"
