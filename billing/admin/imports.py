"""Import receipts in the admin: read-only, kept for ever."""

from django.contrib import admin
from django.utils.html import format_html_join

from openchargeback.listcells import ListTitleMixin, stacked, truncated, when

from ..models import Import, ImportFile
from .widgets import money_cell


class ImportFileInline(admin.TabularInline):
    model = ImportFile
    fields = ("name", "rows", "size_bytes", "sha256")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Import)
class ImportAdmin(ListTitleMixin, admin.ModelAdmin):
    """Import receipts: read-only, kept for ever. The list merges the source with how it was
    imported and the row counts into one cell each; every figure is on the detail page."""

    list_title = "Imports"
    list_display = (
        "id",
        "created",
        "source_outcome",
        "period_list",
        "row_counts",
        "billed_totals",
        "actor_cell",
    )
    list_filter = ("outcome", "source", "mode")
    list_select_related = ("source",)
    inlines = [ImportFileInline]
    date_hierarchy = "created_at"

    @admin.display(description="created at", ordering="created_at")
    def created(self, obj):
        return when(obj.created_at)

    @admin.display(description="source · outcome", ordering="source__name")
    def source_outcome(self, obj):
        return stacked(truncated(obj.source, 24), f"{obj.get_outcome_display()} · {obj.mode}")

    @admin.display(description="periods")
    def period_list(self, obj):
        return truncated(", ".join(obj.periods), 17)

    @admin.display(description="rows")
    def row_counts(self, obj):
        return stacked(
            f"{obj.rows_read:,} read · {obj.rows_flagged:,} flagged",
            f"{obj.rows_added:,} added · {obj.rows_removed:,} removed",
        )

    @admin.display(description="billed")
    def billed_totals(self, obj):
        """One line per currency: the file's billed total to the cent, exact on hover."""
        if not obj.totals:
            return "—"
        return format_html_join(
            "",
            '<span class="oc-block">{} {}</span>',
            ((cur, money_cell(t["billed"], cur)) for cur, t in sorted(obj.totals.items())),
        )

    @admin.display(description="by", ordering="actor")
    def actor_cell(self, obj):
        return truncated(obj.actor, 20)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
