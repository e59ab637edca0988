"""Admin pieces for PIs' portal logins: the invite action (with a confirmation page), a filter
for "PIs with charges in a period" (so "invite all PIs of a period" is: filter, select all,
invite), and a read-only list of a PI's delegates.

and the PI admin that uses them.
"""

from __future__ import annotations

from django.contrib import admin, messages

from ..models import PI, BillingPeriod, Charge, PIDelegate
from ..services.pis import pi_invite
from .confirm import confirm_action, is_confirmed


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
    if is_confirmed(request):
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
    staff = [pi.email for pi in pis if pi.user_id and pi.user.is_staff]
    with_login = sum(1 for pi in pis if pi.user_id)
    message = (
        "Each PI below gets a login (if they have none) and an email with a link to set their "
        "password. The link works once and expires in a few days; sending again makes a new link."
    )
    if with_login:
        message += f" {with_login} of them already have a login: they get a new link."
    if staff:
        message += f" Not invited: {', '.join(staff)} (a staff account)."
    return confirm_action(
        modeladmin,
        request,
        queryset,
        title="Invite PIs to the portal",
        message=message,
        action_label=f"Invite {len(pis)} PI{'' if len(pis) == 1 else 's'}",
        table=(
            ("Email", "Name", "Login"),
            (
                (pi.email, pi.name or "—", pi.user.get_username() if pi.user_id else "new")
                for pi in pis
            ),
        ),
    )


@admin.register(PI)
class PIAdmin(admin.ModelAdmin):
    list_display = ("email", "name", "user")
    list_filter = (PIPeriodFilter,)
    search_fields = ("email", "name")
    raw_id_fields = ("user",)
    actions = [invite_pis_action]
    inlines = [PIDelegateInline]
