"""Billing periods in the admin: their figures, history and lifecycle actions (close, reopen,
finalize), and the registry through which statements and journals add theirs."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join

from accounts.models import AuditEvent

from ..models import BillingPeriod
from ..selectors import period_summary
from ..services import PeriodError, period_close, period_finalize, period_open


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        required=False,
        help_text="Why. Kept in the period's history.",
    )


PERIOD_ACTIONS = {
    # action: (service, title, verb, reason required, warning)
    "close": (period_close, "Close periods", "Close", False, "A closed period takes no imports."),
    "reopen": (
        period_open,
        "Reopen periods",
        "Reopen",
        True,
        "Imports are accepted again. The reopening and its reason stay in the history.",
    ),
    "finalize": (
        period_finalize,
        "Finalize periods",
        "Finalize",
        False,
        "Finalizing is permanent: nothing in the period can change afterwards, from anywhere. "
        "It needs nothing flagged, and the period's statements and journal made.",
    ),
}


# Actions other apps add to the period list (statements: generate and send; journals: export).
# Apps above billing register theirs from their own admin module, keeping the dependency one-way.
# Each callable may name the permission it needs in `required_permission`.
PERIOD_ACTIONS_FROM_APPS: list = []


def register_period_action(action, *, required_permission: str):
    action.required_permission = required_permission
    PERIOD_ACTIONS_FROM_APPS.append(action)
    return action


@admin.register(BillingPeriod)
class BillingPeriodAdmin(admin.ModelAdmin):
    """Periods and their lifecycle. Status changes only through the actions (period services)."""

    list_display = ("key", "status", "created_at", "closed_at", "finalized_at")
    list_filter = ("status",)
    search_fields = ("key",)
    readonly_fields = ("status", "created_at", "closed_at", "finalized_at", "summary", "history")
    actions = ["close", "reopen", "finalize"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return ("key", *self.readonly_fields)
        return ("status", "created_at", "closed_at", "finalized_at")

    def has_change_permission(self, request, obj=None):
        # A finalized period is read-only; the others have nothing editable but the actions.
        if obj is not None and obj.is_locked():
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def has_transition_permission(self, request):
        return request.user.has_perm("billing.transition_period")

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        for action in PERIOD_ACTIONS_FROM_APPS:
            if request.user.has_perm(action.required_permission):
                actions[action.__name__] = self.get_action(action)
        return actions

    @admin.display(description="figures")
    def summary(self, obj):
        data = period_summary(obj)
        totals = format_html_join(
            "",
            "<li>{}: billed {} (billable {}, flagged {}), list {}</li>",
            (
                (cur, t["billed"], t["billable"], t["flagged_billed"], t["list"])
                for cur, t in data["totals"].items()
            ),
        )
        return format_html(
            "{} charges, {} flagged, {} rejected<ul>{}</ul>",
            data["charges"],
            data["flagged"],
            data["rejected"],
            totals,
        )

    @admin.display(description="history")
    def history(self, obj):
        events = AuditEvent.objects.filter(
            object_type=obj._meta.label, object_id=str(obj.pk)
        ).order_by("created_at", "id")
        return (
            format_html_join(
                "",
                "<div>{} · {} · {} {}</div>",
                (
                    (e.created_at.strftime("%Y-%m-%d %H:%M"), e.action, e.actor, e.reason)
                    for e in events
                ),
            )
            or "-"
        )

    def _transition(self, request, queryset, action):
        service, title, verb, reason_required, warning = PERIOD_ACTIONS[action]
        form = ReasonForm(request.POST if "post" in request.POST else None)
        if reason_required:
            form.fields["reason"].required = True
        if "post" in request.POST and form.is_valid():
            for period in queryset.order_by("key"):
                try:
                    service(
                        key=period.key,
                        acting_user=request.user,
                        reason=form.cleaned_data["reason"],
                    )
                except PeriodError as exc:
                    self.message_user(request, str(exc), messages.ERROR)
                else:
                    self.message_user(request, f"{period.key}: {verb.lower()}d.", messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "verb": verb,
            "warning": warning,
            "form": form,
            "action": action,
            "periods": [(p, period_summary(p)) for p in queryset.order_by("key")],
            "opts": self.model._meta,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/billing/period/confirm.html", context)

    @admin.action(description="Close selected periods (stop imports)", permissions=["transition"])
    def close(self, request, queryset):
        return self._transition(request, queryset, "close")

    @admin.action(description="Reopen selected periods", permissions=["transition"])
    def reopen(self, request, queryset):
        return self._transition(request, queryset, "reopen")

    @admin.action(description="Finalize selected periods (permanent)", permissions=["transition"])
    def finalize(self, request, queryset):
        return self._transition(request, queryset, "finalize")
