"""Admin pieces for PIs' portal logins: the invite action (with a confirmation page), a filter
for "PIs with charges in a period" (so "invite all PIs of a period" is: filter, select all,
invite), and a read-only list of a PI's delegates.

and the PI admin that uses them.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse

from ..models import PI, BillingPeriod, Charge, PIDelegate
from ..services.pis import pi_invite


class PIPeriodFilter(admin.SimpleListFilter):
    title = "charges in period"
    parameter_name = "charges_in"

    def lookups(self, request, model_admin):
        return [(p.key, p.key) for p in BillingPeriod.objects.order_by("-key")[:36]]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        pis = Charge.objects.filter(period__key=self.value(), pi__isnull=False).values("pi_id")
        return queryset.filter(pk__in=pis)


class PIDelegateInline(admin.TabularInline):
    """Who reads this PI's portal. Granted and revoked by the PI in the portal (audited)."""

    model = PIDelegate
    fk_name = "pi"
    extra = 0
    can_delete = False
    fields = ("user", "granted_by", "granted_at", "revoked_at", "revoked_by")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.action(
    description="Invite to the portal (email a set-password link)", permissions=["change"]
)
def invite_pis_action(modeladmin, request, queryset):
    """Confirm, then give each selected PI a login and email them a set-password link."""
    pis = list(queryset.select_related("user").order_by("email"))
    if request.POST.get("post") == "yes":
        result = pi_invite(pis=pis, acting_user=request.user, request_or_base_url=request)
        if result.invited:
            modeladmin.message_user(
                request,
                f"Invited {len(result.invited)} PI(s) ({len(result.created)} new login(s)).",
                messages.SUCCESS,
            )
        for email, why in result.skipped:
            modeladmin.message_user(request, f"Not invited: {email}: {why}.", messages.WARNING)
        for email, error in result.failed:
            modeladmin.message_user(
                request, f"Invitation to {email} could not be sent: {error}", messages.ERROR
            )
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Invite PIs to the portal",
        "opts": modeladmin.model._meta,
        "pis": pis,
        "with_login": sum(1 for pi in pis if pi.user_id),
        "staff": [pi for pi in pis if pi.user_id and pi.user.is_staff],
        "action": "invite_pis_action",
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "select_across": request.POST.get("select_across") == "1",
    }
    return TemplateResponse(request, "admin/billing/pi/invite_confirmation.html", context)


@admin.register(PI)
class PIAdmin(admin.ModelAdmin):
    list_display = ("email", "name", "user")
    list_filter = (PIPeriodFilter,)
    search_fields = ("email", "name")
    raw_id_fields = ("user",)
    actions = [invite_pis_action]
    inlines = [PIDelegateInline]
