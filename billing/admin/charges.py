"""The charge browser: every charge, read-only, built for a million rows: no full count, related
rows joined in the same query, filters that match the (period, status) and (period, source)
indexes. Decisions on flagged charges belong to the review queue (review.py)."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from openchargeback.listcells import ListTitleMixin

from ..models import Charge
from .widgets import (
    CappedChangeList,
    CappedCountPaginator,
    ChargeCategoryFilter,
    ChargeCellsMixin,
    ExactSearchMixin,
    PIFilter,
    ProjectFilter,
    ReasonFilter,
    ServiceFilter,
    money_cell,
    reason_labels,
    review_history,
)


@admin.register(Charge)
class ChargeAdmin(ListTitleMixin, ChargeCellsMixin, ExactSearchMixin, admin.ModelAdmin):
    """Every charge, read-only. Decisions on flagged charges belong to the review services.

    The list keeps what a person acts on at 1280 px (docs/admin.md, "Lists"): the source and
    the category are filters; an amount's currency and exact value show on hover; all of them
    are on the detail page."""

    list_title = "Charges"
    count_nouns = ("charge", "charges")
    list_display = (
        "ref",
        "what",
        "billed",
        "listed",
        "who",
        "fund",
        "status_reasons",
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
    # Sorted by id only (newest first unless the charge column is clicked): every other column
    # would sort all the charges in the database, with no index to read them in that order
    # (3 s at a million, 30 s at ten million). The review queue, a few percent of the charges,
    # sorts by its columns.
    sortable_by = ("ref",)
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

    @admin.display(description="billed")
    def billed(self, obj):
        return money_cell(obj.billed_cost, obj.billing_currency)

    @admin.display(description="list")
    def listed(self, obj):
        return money_cell(obj.list_cost, obj.billing_currency)

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

    def get_changelist(self, request, **kwargs):
        return CappedChangeList

    # The search looks its matches up in the search index (ExactSearchMixin); the first CAP + 1
    # of them are all this list shows (it has no totals and no actions).
    search_head_is_enough = True

    def search_through_index(self, request) -> bool:
        return True

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
