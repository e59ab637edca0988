"""The admin's user, group and audit pages.

Roles can't be escalated from the admin: only a superuser grants superuser, staff, groups (the
roles) or user permissions, edits a superuser, or changes a group or its permissions. A finance
admin (who holds accounts.change_user) sees those fields read-only; a POST that sets them anyway is
ignored, because read-only fields are not part of the form. Every change is audited by
accounts/signals.py.
"""

import csv
import json

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.http import StreamingHttpResponse

from openchargeback.csvsafe import safe_cell
from openchargeback.listcells import ListTitleMixin, stacked, truncated, when

from .models import AuditEvent, User

# Fields only a superuser may set: together they are every way to grant a privilege.
PRIVILEGE_FIELDS = ("is_superuser", "is_staff", "groups", "user_permissions")


@admin.register(User)
class AccountUserAdmin(UserAdmin):
    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            fields += PRIVILEGE_FIELDS
        return fields

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False  # nor its password: user_change_password asks this too
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request, queryset):
        # The bulk "delete selected" action checks the model permission, not each object.
        if not request.user.is_superuser and queryset.filter(is_superuser=True).exists():
            raise PermissionDenied("Only a superuser deletes a superuser.")
        super().delete_queryset(request, queryset)


admin.site.unregister(Group)


@admin.register(Group)
class RoleGroupAdmin(GroupAdmin):
    """Groups are the roles: anyone with the view permission may look, only a superuser
    changes them or their permissions."""

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


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
class AuditEventAdmin(ListTitleMixin, admin.ModelAdmin):
    """Read-only: nobody edits or deletes the audit trail from the admin. Exportable as CSV.
    The list cuts long names and reasons (whole on hover and on the detail page)."""

    list_title = "Audit log"
    list_display = ("created", "actor_cell", "action", "object_cell", "reason_cell")
    list_filter = ("action", "object_type", "created_at")
    search_fields = ("actor", "object_repr", "object_id", "reason")
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ["export_csv"]

    @admin.display(description="when", ordering="created_at")
    def created(self, obj):
        return when(obj.created_at)

    @admin.display(description="actor", ordering="actor")
    def actor_cell(self, obj):
        return truncated(obj.actor, 18)

    @admin.display(description="object", ordering="object_type")
    def object_cell(self, obj):
        return stacked(truncated(obj.object_repr, 28), obj.object_type)

    @admin.display(description="reason")
    def reason_cell(self, obj):
        return truncated(obj.reason, 28)

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
