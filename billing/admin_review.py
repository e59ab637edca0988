"""The review queue in the admin: flagged charges, their totals, and the reviewer's decisions.

Every action works on the selected rows or, with "select all", on everything matching the
current filters, shows a confirmation page with the count and amount first, and calls a review
service (billing/services/review.py), which records the decision and the audit event.
"""

from __future__ import annotations

import functools

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.paginator import Paginator
from django.db.models import Count, F, Q, QuerySet
from django.template.response import TemplateResponse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from .config import ConfigError, load_config
from .models import PI, Charge, Flag, Project, ReviewItem
from .money import ZERO, AsNumber, ExactSum
from .services import (
    PeriodError,
    ReviewError,
    charge_approve,
    charge_reassign,
    charge_reject,
    charge_return,
)

Status = Charge.ReviewStatus


# ---- filters ------------------------------------------------------------------------------


class ReasonFilter(admin.SimpleListFilter):
    title = "reason"
    parameter_name = "reason"

    def lookups(self, request, model_admin):
        return [(flag.code, flag.label) for flag in Flag]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        try:
            flag = Flag.from_code(self.value())
        except ValueError:
            return queryset.none()
        return queryset.alias(flag_hit=F("flags").bitand(int(flag))).filter(flag_hit__gt=0)


class QueueStatusFilter(admin.SimpleListFilter):
    """The queue shows what awaits a decision unless asked for the decided ones."""

    title = "review status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [
            ("approved", "Approved"),
            ("rejected", "Rejected"),
            ("all", "All reviewed or waiting"),
        ]

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "Flagged (waiting)",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        value = self.value()
        if value == "all":
            return queryset
        if value in (Status.APPROVED, Status.REJECTED):
            return queryset.filter(review_status=value)
        return queryset.filter(review_status=Status.FLAGGED)


class InputFilter(admin.SimpleListFilter):
    """A text box instead of a list of every value (there may be thousands of PIs)."""

    template = "admin/billing/input_filter.html"
    lookup = ""

    def lookups(self, request, model_admin):
        return [("", "")]  # a filter with no lookups is hidden

    def queryset(self, request, queryset):
        value = (self.value() or "").strip()
        return queryset.filter(**{self.lookup: value}) if value else queryset

    def choices(self, changelist):
        # The template needs the other filters' parameters to keep them when this one submits.
        yield {
            "value": self.value() or "",
            "parameter_name": self.parameter_name,
            "others": [
                (key, value)
                for key, values in changelist.params.items()
                if key != self.parameter_name
                for value in (values if isinstance(values, list) else [values])
            ],
            "clear": changelist.get_query_string(remove=[self.parameter_name]),
        }


class KeyInputFilter(InputFilter):
    """Looks the typed value up in a small table first and filters charges by its keys.

    `pi_id IN (…)` lets the database walk charges newest first and stop at a page, where a join
    on the PI's email would make it read every charge of the period."""

    model = None
    field = ""
    lookup = ""

    def queryset(self, request, queryset):
        value = (self.value() or "").strip()
        if not value:
            return queryset
        keys = list(self.model.objects.filter(**{self.field: value}).values_list("pk", flat=True))
        return queryset.filter(**{f"{self.lookup}__in": keys})


class PIFilter(KeyInputFilter):
    title = "PI email"
    parameter_name = "pi_email"
    model = PI
    field = "email__iexact"
    lookup = "pi_id"


class ProjectFilter(KeyInputFilter):
    title = "project id"
    parameter_name = "project_id"
    model = Project
    field = "code"
    lookup = "project_id"


class ServiceFilter(InputFilter):
    title = "service"
    parameter_name = "service"
    lookup = "service_name"


# ---- searching and paging over a million rows ------------------------------------------------


class ExactSearchMixin:
    """The search box matches identifiers exactly as delivered, case included.

    Django's `=field` search compares case-insensitively (LIKE on SQLite, UPPER() on
    PostgreSQL), which costs a function call per row and column; resource ids, accounts, funds
    and invoice ids are identifiers, so a plain `=` is both right and several times cheaper on a
    scan of a million-row period."""

    exact_search_fields: tuple[str, ...] = ()

    def get_search_fields(self, request):
        return self.exact_search_fields  # shows the box; the lookups are below

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q()
        for name in self.exact_search_fields:
            match |= Q(**{name: term})
        return queryset.filter(match), False


class CappedCountPaginator(Paginator):
    """Counts at most CAP + 1 rows, so a page of a million-row table never counts them all.

    `capped` tells the templates to say "more than 10,000" instead of a number that would be
    wrong; the confirmation page of an action still counts its selection exactly.

    In the lists' own order (newest first), one query reads the ids of the first CAP + 1 rows:
    that is both the count and every page up to the cap, so a filter the database can't answer
    from an index (a PI, a searched resource id) costs one pass over the period instead of two,
    one to count and one to fill the page.
    """

    CAP = 10_000
    ID_ORDERINGS = {("-id",), ("-pk",), ("id",), ("pk",)}

    @cached_property
    def _head_ids(self) -> list[int] | None:
        query = self.object_list.query
        ordering = tuple(dict.fromkeys(query.order_by))  # the admin repeats its default order
        if ordering not in self.ID_ORDERINGS or query.distinct:
            return None
        return list(self.object_list.values_list("pk", flat=True)[: self.CAP + 1])

    @cached_property
    def count(self):
        if self._head_ids is not None:
            return len(self._head_ids)
        return self.object_list.order_by()[: self.CAP + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.CAP

    def page(self, number):
        ids = self._head_ids
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if ids is None or (self.capped and top > self.CAP):
            return super().page(number)
        return self._get_page(self.object_list.filter(pk__in=ids[bottom:top]), number, self)


class FixedChoicesFilter(admin.SimpleListFilter):
    """Choices from a fixed list instead of SELECT DISTINCT over a million rows."""

    field = ""
    values: tuple[str, ...] = ()

    def lookups(self, request, model_admin):
        return [(v, v) for v in self.values]

    def queryset(self, request, queryset):
        return queryset.filter(**{self.field: self.value()}) if self.value() else queryset


class ChargeCategoryFilter(FixedChoicesFilter):
    title = "charge category"
    parameter_name = "category"
    field = "charge_category"
    values = ("Usage", "Purchase", "Tax", "Credit", "Adjustment")


# ---- totals -------------------------------------------------------------------------------


def queue_totals(queryset: QuerySet) -> list[dict]:
    """Count and billed amount per reason (a charge counts under each of its reasons).

    One GROUP BY (currency, flags): a queue has a handful of reason combinations, so the
    per-reason figures are exact sums of those groups, folded here.
    """
    groups = (
        queryset.order_by()
        .values("billing_currency", "flags")
        .annotate(n=Count("id"), billed=ExactSum("billed_cost"))
    )
    per_currency: dict[str, dict] = {}
    for group in groups:
        totals = per_currency.setdefault(group["billing_currency"], {})
        billed = group["billed"] or ZERO
        for key in [flag for flag in Flag if group["flags"] & flag] + ["all"]:
            count, amount = totals.get(key, (0, ZERO))
            totals[key] = (count + group["n"], amount + billed)
    rows = []
    for currency, totals in sorted(per_currency.items()):
        for flag in Flag:
            if flag in totals:
                count, amount = totals[flag]
                rows.append(
                    {
                        "reason": flag.label,
                        "code": flag.code,
                        "currency": currency,
                        "count": count,
                        "billed": amount,
                    }
                )
        count, amount = totals["all"]
        rows.append(
            {
                "reason": "All shown",
                "code": "",
                "currency": currency,
                "count": count,
                "billed": amount,
                "total": True,
            }
        )
    return rows


def _summary(queryset: QuerySet) -> dict:
    rows = (
        queryset.order_by()
        .values("billing_currency")
        .annotate(n=Count("id"), billed=ExactSum("billed_cost"))
        .order_by("billing_currency")
    )
    rows = list(rows)
    return {
        "count": sum(r["n"] for r in rows),
        "amounts": [(r["billing_currency"], r["billed"] or ZERO) for r in rows],
    }


# ---- forms --------------------------------------------------------------------------------


class NoteForm(forms.Form):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), required=False)


class RejectForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why these charges will never be billed. Required; kept in the history.",
    )


class ReassignForm(forms.Form):
    pi_email = forms.EmailField(label="PI email", required=False)
    project_id = forms.CharField(label="Project id", required=False, max_length=200)
    fund_org = forms.CharField(label="Fund/org", required=False, max_length=100)
    save_mapping = forms.BooleanField(
        label="Also save as an account-map entry",
        required=False,
        help_text="So the next delivery for this account is attributed automatically. "
        "The selection must be one source and one account.",
    )
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2, "cols": 60}), required=False)

    def clean(self):
        data = super().clean()
        if not (data.get("pi_email") or data.get("project_id") or data.get("fund_org")):
            raise forms.ValidationError("Give at least one of PI email, project id and fund/org.")
        return data


# ---- the admin ----------------------------------------------------------------------------


@admin.register(ReviewItem)
class ReviewQueueAdmin(ExactSearchMixin, admin.ModelAdmin):
    """Flagged charges and the decisions on them. Rows are read-only; actions decide."""

    list_display = (
        "id",
        "period",
        "source",
        "service_name",
        "resource_id",
        "billed",
        "billing_currency",
        "pi",
        "project",
        "fund_org",
        "review_status",
        "reason_list",
    )
    list_display_links = ("id",)
    list_filter = (
        QueueStatusFilter,
        ReasonFilter,
        "period",
        "source",
        PIFilter,
        ProjectFilter,
        ServiceFilter,
    )
    list_select_related = ("period", "source", "pi", "project")
    exact_search_fields = ("resource_id", "fund_org", "sub_account_id")
    search_help_text = "A resource id, fund/org or sub-account id, exactly as delivered."
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 100
    ordering = ("-id",)
    actions = ["approve", "reject", "return_to_queue", "reassign"]
    change_list_template = "admin/billing/reviewitem/change_list.html"

    @admin.display(description="billed", ordering=AsNumber("billed_cost"))
    def billed(self, obj):
        return obj.billed_cost

    @admin.display(description="reasons")
    def reason_list(self, obj):
        return reason_labels(obj.flags)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_review_permission(self, request):
        return request.user.has_perm("billing.review_charge")

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            context["queue_totals"] = queue_totals(context["cl"].queryset)
        return response

    # -- actions --

    def _confirm(self, request, queryset, *, action, title, form, verb, warning=""):
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "action": action,
            "verb": verb,
            "warning": warning,
            "form": form,
            "summary": _summary(queryset),
            "queryset_ids": []
            if _select_across(request)
            else list(queryset.values_list("pk", flat=True)),
            "select_across": _select_across(request),
            "opts": self.model._meta,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/billing/review/confirm.html", context)

    def _report(self, request, result):
        amounts = ", ".join(f"{c} {a}" for c, a in result.billed.items()) or "0"
        self.message_user(
            request,
            f"{result.action.title()}: {result.count} charge(s), {amounts}.",
            messages.SUCCESS,
        )
        if result.skipped:
            self.message_user(
                request,
                f"{result.skipped} selected charge(s) left as they were: {result.skipped_why}.",
                messages.WARNING,
            )

    def _run(self, request, service, **kwargs):
        try:
            result = service(acting_user=request.user, **kwargs)
        except (ReviewError, PeriodError) as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return None
        self._report(request, result)
        return None

    def _decide(self, request, queryset, *, action, service, form_class, title, verb, warning=""):
        """Confirmation page with count and amount first; on confirm, the review service."""
        form = form_class(request.POST if "post" in request.POST else None)
        if "post" in request.POST and form.is_valid():
            return self._run(request, service, charges=queryset, note=form.cleaned_data["note"])
        return self._confirm(
            request, queryset, action=action, title=title, form=form, verb=verb, warning=warning
        )

    @admin.action(description="Approve selected charges (bill them)", permissions=["review"])
    def approve(self, request, queryset):
        if "post" in request.POST:
            try:
                config = load_config()
            except ConfigError as exc:
                self.message_user(request, f"configuration: {exc}", messages.ERROR)
                return None
            service = functools.partial(charge_approve, config=config)
        else:
            service = charge_approve
        return self._decide(
            request,
            queryset,
            action="approve",
            service=service,
            form_class=NoteForm,
            title="Approve charges",
            verb="Approve",
            warning="Approved charges are billed as they are: they go on statements and the "
            "journal. A selection holding a charge without a PI, project or fund/org, or with a "
            "fund/org that fails the configured patterns, is refused as a whole: reassign those "
            "first.",
        )

    @admin.action(description="Reject selected charges (never bill them)", permissions=["review"])
    def reject(self, request, queryset):
        return self._decide(
            request,
            queryset,
            action="reject",
            service=charge_reject,
            form_class=RejectForm,
            title="Reject charges",
            verb="Reject",
            warning="Rejected charges are kept but never billed. While the period is open, "
            "an admin can return them to the queue.",
        )

    @admin.action(description="Return rejected charges to the queue", permissions=["review"])
    def return_to_queue(self, request, queryset):
        return self._decide(
            request,
            queryset,
            action="return_to_queue",
            service=charge_return,
            form_class=NoteForm,
            title="Return charges to the queue",
            verb="Return to the queue",
        )

    @admin.action(description="Reassign PI, project or fund/org", permissions=["review"])
    def reassign(self, request, queryset):
        form = ReassignForm(request.POST if "post" in request.POST else None)
        if "post" in request.POST and form.is_valid():
            try:
                config = load_config()
            except ConfigError as exc:
                self.message_user(request, f"configuration: {exc}", messages.ERROR)
                return None
            data = form.cleaned_data
            return self._run(
                request,
                charge_reassign,
                charges=queryset,
                config=config,
                pi_email=data["pi_email"],
                project_id=data["project_id"],
                fund_org=data["fund_org"],
                save_mapping=data["save_mapping"],
                note=data["note"],
            )
        return self._confirm(
            request,
            queryset,
            action="reassign",
            title="Reassign charges",
            form=form,
            verb="Reassign",
            warning="Blank fields stay as they are. Flags are recomputed from the new "
            "attribution: resolved charges become clean (billable).",
        )


def _select_across(request) -> bool:
    return request.POST.get("select_across") == "1"


def reason_labels(flags: int) -> str:
    if not flags:
        return "-"
    return format_html_join(", ", "{}", ((Flag(f).label,) for f in Flag if flags & f))


def review_history(charge: Charge) -> str:
    """The charge's decisions, oldest first, as an HTML table for the detail page."""
    decisions = charge.decisions.order_by("created_at", "id")
    if not decisions:
        return "No decisions yet."
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                d.created_at.strftime("%Y-%m-%d %H:%M"),
                d.get_action_display(),
                d.actor,
                ", ".join(f"{k}: {v}" for k, v in d.attribution.items()) or "",
                d.note,
            )
            for d in decisions
        ),
    )
    return format_html(
        "<table><thead><tr><th>When</th><th>Decision</th><th>By</th><th>Attribution</th>"
        "<th>Note</th></tr></thead><tbody>{}</tbody></table>",
        rows,
    )
