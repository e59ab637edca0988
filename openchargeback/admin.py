"""The admin site: Django's, with the finance dashboard on its landing page.

The dashboard's reads live in billing/dashboard.py; this module only chooses the period from the
query string and hands the figures to templates/admin/index.html, which keeps the app list.
"""

from __future__ import annotations

from django.contrib import admin


class OpenChargebackAdminSite(admin.AdminSite):
    site_header = "OpenChargeback"
    site_title = "OpenChargeback"
    index_title = "Dashboard"

    def index(self, request, extra_context=None):
        context = dict(extra_context or {})
        if request.user.has_perm("billing.view_charge"):
            from billing.dashboard import dashboard_context

            context.update(dashboard_context(request.GET.get("period")))
            context["can_upload"] = request.user.has_perm("billing.add_import")
        return super().index(request, extra_context=context)
