"""Admin for billing data.

Imports and charges are read-only here: they change only through the import and review
services. The charge list is built for a million rows: no full count, related rows joined in the
same query, filters that match the (period, status) and (period, source) indexes.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from import_export import fields, resources
from import_export.admin import ImportExportModelAdmin
from import_export.widgets import ForeignKeyWidget

from accounts.models import AuditEvent
from accounts.services import audit_record
from openchargeback.csvsafe import neutralise, restore

from .admin_pis import PIDelegateInline, PIPeriodFilter, invite_pis_action
from .admin_review import (
    CappedCountPaginator,
    ChargeCategoryFilter,
    ExactSearchMixin,
    PIFilter,
    ProjectFilter,
    ReasonFilter,
    ServiceFilter,
    reason_labels,
    review_history,
)
from .models import (
    PI,
    AccountMapping,
    BillingPeriod,
    Charge,
    Import,
    ImportFile,
    Project,
    Source,
)
from .selectors import period_summary
from .services import (
    PeriodError,
    account_mapping_delete,
    account_mapping_save,
    period_close,
    period_finalize,
    period_open,
)


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ("name", "display_name", "filename_pattern", "credit_fund_org", "account_code")
    search_fields = ("name", "display_name")


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


@admin.register(PI)
class PIAdmin(admin.ModelAdmin):
    list_display = ("email", "name", "user")
    list_filter = (PIPeriodFilter,)
    search_fields = ("email", "name")
    raw_id_fields = ("user",)
    actions = [invite_pis_action]
    inlines = [PIDelegateInline]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("code", "name")
    search_fields = ("code", "name")


class SafeResource(resources.ModelResource):
    """Every import-export resource: exported cells are formula-safe, and a file we exported
    imports back unchanged (openchargeback/csvsafe.py: the apostrophe is taken off again)."""

    def export_field(self, field, instance, **kwargs):
        value = super().export_field(field, instance, **kwargs)
        return neutralise(value) if isinstance(value, str) else value

    def before_import_row(self, row, **kwargs):
        super().before_import_row(row, **kwargs)
        for key, value in list(row.items()):
            if isinstance(value, str):
                row[key] = restore(value)


class AccountMappingResource(SafeResource):
    """CSV columns: source (name, blank for any), account_id, pi_email, project_id, fund_org, …"""

    source = fields.Field(
        attribute="source", column_name="source", widget=ForeignKeyWidget(Source, field="name")
    )

    class Meta:
        model = AccountMapping
        fields = (
            "source",
            "account_id",
            "pi_email",
            "project_id",
            "fund_org",
            "cost_center",
            "note",
        )
        import_id_fields = ("source", "account_id")
        skip_unchanged = True
        report_skipped = True
        use_transactions = True

    def after_import(self, dataset, result, **kwargs):
        """A CSV import of the account map is audited as one event, in its transaction."""
        super().after_import(dataset, result, **kwargs)
        if self._is_dry_run(kwargs) or result.has_errors():
            return
        audit_record(
            action="account_mapping.import",
            acting_user=kwargs.get("user"),
            details={kind: count for kind, count in result.totals.items() if count},
            reason=f"CSV import, {len(dataset)} row(s)",
        )


@admin.register(AccountMapping)
class AccountMappingAdmin(ImportExportModelAdmin):
    resource_classes = [AccountMappingResource]
    list_display = (
        "account_id",
        "source",
        "pi_email",
        "project_id",
        "fund_org",
        "cost_center",
        "note",
    )
    list_filter = ("source",)
    search_fields = ("account_id", "pi_email", "project_id", "fund_org")

    def save_model(self, request, obj, form, change):
        account_mapping_save(mapping=obj, acting_user=request.user, changed=form.changed_data)

    def delete_model(self, request, obj):
        account_mapping_delete(mapping=obj, acting_user=request.user)

    def delete_queryset(self, request, queryset):
        for mapping in queryset:
            account_mapping_delete(mapping=mapping, acting_user=request.user)


class ImportFileInline(admin.TabularInline):
    model = ImportFile
    fields = ("name", "rows", "size_bytes", "sha256")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Import)
class ImportAdmin(admin.ModelAdmin):
    """Import receipts: read-only, kept for ever."""

    list_display = (
        "id",
        "created_at",
        "source",
        "outcome",
        "mode",
        "period_list",
        "rows_read",
        "rows_flagged",
        "rows_added",
        "rows_removed",
        "billed_totals",
        "actor",
    )
    list_filter = ("outcome", "source", "mode")
    list_select_related = ("source",)
    inlines = [ImportFileInline]
    date_hierarchy = "created_at"

    @admin.display(description="periods")
    def period_list(self, obj):
        return ", ".join(obj.periods)

    @admin.display(description="billed")
    def billed_totals(self, obj):
        return ", ".join(f"{cur} {t['billed']}" for cur, t in obj.totals.items())

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Charge)
class ChargeAdmin(ExactSearchMixin, admin.ModelAdmin):
    """Every charge, read-only. Decisions on flagged charges belong to the review services."""

    list_display = (
        "id",
        "period",
        "source",
        "service_name",
        "resource_id",
        "billed",
        "listed",
        "billing_currency",
        "pi",
        "project",
        "fund_org",
        "review_status",
        "reason_list",
    )
    list_filter = (
        "review_status",
        ReasonFilter,
        "period",
        "source",
        PIFilter,
        ProjectFilter,
        ServiceFilter,
        ChargeCategoryFilter,
    )
    list_select_related = ("period", "source", "pi", "project")
    # Exact matches only: a substring search would read every row of a million-row period.
    exact_search_fields = ("resource_id", "fund_org", "sub_account_id", "invoice_id")
    search_help_text = "A resource id, fund/org, sub-account or invoice id, exactly as delivered."
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 100
    ordering = ("-id",)
    raw_id_fields = ("pi", "project", "import_file")
    fieldsets = (
        ("Charge", {"fields": ("period", "source", "import_link", "line_number", "fingerprint")}),
        (
            "Costs",
            {
                "fields": (
                    "billed_cost",
                    "list_cost",
                    "discount",
                    "contracted_cost",
                    "effective_cost",
                    "billing_currency",
                    "consumed_quantity",
                    "consumed_unit",
                )
            },
        ),
        (
            "What",
            {
                "fields": (
                    "charge_category",
                    "charge_class",
                    "charge_description",
                    "service_name",
                    "service_category",
                    "resource_id",
                    "resource_name",
                    "region_id",
                    "sku_id",
                )
            },
        ),
        (
            "When",
            {
                "fields": (
                    "billing_period_start",
                    "billing_period_end",
                    "charge_period_start",
                    "charge_period_end",
                )
            },
        ),
        (
            "Accounts",
            {
                "fields": (
                    "sub_account_id",
                    "sub_account_name",
                    "billing_account_id",
                    "billing_account_name",
                    "invoice_id",
                    "provider_name",
                )
            },
        ),
        (
            "Attribution",
            {"fields": ("pi", "project", "fund_org", "cost_center", "reference_1", "reference_2")},
        ),
        ("Review", {"fields": ("review_status", "reason_list", "history")}),
        ("Delivered data", {"fields": ("tags", "extra")}),
    )

    # Not sortable here: sorting a million rows by amount has no index to use. The review queue,
    # a much smaller set, sorts by amount.
    @admin.display(description="billed")
    def billed(self, obj):
        return obj.billed_cost

    @admin.display(description="list")
    def listed(self, obj):
        return obj.list_cost

    @admin.display(description="reasons")
    def reason_list(self, obj):
        return reason_labels(obj.flags)

    @admin.display(description="discount (list − billed)")
    def discount(self, obj):
        return "-" if obj.discount_cost is None else obj.discount_cost

    @admin.display(description="review history")
    def history(self, obj):
        return review_history(obj)

    @admin.display(description="import")
    def import_link(self, obj):
        file = obj.import_file
        url = reverse("admin:billing_import_change", args=[file.import_run_id])
        return format_html('<a href="{}">{} (import #{})</a>', url, file.name, file.import_run_id)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields] + [
            "reason_list",
            "discount",
            "history",
            "import_link",
        ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


admin.site.site_header = "OpenChargeback"
admin.site.site_title = "OpenChargeback"
admin.site.index_title = "Billing administration"
