"""Admin for statements: statements by period with status, PDF download and preview; the email
log with resend; batch progress. Everything is read-only here: actions call the services.

`generate_statements_action` and `send_statements_action` are actions on billing periods; the
BillingPeriod admin adds them (with `StatementPeriodActionsMixin` for the permission checks).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from django.urls import path, reverse
from django.utils.html import format_html

from billing.admin import register_period_action
from billing.admin.confirm import confirm_action, is_confirmed
from billing.admin.widgets import money_cell
from billing.config import ConfigError, load_config
from billing.money import cents_text
from openchargeback.listcells import ListTitleMixin, stacked, truncated, when

from .models import EmailAttempt, Statement, StatementEmail, StatementLine, StatementRun
from .selectors import period_status, run_progress
from .services import (
    StatementError,
    email_resend,
    statement_generate,
    statement_run_resume,
    statement_send,
    statement_send_one,
    statement_send_refusal,
)

GENERATE_PERM = "statements.generate_statement"
SEND_PERM = "statements.send_statement"


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class StatementLineInline(admin.TabularInline):
    model = StatementLine
    fields = (
        "kind",
        "label",
        "service_name",
        "quantity",
        "unit",
        "list_amount",
        "discount_amount",
        "due_amount",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Statement)
class StatementAdmin(ListTitleMixin, ReadOnlyAdmin):
    """Statements by period. The list merges PI with project and status with kind, so the amount
    due, when it was sent and the PDF fit at 1280 px; the detail page has every field."""

    list_title = "Statements"
    list_display = (
        "number",
        "period",
        "who",
        "fund",
        "status_kind",
        "due",
        "sent",
        "pdf_links",
    )
    list_filter = ("period", "status", "is_draft")
    search_fields = ("number", "pi_email", "project_code", "fund_org")
    list_select_related = ("period", "pi", "project")
    show_full_result_count = False
    inlines = [StatementLineInline]
    readonly_fields = (
        "number",
        "base_number",
        "revision",
        "version",
        "period",
        "pi_email",
        "pi_name",
        "project_code",
        "project_name",
        "pi",
        "project",
        "fund_org",
        "currency",
        "note",
        "is_draft",
        "status",
        "error",
        "list_amount",
        "discount_amount",
        "due_amount",
        "charge_count",
        "references",
        "issued_on",
        "pdf_links",
        "pdf_sha256",
        "content_hash",
        "superseded_by",
        "run",
        "created_at",
        "rendered_at",
        "sent_at",
    )
    fields = readonly_fields

    actions = ["send_one"]

    def has_send_statement_permission(self, request):
        return request.user.has_perm(SEND_PERM)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.action(
        description="Send or resend the selected statement", permissions=["send_statement"]
    )
    def send_one(self, request, queryset):
        """One statement to its PI, after the confirmation page; the refusal says why not."""
        statements = list(queryset.select_related("period", "pi", "superseded_by")[:2])
        if len(statements) != 1:
            self.message_user(
                request, "Select exactly one statement to send or resend.", messages.WARNING
            )
            return None
        (statement,) = statements
        problem = statement_send_refusal(statement)
        if problem:
            self.message_user(
                request, f"{statement.number} can't be sent: {problem}.", messages.ERROR
            )
            return None
        again = statement.sent_at is not None
        if not is_confirmed(request):
            return confirm_action(
                self,
                request,
                queryset,
                title="Send the statement again" if again else "Send the statement",
                summary=f"{statement.number} to {statement.pi.email}: amount due "
                f"{statement.currency} {cents_text(statement.due_amount)}.",
                message=(
                    f"It was sent on {statement.sent_at:%Y-%m-%d %H:%M}; the PI gets it again, "
                    "as a new email of its own."
                    if again
                    else "The PI gets this statement in an email of its own."
                ),
                action_label="Send again" if again else "Send",
            )
        try:
            email = statement_send_one(
                statement=statement, acting_user=request.user, config=load_config()
            )
        except ConfigError as exc:
            self.message_user(request, f"configuration: {exc}", messages.ERROR)
            return None
        except StatementError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return None
        email.refresh_from_db()
        status = email.get_status_display().lower()
        self.message_user(
            request, f"{statement.number}: email to {email.to_address} {status}.", messages.SUCCESS
        )
        return None

    @admin.display(description="kind")
    def kind(self, obj):
        if obj.is_draft:
            return "DRAFT"
        return f"revision {obj.revision}" if obj.revision else "final"

    @admin.display(description="PI · project", ordering="pi_email")
    def who(self, obj):
        return stacked(truncated(obj.pi_email, 24), truncated(obj.project_code, 24))

    @admin.display(description="fund/org", ordering="fund_org")
    def fund(self, obj):
        return truncated(obj.fund_org, 14)

    @admin.display(description="status · kind", ordering="status")
    def status_kind(self, obj):
        return stacked(obj.get_status_display(), self.kind(obj))

    @admin.display(description="amount due")
    def due(self, obj):
        return money_cell(obj.due_amount, obj.currency)

    @admin.display(description="sent at", ordering="sent_at")
    def sent(self, obj):
        return when(obj.sent_at)

    @admin.display(description="PDF")
    def pdf_links(self, obj):
        if not obj.pdf_path:
            return obj.error or "—"
        return format_html(
            '<a href="{}">download</a> · <a href="{}" target="_blank">preview</a>',
            reverse("admin:statements_statement_pdf", args=[obj.pk]),
            reverse("admin:statements_statement_preview", args=[obj.pk]),
        )

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/pdf/", wrap(self.pdf_view), name="statements_statement_pdf"),
            path(
                "<int:pk>/preview/",
                wrap(self.preview_view),
                name="statements_statement_preview",
            ),
            *super().get_urls(),
        ]

    def _pdf(self, request, pk, attachment: bool):
        if not self.has_view_permission(request):
            raise PermissionDenied
        statement = Statement.objects.filter(pk=pk).first()
        if statement is None or not statement.pdf_path:
            raise Http404("no PDF for this statement")
        handle = default_storage.open(statement.pdf_path, "rb")
        return FileResponse(
            handle,
            as_attachment=attachment,
            filename=f"{statement.number}.pdf",
            content_type="application/pdf",
        )

    def pdf_view(self, request, pk):
        return self._pdf(request, pk, attachment=True)

    def preview_view(self, request, pk):
        return self._pdf(request, pk, attachment=False)


class EmailAttemptInline(admin.TabularInline):
    model = EmailAttempt
    fields = ("number", "outcome", "error", "message_id", "worker", "started_at", "finished_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(StatementEmail)
class StatementEmailAdmin(ListTitleMixin, ReadOnlyAdmin):
    list_title = "Statement emails"
    list_display = (
        "id",
        "to_address",
        "period",
        "status",
        "attempts",
        "sent_at",
        "message_id",
        "short_error",
    )
    list_filter = ("status", "run__period")
    search_fields = ("to_address", "message_id", "statements__number")
    list_select_related = ("run__period",)
    show_full_result_count = False
    inlines = [EmailAttemptInline]
    readonly_fields = (
        "run",
        "pi",
        "to_address",
        "statement_numbers",
        "status",
        "error",
        "subject",
        "message_id",
        "attempts",
        "resend_of",
        "created_at",
        "queued_at",
        "sent_at",
    )
    fields = readonly_fields
    actions = ["resend_emails"]

    @admin.display(description="period")
    def period(self, obj):
        return obj.run.period.key

    @admin.display(description="error")
    def short_error(self, obj):
        return (obj.error[:80] + "…") if len(obj.error) > 80 else obj.error

    @admin.display(description="statements")
    def statement_numbers(self, obj):
        return ", ".join(s.number for s in obj.statements.all())

    def has_send_statement_permission(self, request):
        return request.user.has_perm(SEND_PERM)

    @admin.action(description="Resend the selected emails", permissions=["send_statement"])
    def resend_emails(self, request, queryset):
        if not is_confirmed(request):
            return confirm_action(
                self,
                request,
                queryset,
                title="Resend statement emails",
                action_label="Resend",
                lines=[
                    f"{e.to_address}: {self.statement_numbers(e)} ({e.status})" for e in queryset
                ],
                message="Each PI below gets the email again, with the current version of "
                "its statements.",
            )
        done = 0
        for item in queryset:
            try:
                email_resend(email=item, acting_user=request.user)
                done += 1
            except StatementError as exc:
                self.message_user(request, str(exc), messages.ERROR)
        if done:
            self.message_user(request, f"{done} email(s) queued again.", messages.SUCCESS)
        return None


@admin.register(StatementRun)
class StatementRunAdmin(ListTitleMixin, ReadOnlyAdmin):
    list_title = "Statement runs"
    list_display = (
        "id",
        "period",
        "kind",
        "draft",
        "send",
        "pi_email",
        "actor",
        "created_at",
        "progress",
    )
    list_filter = ("period", "kind")
    list_select_related = ("period",)
    readonly_fields = (
        "period",
        "kind",
        "pi_email",
        "draft",
        "send",
        "resend",
        "actor",
        "created_at",
        "progress",
        "summary",
    )
    fields = readonly_fields
    actions = ["resume_runs"]

    @admin.display(description="progress")
    def progress(self, obj):
        p = run_progress(obj)
        emails = p["emails_by_status"]
        text = f"rendered {p['rendered']} of {p['statements']}"
        if p["emails"]:
            text += (
                f"; emails sent {emails.get('sent', 0)}, failed {emails.get('failed', 0)} "
                f"of {p['emails']}"
            )
        failed = p["statements_by_status"].get("failed", 0)
        if failed:
            text += f"; {failed} statement(s) failed"
        return text + ("" if p["done"] else " (running)")

    def has_generate_statement_permission(self, request):
        return request.user.has_perm(GENERATE_PERM)

    @admin.action(
        description="Resume the selected batches (enqueue what they wait for)",
        permissions=["generate_statement"],
    )
    def resume_runs(self, request, queryset):
        if not is_confirmed(request):
            return confirm_action(
                self,
                request,
                queryset,
                title="Resume statement batches",
                action_label="Resume",
                lines=[
                    f"Batch {run.pk} ({run.period.key}): {self.progress(run)}" for run in queryset
                ],
                message="What each batch still waits for (statements to render, emails to send) "
                "is enqueued again. What is done is not done twice.",
            )
        for item in queryset:
            counts = statement_run_resume(run=item)
            self.message_user(
                request,
                f"Batch {item.pk}: {counts['rendering']} statement(s) and {counts['emails']} "
                "email(s) enqueued again.",
            )


# ---------------------------------------------------------------------------------------------
# Actions for the BillingPeriod admin


class StatementPeriodActionsMixin:
    """Mix into the BillingPeriod admin: the permission hooks of the two actions below.

    class BillingPeriodAdmin(StatementPeriodActionsMixin, admin.ModelAdmin):
        actions = [generate_statements_action, send_statements_action]
    """

    def has_generate_statement_permission(self, request):
        return request.user.has_perm(GENERATE_PERM)

    def has_send_statement_permission(self, request):
        return request.user.has_perm(SEND_PERM)


def _period_lines(queryset) -> list[str]:
    out = []
    for period in queryset:
        status = period_status(period)
        kind = "drafts (period open)" if period.is_open() else "final statements"
        out.append(
            f"{period.key} ({period.status}): {kind}; now {status['statements']} statement(s), "
            f"{status['emails_sent']} email(s) sent"
        )
    return out


@admin.action(
    description="Generate statements for the selected periods", permissions=["generate_statement"]
)
def generate_statements_action(modeladmin, request, queryset):
    """Generate (drafts if open, final if closed), after a confirmation page."""
    if not request.user.has_perm(GENERATE_PERM):
        raise PermissionDenied
    if not is_confirmed(request):
        return confirm_action(
            modeladmin,
            request,
            queryset,
            title="Generate statements",
            action_label="Generate",
            lines=_period_lines(queryset),
            message="Unsent statements are replaced; a changed statement that was already sent "
            "gets a revised version. Nothing is mailed.",
        )
    _run_for_periods(modeladmin, request, queryset, send=False)
    return None


@admin.action(
    description="Generate and email statements for the selected periods",
    permissions=["send_statement"],
)
def send_statements_action(modeladmin, request, queryset):
    """Generate the final statements and email each PI the ones not sent yet."""
    if not (request.user.has_perm(SEND_PERM) and request.user.has_perm(GENERATE_PERM)):
        raise PermissionDenied
    if not is_confirmed(request):
        return confirm_action(
            modeladmin,
            request,
            queryset,
            title="Generate and email statements",
            action_label="Generate and email",
            lines=_period_lines(queryset),
            message="Each PI is emailed the statements not sent to them yet, once. Open periods "
            "are refused: drafts are not mailed.",
        )
    _run_for_periods(modeladmin, request, queryset, send=True)
    return None


def _run_for_periods(modeladmin, request, queryset, *, send: bool) -> None:
    try:
        config = load_config()
    except ConfigError as exc:
        modeladmin.message_user(request, f"configuration: {exc}", messages.ERROR)
        return
    for period in queryset:
        try:
            result = statement_generate(
                period_key=period.key, send=send, acting_user=request.user, config=config
            )
        except StatementError as exc:
            modeladmin.message_user(request, f"{period.key}: {exc}", messages.ERROR)
            continue
        due = ", ".join(f"{c} {v}" for c, v in result.total_due.items()) or "nothing"
        text = (
            f"{period.key}: {len(result.statements)} {'draft ' if result.draft else ''}"
            f"statement(s) for {result.pis} PI(s), total due {due}"
        )
        if result.excluded.get("count"):
            text += f"; {result.excluded['count']} flagged or rejected charge(s) left out"
        if send:
            e = result.emails
            text += f"; emails queued {e['queued']}, sent {e['sent']}, failed {e['failed']}"
        modeladmin.message_user(request, text + ".", messages.SUCCESS)


__all__ = [
    "StatementPeriodActionsMixin",
    "generate_statements_action",
    "send_statements_action",
    "statement_send",
]


register_period_action(
    generate_statements_action,
    required_permission=GENERATE_PERM,
    label="Generate statements…",
    order=30,
)
register_period_action(
    send_statements_action,
    required_permission=SEND_PERM,
    label="Send statements…",
    statuses=("closed",),
    order=40,
)
