"""Admin for billing data.

Imports and charges are read-only here: they change only through the import and review
services. The charge list is built for a million rows: no full count, related rows joined in the
same query, filters that match the (period, status) and (period, source) indexes.
"""

from django.contrib import admin
from django.db.models import F
from django.utils.html import format_html_join
from import_export import fields, resources
from import_export.admin import ImportExportModelAdmin
from import_export.widgets import ForeignKeyWidget

from .models import (
    PI,
    AccountMapping,
    BillingPeriod,
    Charge,
    Flag,
    Import,
    ImportFile,
    Project,
    Source,
)
from .money import AsNumber


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ("name", "display_name", "filename_pattern", "credit_fund_org", "account_code")
    search_fields = ("name", "display_name")


@admin.register(BillingPeriod)
class BillingPeriodAdmin(admin.ModelAdmin):
    list_display = ("key", "status", "created_at", "closed_at", "finalized_at")
    list_filter = ("status",)
    search_fields = ("key",)
    # Status changes go through the period services (command line: `periods close|open`).
    readonly_fields = ("status", "created_at", "closed_at", "finalized_at")

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return ("key", *self.readonly_fields)
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PI)
class PIAdmin(admin.ModelAdmin):
    list_display = ("email", "name", "user")
    search_fields = ("email", "name")
    raw_id_fields = ("user",)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("code", "name")
    search_fields = ("code", "name")


class AccountMappingResource(resources.ModelResource):
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


class ReasonFilter(admin.SimpleListFilter):
    title = "reason"
    parameter_name = "reason"

    def lookups(self, request, model_admin):
        return [(flag.code, flag.label) for flag in Flag]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        flag = Flag.from_code(self.value())
        return queryset.alias(flag_hit=F("flags").bitand(int(flag))).filter(flag_hit__gt=0)


@admin.register(Charge)
class ChargeAdmin(admin.ModelAdmin):
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
    list_filter = ("review_status", ReasonFilter, "period", "source", "charge_category")
    list_select_related = ("period", "source", "pi", "project")
    search_fields = (
        "=resource_id",
        "resource_name",
        "service_name",
        "=fund_org",
        "=pi__email",
        "=project__code",
    )
    show_full_result_count = False
    list_per_page = 100
    ordering = ("-id",)
    raw_id_fields = ("pi", "project", "import_file")
    fieldsets = (
        ("Charge", {"fields": ("period", "source", "import_file", "line_number", "fingerprint")}),
        (
            "Costs",
            {
                "fields": (
                    "billed_cost",
                    "list_cost",
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
        ("Review", {"fields": ("review_status", "reason_list")}),
        ("Delivered data", {"fields": ("tags", "extra")}),
    )

    @admin.display(description="billed", ordering=AsNumber("billed_cost"))
    def billed(self, obj):
        return obj.billed_cost

    @admin.display(description="list", ordering=AsNumber("list_cost"))
    def listed(self, obj):
        return obj.list_cost

    @admin.display(description="reasons")
    def reason_list(self, obj):
        if not obj.flags:
            return "-"
        return format_html_join(", ", "{}", ((Flag(f).label,) for f in Flag if obj.flags & f))

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields] + ["reason_list"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


admin.site.site_header = "OpenChargeback"
admin.site.site_title = "OpenChargeback"
admin.site.index_title = "Billing administration"
