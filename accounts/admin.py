from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from .models import AuditEvent, User

admin.site.register(User, UserAdmin)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: nobody edits or deletes the audit trail from the admin."""

    list_display = ("created_at", "actor", "action", "object_repr", "reason")
    list_filter = ("action",)
    search_fields = ("actor", "object_repr", "reason")
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
