"""Billing periods in the admin: the period page as the month's workplace, the lifecycle
actions (close, reopen, finalize), and the registry through which statements and journals add
theirs (generate, send, export).

The period page is read-only: no Save buttons. It shows the month's figures as the dashboard
does (billing/selectors/dashboard.py: every amount by the statements' rounding), what finalize
still needs (`finalize_checklist`), the history, and one button per lifecycle action the user's
role allows and the period's status admits. Each button goes through the action itself, so
through the same confirmation page (billing/admin/confirm.py) as the list's actions.
"""

from __future__ import annotations

from collections.abc import Iterable

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from accounts.models import AuditEvent

from ..models import BillingPeriod
from ..selectors import period_summary
from ..selectors.dashboard import period_figures
from ..services import (
    PeriodError,
    finalize_checklist,
    period_close,
    period_finalize,
    period_open,
)
from .confirm import confirm_action, is_confirmed

OPEN, CLOSED = BillingPeriod.Status.OPEN, BillingPeriod.Status.CLOSED


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        required=False,
        help_text="Why. Kept in the period's history.",
    )


PERIOD_ACTIONS = {
    # action: (service, title, verb, reason required, danger, warning)
    "close": (
        period_close,
        "Close periods",
        "Close",
        False,
        False,
        "A closed period takes no imports. Statements made from it are final.",
    ),
    "reopen": (
        period_open,
        "Reopen periods",
        "Reopen",
        True,
        False,
        "Imports are accepted again. The reopening and its reason stay in the history.",
    ),
    "finalize": (
        period_finalize,
        "Finalize periods",
        "Finalize",
        False,
        True,
        "Finalizing is permanent: nothing in the period can change afterwards, from anywhere. "
        "It needs nothing flagged, and the period's statements and journal made.",
    ),
}


# Actions other apps add to the period list and page (statements: generate and send; journals:
# export). Apps above billing register theirs from their own admin module, keeping the
# dependency one-way. Each action carries the permission it needs, the words of its button on
# the period page and the statuses in which the button shows.
PERIOD_ACTIONS_FROM_APPS: list = []


def register_period_action(
    action,
    *,
    required_permission: str,
    label: str = "",
    statuses: Iterable[str] = (OPEN, CLOSED),
    order: int = 50,
):
    """Offer `action` (an admin action function) on billing periods: in the list's actions to
    users with `required_permission`, and as a button labelled `label` on the page of a period
    whose status is in `statuses`. Registering the same action twice keeps one."""
    action.required_permission = required_permission
    action.button_label = label or str(getattr(action, "short_description", action.__name__))
    action.button_statuses = tuple(str(s) for s in statuses)
    action.button_order = order
    if action not in PERIOD_ACTIONS_FROM_APPS:
        PERIOD_ACTIONS_FROM_APPS.append(action)
    return action


# The lifecycle buttons of billing itself: (action name, label, statuses, order).
OWN_BUTTONS = (
    ("close", "Close", (OPEN,), 10),
    ("reopen", "Reopen…", (CLOSED,), 20),
    ("finalize", "Finalize", (CLOSED,), 90),
)


@admin.register(BillingPeriod)
class BillingPeriodAdmin(admin.ModelAdmin):
    """Periods and their lifecycle. Status changes only through the actions (period services)."""

    list_display = ("key", "status", "created_at", "closed_at", "finalized_at")
    list_filter = ("status",)
    search_fields = ("key",)
    # The add form asks for the key only; a period's own page is workplace.html (change_view).
    readonly_fields = ("status", "created_at", "closed_at", "finalized_at")
    actions = ["close", "reopen", "finalize"]

    def has_change_permission(self, request, obj=None):
        # Nothing on a period is edited in a form: its status changes through the actions.
        if obj is not None:
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

    # -- the period page ------------------------------------------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:pk>/do/<str:action>/",
                wrap(self.lifecycle_view),
                name="billing_billingperiod_lifecycle",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method != "GET":
            raise PermissionDenied  # nothing here is edited in a form; the actions change it
        period = self.get_object(request, object_id)
        if period is None:
            raise Http404("no such period")
        if not self.has_view_permission(request, period):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": f"Period {period.key}",
            "subtitle": None,
            "opts": self.model._meta,
            "original": period,
            "period": period,
            "figures": period_figures(period),
            "checklist": finalize_checklist(period),
            "buttons": self.lifecycle_buttons(request, period),
            "history": self.history_rows(period),
            "has_view_permission": True,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/billing/period/workplace.html", context)

    def lifecycle_buttons(self, request, period) -> list[dict]:
        """The buttons the user's role allows and the period's status admits, in order."""
        allowed = self.get_actions(request)
        buttons = []
        for name, label, statuses, order in OWN_BUTTONS:
            if name in allowed and period.status in statuses:
                danger = PERIOD_ACTIONS[name][4]
                buttons.append({"name": name, "label": label, "order": order, "danger": danger})
        for action in PERIOD_ACTIONS_FROM_APPS:
            if action.__name__ in allowed and period.status in action.button_statuses:
                buttons.append(
                    {
                        "name": action.__name__,
                        "label": action.button_label,
                        "order": action.button_order,
                        "danger": False,
                    }
                )
        for button in buttons:
            button["url"] = reverse(
                "admin:billing_billingperiod_lifecycle", args=[period.pk, button["name"]]
            )
        return sorted(buttons, key=lambda b: b["order"])

    def lifecycle_view(self, request, pk, action):
        """One action on one period, from its page: the action's confirmation page first, and
        back to the period page once it has run."""
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:billing_billingperiod_change", args=[pk]))
        allowed = self.get_actions(request)
        if action not in allowed:
            raise PermissionDenied
        queryset = BillingPeriod.objects.filter(pk=pk)
        if not queryset.exists():
            raise Http404("no such period")
        func = allowed[action][0]
        response = func(self, request, queryset)
        if response is not None and getattr(response, "status_code", 200) == 200:
            return response
        return HttpResponseRedirect(reverse("admin:billing_billingperiod_change", args=[pk]))

    def history_rows(self, period) -> list[tuple[str, str, str, str]]:
        events = AuditEvent.objects.filter(
            object_type=period._meta.label, object_id=str(period.pk)
        ).order_by("created_at", "id")
        return [
            (e.created_at.strftime("%Y-%m-%d %H:%M"), e.action, str(e.actor), e.reason)
            for e in events
        ]

    # -- the lifecycle actions ------------------------------------------------------------------

    def _transition(self, request, queryset, action):
        service, title, verb, reason_required, danger, warning = PERIOD_ACTIONS[action]
        form = ReasonForm(request.POST if is_confirmed(request) else None)
        if reason_required:
            form.fields["reason"].required = True
        if is_confirmed(request) and form.is_valid():
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
        rows = []
        for period in queryset.order_by("key"):
            s = period_summary(period)
            figures = period_figures(period)["currencies"]
            rows.append(
                (
                    period.key,
                    period.get_status_display(),
                    f"{s['charges']:,}",
                    f"{s['flagged']:,}",
                    ", ".join(f"{c['currency']} {c['billable']}" for c in figures) or "–",
                )
            )
        return confirm_action(
            self,
            request,
            queryset,
            title=title,
            message=warning,
            action_label=verb,
            danger=danger,
            table=(("Period", "Status", "Charges", "Flagged", "Billable"), rows),
            form=form,
        )

    @admin.action(description="Close selected periods (stop imports)", permissions=["transition"])
    def close(self, request, queryset):
        return self._transition(request, queryset, "close")

    @admin.action(description="Reopen selected periods", permissions=["transition"])
    def reopen(self, request, queryset):
        return self._transition(request, queryset, "reopen")

    @admin.action(description="Finalize selected periods (permanent)", permissions=["transition"])
    def finalize(self, request, queryset):
        return self._transition(request, queryset, "finalize")
