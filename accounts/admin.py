import csv
import json

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.http import StreamingHttpResponse

from openchargeback.csvsafe import safe_cell

from .models import AuditEvent, User

admin.site.register(User, UserAdmin)


class _Echo:
    """A file-like object whose write returns the line, for streaming csv.writer output."""

    def write(self, value):
        return value


CSV_COLUMNS = (
    "id",
    "created_at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "before",
    "after",
    "details",
    "reason",
)


def _csv_cell(value) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return safe_cell(text)  # the one formula-safe rule (openchargeback/csvsafe.py)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: nobody edits or deletes the audit trail from the admin. Exportable as CSV."""

    list_display = ("created_at", "actor", "action", "object_type", "object_repr", "reason")
    list_filter = ("action", "object_type", "created_at")
    search_fields = ("actor", "object_repr", "object_id", "reason")
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ["export_csv"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Export selected events as CSV", permissions=["view"])
    def export_csv(self, request, queryset):
        writer = csv.writer(_Echo())

        def rows():
            yield writer.writerow(CSV_COLUMNS)
            for event in queryset.order_by("created_at", "id").iterator(chunk_size=2000):
                yield writer.writerow(
                    [
                        _csv_cell(
                            getattr(event, c) if c != "created_at" else event.created_at.isoformat()
                        )
                        for c in CSV_COLUMNS
                    ]
                )

        response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="audit-events.csv"'
        return response
