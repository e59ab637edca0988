"""Import receipts in the admin: read-only, kept for ever."""

from django.contrib import admin

from ..models import Import, ImportFile


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
