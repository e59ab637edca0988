"""The review queue in the admin: flagged charges, their totals, and the reviewer's decisions.

Every action works on the selected rows or, with "select all", on everything matching the
current filters, shows a confirmation page with the count and amount first, and calls a review
service (billing/services/review.py), which records the decision and the audit event.
"""

from __future__ import annotations

import functools

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import EmptyResultSet
from django.db import connections, transaction
from django.db.models import Count, QuerySet

from openchargeback.listcells import ListTitleMixin

from ..config import ConfigError, load_config
from ..models import Charge, Flag, ReviewItem
from ..money import ZERO, AsNumber, ExactSum, cents_text, exact_sum
from ..selectors import cached_figures, cached_period_rollups, data_version
from ..services import (
    PeriodError,
    ReviewError,
    charge_approve,
    charge_reassign,
    charge_reject,
    charge_return,
)
from .confirm import confirm_action, is_confirmed
from .widgets import (
    CappedChangeList,
    CappedCountPaginator,
    ChargeCellsMixin,
    ExactSearchMixin,
    PIFilter,
    ProjectFilter,
    QueueStatusFilter,
    ReasonFilter,
    ServiceFilter,
    money_cell,
)

Status = Charge.ReviewStatus


# ---- totals -------------------------------------------------------------------------------


def queue_groups(queryset: QuerySet) -> list[dict]:
    """The queryset's charges grouped by (currency, flags): count and exact billed amount.

    One GROUP BY: a queue has a handful of reason combinations. PostgreSQL compiles a query
    over millions of rows with JIT first (0.7 s of the 2.7 s that adding up ten million charges
    took on the bench), for a plan of three groups: off for this one query."""
    rows = (
        queryset.order_by()
        .values("billing_currency", "flags")
        .annotate(n=Count("id"), billed=ExactSum("billed_cost"))
    )
    if connections[queryset.db].vendor != "postgresql":
        return list(rows)
    with transaction.atomic(using=queryset.db), connections[queryset.db].cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        return list(rows)


def fold_queue_totals(groups: list[dict]) -> list[dict]:
    """Count and billed amount per reason (a charge counts under each of its reasons), from
    `queue_groups` rows: the per-reason figures are exact sums of those groups."""
    per_currency: dict[str, dict] = {}
    for group in groups:
        totals = per_currency.setdefault(group["billing_currency"], {})
        billed = group["billed"] or ZERO
        for key in [flag for flag in Flag if group["flags"] & flag] + ["all"]:
            count, amount = totals.get(key, (0, ZERO))
            totals[key] = (count + group["n"], exact_sum((amount, billed)))
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


def queue_totals(queryset: QuerySet) -> list[dict]:
    """Count and billed amount per reason of the queryset's charges (see fold_queue_totals)."""
    return fold_queue_totals(queue_groups(queryset))


def cached_queue_groups(queryset: QuerySet) -> list[dict]:
    """`queue_groups` of the queryset, cached under its SQL and the data version: the queue's
    page asks the same GROUP BY on every view until an import or a decision changes charges
    (tens of thousands of flagged rows read from the table: 0.2–0.8 s at a million charges)."""
    try:
        sql, params = queryset.order_by().query.sql_with_params()
    except EmptyResultSet:  # a filter that can match nothing (a PI email no PI has)
        return []
    return cached_figures(
        f"queue-groups:{queryset.db}:{sql}:{params!r}",
        lambda: queue_groups(queryset),
        data_version(),
    )


def cached_queue_totals(queryset: QuerySet) -> list[dict]:
    return fold_queue_totals(cached_queue_groups(queryset))


def clean_groups_from_rollups(
    rollups: dict[int, list[dict]],
    *,
    source_id: int | None = None,
    pi_ids: set[int] | None = None,
    project_ids: set[int] | None = None,
) -> list[dict]:
    """`queue_groups` rows of the clean charges, added up from the periods' rollups (which
    group by source, PI, project, status and currency) instead of from the charges. A clean
    charge has no reasons (flags 0: the charge_flags_match_status constraint), so its group
    counts only in "All shown"."""
    counts: dict[str, int] = {}
    amounts: dict[str, list] = {}
    for rows in rollups.values():
        for row in rows:
            if row["review_status"] != Status.CLEAN:
                continue
            if source_id is not None and row["source_id"] != source_id:
                continue
            if pi_ids is not None and row["pi_id"] not in pi_ids:
                continue
            if project_ids is not None and row["project_id"] not in project_ids:
                continue
            currency = row["billing_currency"]
            counts[currency] = counts.get(currency, 0) + row["n"]
            amounts.setdefault(currency, []).append(row["billed"] or ZERO)
    return [
        {"billing_currency": c, "flags": 0, "n": counts[c], "billed": exact_sum(amounts[c])}
        for c in sorted(counts)
    ]


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
class ReviewQueueAdmin(ListTitleMixin, ChargeCellsMixin, ExactSearchMixin, admin.ModelAdmin):
    """Flagged charges and the decisions on them. Rows are read-only; actions decide."""

    list_title = "Review queue"
    count_nouns = ("charge", "charges")
    list_display = (
        "ref",
        "what",
        "billed",
        "who",
        "fund",
        "status_reasons",
    )
    list_display_links = ("ref",)
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
        return money_cell(obj.billed_cost, obj.billing_currency)

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

    def get_changelist(self, request, **kwargs):
        return CappedChangeList

    def search_through_index(self, request) -> bool:
        """ "All reviewed or waiting" searches every charge: through the search index (see
        ExactSearchMixin). The other views read their charges' own indexes (the partial index
        of the charges in review, or (status, period, id)), a few hundred thousand at most."""
        return request.GET.get(QueueStatusFilter.parameter_name) == "all"

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            rows = [
                {**row, "billed_cell": money_cell(row["billed"], row["currency"])}
                for row in self.shown_totals(context["cl"])
            ]
            context["queue_totals"] = rows
        return response

    # Filters the periods' rollups can answer for the clean charges of "all".
    ROLLUP_FILTERS = frozenset(
        {"status", "period__id__exact", "source__id__exact", "pi_email", "project_id"}
    )

    def shown_totals(self, changelist) -> list[dict]:
        """The totals above the list: of every charge the filters and search select.

        "All reviewed or waiting" lists the clean charges too, every charge in the database
        without a filter: adding them up was one pass over the whole table (2.5-3.5 s at ten
        million charges) after every import or decision. When the filters are ones a rollup can
        answer (period, source, PI, project, no search), the clean charges of the months whose
        rollup is cached are added up from it (every import warms its months' figures; with
        workers, every change does), and only those of the months whose rollup is not are read,
        one GROUP BY over them (cached like the other queue totals). The charges in review are
        added up from their own index as for the other views. Otherwise, one GROUP BY over what
        is shown."""
        queryset = changelist.queryset
        scope = self._rollup_scope(changelist)
        if scope is not None:
            period_id = scope.pop("period_id")
            cached = cached_period_rollups(None if period_id is None else [period_id])
            if cached is not None:
                rollups, missing = cached
                in_review = cached_queue_groups(queryset.exclude(review_status=Status.CLEAN))
                clean = clean_groups_from_rollups(rollups, **scope)
                if missing:
                    rest = queryset.filter(review_status=Status.CLEAN, period_id__in=missing)
                    clean = [*clean, *cached_queue_groups(rest)]
                return fold_queue_totals([*in_review, *clean])
        return cached_queue_totals(queryset)

    def _rollup_scope(self, changelist) -> dict | None:
        """The filters of an "all" view as rollup keys, or None when a rollup can't answer
        them (a search, another filter, or not "all": the other views have no clean charges)."""
        params = {
            key: values if isinstance(values, list) else [values]
            for key, values in changelist.get_filters_params().items()
        }
        if changelist.query or params.get("status") != ["all"]:
            return None
        if set(params) - self.ROLLUP_FILTERS or any(len(v) != 1 for v in params.values()):
            return None
        try:
            period_id, source_id = (
                int(params[k][0]) if k in params else None
                for k in ("period__id__exact", "source__id__exact")
            )
        except ValueError:
            return None
        keys = {
            type(spec): spec.keys()
            for spec in changelist.filter_specs
            if isinstance(spec, (PIFilter, ProjectFilter))
        }
        pi_ids, project_ids = keys.get(PIFilter), keys.get(ProjectFilter)
        return {
            "period_id": period_id,
            "source_id": source_id,
            "pi_ids": None if pi_ids is None else set(pi_ids),
            "project_ids": None if project_ids is None else set(project_ids),
        }

    # -- actions --

    def _confirm(self, request, queryset, *, title, form, verb, warning=""):
        summary = _summary(queryset)
        amounts = ", ".join(f"{c} {cents_text(a)}" for c, a in summary["amounts"]) or "0"
        count = summary["count"]
        noun = "charge" if count == 1 else "charges"
        return confirm_action(
            self,
            request,
            queryset,
            title=title,
            summary=f"{count:,} {noun} selected, billed {amounts}.",
            message=warning,
            action_label=f"{verb} {count:,} {noun}",
            form=form,
        )

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

    def _decide(self, request, queryset, *, service, form_class, title, verb, warning=""):
        """Confirmation page with count and amount first; on confirm, the review service."""
        form = form_class(request.POST if is_confirmed(request) else None)
        if is_confirmed(request) and form.is_valid():
            return self._run(request, service, charges=queryset, note=form.cleaned_data["note"])
        return self._confirm(request, queryset, title=title, form=form, verb=verb, warning=warning)

    @admin.action(description="Approve selected charges (bill them)", permissions=["review"])
    def approve(self, request, queryset):
        if is_confirmed(request):
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
            service=charge_return,
            form_class=NoteForm,
            title="Return charges to the queue",
            verb="Return to the queue",
        )

    @admin.action(description="Reassign PI, project or fund/org", permissions=["review"])
    def reassign(self, request, queryset):
        form = ReassignForm(request.POST if is_confirmed(request) else None)
        if is_confirmed(request) and form.is_valid():
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
            title="Reassign charges",
            form=form,
            verb="Reassign",
            warning="Blank fields stay as they are. Flags are recomputed from the new "
            "attribution: resolved charges become clean (billable).",
        )


def _select_across(request) -> bool:
    return request.POST.get("select_across") == "1"
