"""Reference data in the admin: sources and projects (with their month totals and last import),
and the account map (with its CSV import and export, formula-safe both ways)."""

from django.contrib import admin
from django.db.models import Max
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime
from import_export import fields, resources
from import_export.admin import ImportExportModelAdmin
from import_export.widgets import ForeignKeyWidget

from accounts.services import audit_record
from openchargeback.csvsafe import neutralise, restore

from ..models import AccountMapping, BillingPeriod, Charge, Project, Source
from ..money import ZERO, ExactSum, cents_text, money_text
from ..selectors import last_import, reference_months
from ..services import account_mapping_delete, account_mapping_save

RIGHT = '<td style="text-align:right">{}</td>'  # numbers line up on the right


def _amount(value) -> str:
    """An amount to the cent with separators, the exact value on hover."""
    return format_html(
        '<span class="amount" title="{}">{}</span>', money_text(value), cents_text(value)
    )


def months_table(rows: list[dict], latest) -> str:
    """The month totals of a source or project, and its last import, as a small table."""
    if latest is None:
        last = "never imported"
    else:
        url = reverse("admin:billing_import_change", args=[latest.pk])
        when = date_format(localtime(latest.created_at), "Y-m-d H:i")
        last = format_html(
            '<a href="{}">#{}</a> {} ({}, {})', url, latest.pk, when, latest.source, latest.actor
        )
    if not rows:
        return format_html("<p>Last import: {}</p><p>No charges in the last 12 months.</p>", last)
    body = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td>" + RIGHT + RIGHT + "<td>{}</td>" + RIGHT + RIGHT + "</tr>",
        (
            (
                r["period"],
                r["status"],
                f"{r['charges']:,}",
                f"{r['flagged']:,}",
                r["currency"],
                _amount(r["billed"]),
                _amount(r["billable"]),
            )
            for r in rows
        ),
    )
    return format_html(
        '<p>Last import: {}</p><table class="month-totals"><thead><tr><th>Period</th>'
        "<th>Status</th><th>Charges</th><th>Flagged</th><th>Currency</th><th>Billed</th>"
        "<th>Billable</th></tr></thead><tbody>{}</tbody></table>",
        last,
        body,
    )


class MonthTotalsMixin:
    """List columns with the latest month's billed total (computed for the page's rows in one
    query) and the change page's month totals and last import."""

    reference_field = ""  # "source" or "project"

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        objects = list(changelist.result_list)
        latest = BillingPeriod.objects.order_by("-key").first()
        totals = {}
        if latest is not None and objects:
            field = f"{self.reference_field}_id"
            rows = (
                Charge.objects.filter(period=latest, **{f"{field}__in": [o.pk for o in objects]})
                .values(field, "billing_currency")
                .annotate(billed=ExactSum("billed_cost"))
                .order_by()
            )
            for row in rows:
                totals.setdefault(row[field], []).append((row["billing_currency"], row["billed"]))
        for obj in objects:
            obj.latest_totals = (latest, sorted(totals.get(obj.pk, [])))
        return changelist

    @admin.display(description="latest month billed")
    def latest_month(self, obj):
        latest, totals = getattr(obj, "latest_totals", (None, []))
        if latest is None or not totals:
            return "—"
        return format_html_join(
            ", ",
            "{} {} {}",
            ((latest.key, currency, _amount(billed or ZERO)) for currency, billed in totals),
        )

    @admin.display(description="month totals (last 12 months)")
    def month_totals(self, obj):
        if obj is None or obj.pk is None:
            return "—"
        rows = reference_months(**{self.reference_field: obj})
        return months_table(rows, last_import(**{self.reference_field: obj}))


@admin.register(Source)
class SourceAdmin(MonthTotalsMixin, admin.ModelAdmin):
    reference_field = "source"
    list_display = (
        "name",
        "display_name",
        "filename_pattern",
        "credit_fund_org",
        "account_code",
        "latest_month",
        "last_import_at",
    )
    search_fields = ("name", "display_name")
    readonly_fields = ("month_totals",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_last_import=Max("imports__created_at"))

    @admin.display(description="last import", ordering="_last_import")
    def last_import_at(self, obj):
        value = getattr(obj, "_last_import", None)
        return date_format(localtime(value), "Y-m-d H:i") if value else "never"


@admin.register(Project)
class ProjectAdmin(MonthTotalsMixin, admin.ModelAdmin):
    reference_field = "project"
    list_display = ("code", "name", "latest_month")
    search_fields = ("code", "name")
    readonly_fields = ("month_totals",)


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
        "pi_name",
        "project_id",
        "fund_org",
        "cost_center",
        "note",
    )
    list_filter = ("source",)
    search_fields = ("account_id", "pi_email", "pi_name", "project_id", "fund_org")

    def save_model(self, request, obj, form, change):
        account_mapping_save(mapping=obj, acting_user=request.user, changed=form.changed_data)

    def delete_model(self, request, obj):
        account_mapping_delete(mapping=obj, acting_user=request.user)

    def delete_queryset(self, request, queryset):
        for mapping in queryset:
            account_mapping_delete(mapping=mapping, acting_user=request.user)
