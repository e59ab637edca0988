"""Reference data in the admin: sources, projects and the account map (with its CSV import and
export, formula-safe both ways)."""

from django.contrib import admin
from import_export import fields, resources
from import_export.admin import ImportExportModelAdmin
from import_export.widgets import ForeignKeyWidget

from accounts.services import audit_record
from openchargeback.csvsafe import neutralise, restore

from ..models import AccountMapping, Project, Source
from ..services import account_mapping_delete, account_mapping_save


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ("name", "display_name", "filename_pattern", "credit_fund_org", "account_code")
    search_fields = ("name", "display_name")


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
            "pi_name",
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
