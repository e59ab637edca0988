"""Admin for journals: templates (edit, preview on a period), exports (read-only, download), and
the "Export journal" action for billing periods (the BillingPeriod admin lists it).

Every export goes through journals.services.journal_export; the preview writes nothing.
"""

from __future__ import annotations

import hashlib
import io
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from billing.admin import register_period_action
from billing.admin.confirm import confirm_action, is_confirmed
from billing.admin.widgets import money_cell
from billing.config import ConfigError, load_config
from billing.models import BillingPeriod
from billing.money import cents_text
from openchargeback.listcells import ListTitleMixin, truncated, when

from .build import JournalRefused, journal_preview
from .models import JournalExport, JournalTemplate
from .render import COMMON_VARIABLES, ROW_VARIABLES
from .services import export_content, journal_export

PREVIEW_ROWS = 20


class JournalTemplateForm(forms.ModelForm):
    class Meta:
        model = JournalTemplate
        fields = (
            "name",
            "kind",
            "notes",
            "header_layout",
            "row_layout",
            "delimiter",
            "line_ending",
            "date_format",
            "description_template",
            "description_limit",
            "split_by_project",
            "file_name",
        )
        widgets = {
            name: forms.Textarea(
                attrs={"rows": 14, "cols": 70, "style": "font-family: monospace", "wrap": "off"}
            )
            for name in ("header_layout", "row_layout")
        }


@admin.register(JournalTemplate)
class JournalTemplateAdmin(admin.ModelAdmin):
    form = JournalTemplateForm
    list_display = ("name", "kind", "delimiter_name", "date_format", "updated_at", "preview_link")
    list_filter = ("kind",)
    search_fields = ("name", "notes")
    readonly_fields = ("created_at", "updated_at", "variables", "preview_link")
    fieldsets = (
        (None, {"fields": ("name", "kind", "notes", "preview_link")}),
        ("Layout", {"fields": ("header_layout", "row_layout", "variables")}),
        (
            "Format",
            {
                "fields": (
                    "delimiter",
                    "line_ending",
                    "date_format",
                    "description_template",
                    "description_limit",
                    "split_by_project",
                    "file_name",
                )
            },
        ),
        ("History", {"fields": ("created_at", "updated_at")}),
    )

    @admin.display(description="delimiter")
    def delimiter_name(self, obj):
        return obj.get_delimiter_display()

    @admin.display(description="preview")
    def preview_link(self, obj):
        if obj is None or obj.pk is None:
            return "(save the template first)"
        url = reverse("admin:journals_journaltemplate_preview", args=[obj.pk])
        return format_html('<a href="{}">Preview on a period</a>', url)

    @admin.display(description="variables")
    def variables(self, obj):
        kind = obj.kind if obj and obj.kind in ROW_VARIABLES else JournalTemplate.Kind.GL
        rows = {**COMMON_VARIABLES, **ROW_VARIABLES[kind]}
        items = format_html_join(
            "", "<li><code>{{{{ {} }}}}</code>: {}</li>", ((n, t) for n, t in rows.items())
        )
        return format_html(
            "<p>Variables of {} rows (headers and file names see the first {}):</p><ul>{}</ul>",
            kind,
            len(COMMON_VARIABLES),
            items,
        )

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.exports.exists():
            return False  # exports keep the template they were made with
        return super().has_delete_permission(request, obj)

    def get_urls(self):
        urls = [
            path(
                "<int:pk>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="journals_journaltemplate_preview",
            )
        ]
        return urls + super().get_urls()

    def preview_view(self, request, pk):
        template = self.get_object(request, str(pk))
        if template is None:
            raise Http404("no such template")
        if not self.has_view_permission(request, template):
            raise PermissionDenied
        periods = BillingPeriod.objects.order_by("-key")
        period = periods.filter(pk=request.GET.get("period") or 0).first() or periods.first()
        try:
            limit = max(1, min(int(request.GET.get("rows") or PREVIEW_ROWS), 500))
        except ValueError:
            limit = PREVIEW_ROWS
        journals, problems = [], []
        if period is not None:
            try:
                journals = journal_preview(
                    period=period, template=template, config=load_config(), limit=limit
                )
            except JournalRefused as exc:
                problems = exc.problems
            except ConfigError as exc:
                problems = [f"configuration: {exc}"]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Preview: {template.name}",
            "template_obj": template,
            "periods": periods,
            "period": period,
            "limit": limit,
            "journals": journals,
            "problems": problems,
        }
        return TemplateResponse(request, "admin/journals/journaltemplate/preview.html", context)


@admin.register(JournalExport)
class JournalExportAdmin(ListTitleMixin, admin.ModelAdmin):
    list_title = "Journal exports"
    list_display = (
        "created",
        "period",
        "template_name",
        "kind",
        "currency",
        "rows",
        "debits",
        "credits",
        "actor",
        "download_link",
    )
    list_filter = ("kind", "currency", "period")
    list_select_related = ("period",)
    search_fields = ("file_name", "template_name", "actor", "sha256")
    date_hierarchy = "created_at"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields] + ["download_link"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="created at", ordering="created_at")
    def created(self, obj):
        return when(obj.created_at)

    @admin.display(description="debits")
    def debits(self, obj):
        return money_cell(obj.debit_amount, obj.currency)

    @admin.display(description="credits")
    def credits(self, obj):
        return money_cell(obj.credit_amount, obj.currency)

    @admin.display(description="file")
    def download_link(self, obj):
        url = reverse("admin:journals_journalexport_download", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, truncated(obj.file_name, 32))

    def get_urls(self):
        urls = [
            path(
                "<int:pk>/download/",
                self.admin_site.admin_view(self.download_view),
                name="journals_journalexport_download",
            )
        ]
        return urls + super().get_urls()

    def download_view(self, request, pk):
        record = JournalExport.objects.filter(pk=pk).first()
        if record is None:
            raise Http404("no such export")
        if not self.has_view_permission(request, record):
            raise PermissionDenied
        try:
            content = export_content(record)
        except OSError:
            raise Http404(f"the file {record.file_name} is no longer at {record.path}") from None
        if hashlib.sha256(content).hexdigest() != record.sha256:
            raise Http404(
                f"the file at {record.path} has changed since it was exported (checksum differs)"
            )
        return FileResponse(
            io.BytesIO(content),
            as_attachment=True,
            filename=record.file_name,
            content_type="text/csv; charset=utf-8",
        )


class ExportJournalForm(forms.Form):
    template = forms.ModelChoiceField(
        queryset=JournalTemplate.objects.order_by("kind", "name"),
        empty_label=None,
        help_text="The layout to export with.",
    )


@admin.action(description="Export journal for the selected periods…")
def export_journal_action(modeladmin, request, queryset):
    """Admin action on billing periods: confirm, then export each period's journal.

    Needs the journals.export_journal permission. The confirmation page names the periods and
    the template; nothing is written until it is confirmed. Each period is exported (or refused,
    with the reasons) on its own.
    """
    if not request.user.has_perm("journals.export_journal"):
        raise PermissionDenied
    periods = list(queryset.order_by("key"))
    form = ExportJournalForm(request.POST if is_confirmed(request) else None)
    if is_confirmed(request) and form.is_valid():
        try:
            config = load_config()
        except ConfigError as exc:
            modeladmin.message_user(request, f"configuration: {exc}", messages.ERROR)
            return None
        template = form.cleaned_data["template"]
        for period in periods:
            try:
                result = journal_export(
                    period_key=period.key,
                    template=template,
                    acting_user=request.user,
                    config=config,
                )
            except JournalRefused as exc:
                modeladmin.message_user(
                    request, f"{period.key}: {'; '.join(exc.problems)}", messages.ERROR
                )
                continue
            totals = ", ".join(
                f"{cur} debits {cents_text(Decimal(result.debit_total[cur]))}, "
                f"credits {cents_text(Decimal(result.credit_total[cur]))}"
                for cur in result.debit_total
            )
            modeladmin.message_user(
                request,
                f"{period.key}: journal exported with {template.name}, {result.rows:,} rows, "
                f"{totals}. Download it under Journal exports.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(request.get_full_path())
    if not form.is_bound:
        default = JournalTemplate.objects.filter(name="gl").first()
        form = ExportJournalForm(initial={"template": default.pk if default else None})
    return confirm_action(
        modeladmin,
        request,
        queryset,
        title="Export journals",
        message="Each export writes one file per currency, is recorded under Journal exports "
        "(with its checksum and totals) and in the audit trail. A journal that would not balance, "
        "or has a source or fund/org not set up for the ledger, is refused and writes nothing.",
        action_label="Export",
        lines=[f"{p.key} ({p.status}){_export_note(p)}" for p in periods],
        form=form,
    )


def _export_note(period) -> str:
    if period.is_locked():
        return ": finalized, read-only; it will be refused (its recorded exports stay downloadable)"
    if period.is_open():
        return ": still open, so this is a draft"
    return ""


register_period_action(
    export_journal_action,
    required_permission="journals.export_journal",
    label="Export journal…",
    order=50,
)
