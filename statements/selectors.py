"""Reads for statements: what a PDF shows, period checks for finalizing, batch progress.

The figures themselves (groups, totals, allocation) are in statements.figures; the journal and
the portal read the same numbers from there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Count

from billing.models import BillingPeriod
from billing.selectors import cached_figures, figures_versions

from .figures import (  # noqa: F401  (re-exported: one import path for readers)
    Line,
    Reduction,
    Section,
    StatementFigures,
    billable_total,
    excluded_summary,
    group_totals,
    statement_breakdown,
    statement_figures,
)
from .groups import billable_charges
from .models import Statement, StatementEmail, StatementLine, StatementRun

if TYPE_CHECKING:
    from .pdf import PdfData

RENDERED = (Statement.Status.READY, Statement.Status.QUEUED, Statement.Status.SENT)


def statement_sections(statement: Statement, lines=None) -> list[Section]:
    """The statement's stored lines (or `lines`, already read) as sections with their details."""
    sections: dict[int, Section] = {}
    for line in statement.lines.order_by("position") if lines is None else lines:
        if line.kind == StatementLine.Kind.SECTION:
            sections[line.position] = Section(
                category=line.category,
                label=line.label,
                service_name=line.service_name,
                corrects_period=line.corrects_period,
                list_amount=line.list_amount,
                due_amount=line.due_amount,
            )
        elif line.kind == StatementLine.Kind.REDUCTION:
            sections[line.section].reductions.append(
                Reduction(
                    kind=line.service_name,
                    label=line.label,
                    exact_amount=line.discount_amount,
                    quantity=line.quantity,
                    unit=line.unit,
                    amount=line.discount_amount,
                )
            )
        else:
            sections[line.section].lines.append(
                Line(
                    service_name=line.service_name,
                    resource_id=line.resource_id,
                    resource_name=line.resource_name,
                    unit=line.unit,
                    quantity=line.quantity,
                    charge_count=line.charge_count,
                    exact_billed=line.due_amount,
                    exact_list=line.list_amount,
                    list_amount=line.list_amount,
                    due_amount=line.due_amount,
                )
            )
    return list(sections.values())


def statement_with_lines(pk: int) -> tuple[Statement | None, list[StatementLine]]:
    """A statement and its lines in one query (the render task's read)."""
    lines = list(
        StatementLine.objects.filter(statement_id=pk)
        .select_related(
            "statement__period", "statement__pi", "statement__project", "statement__run"
        )
        .order_by("position")
    )
    if lines:
        statement = lines[0].statement
        for line in lines:
            line.statement = statement
        return statement, lines
    statement = (
        Statement.objects.select_related("period", "pi", "project", "run").filter(pk=pk).first()
    )
    return statement, []


def statement_pdf_data(statement: Statement, snapshot: dict | None = None, lines=None) -> PdfData:
    """What the statement's PDF shows, from the statement, its lines and its batch's settings."""
    # Local: statements.pdf imports reportlab (0.06 s), which the readers of this module that
    # render nothing (the admin, the portal, the journal) would load at start-up.
    from .pdf import PdfData

    if snapshot is None:
        snapshot = statement.run.settings_snapshot if statement.run_id else {}
    labels = snapshot.get("reference_labels", {})
    references = [
        (labels.get(name, name.replace("_", " ").capitalize()), ", ".join(values))
        for name, values in (statement.references or {}).items()
        if values
    ]
    supersedes = statement.supersedes.order_by("-revision").first() if statement.revision else None
    return PdfData(
        institution=snapshot.get("institution") or "Research Computing",
        contact_email=snapshot.get("contact_email", ""),
        logo_path=snapshot.get("logo", ""),
        number=statement.number,
        period_key=statement.period.key,
        issued_on=statement.issued_on,
        currency=statement.currency,
        **statement.printed(),
        note=statement.note,
        fund_org=statement.fund_org,
        references=references,
        list_amount=statement.list_amount,
        due_amount=statement.due_amount,
        sections=statement_sections(statement, lines),
        is_draft=statement.is_draft,
        revision=statement.revision,
        supersedes=supersedes.number if supersedes else "",
    )


def cached_group_totals(period: BillingPeriod) -> dict[tuple, dict]:
    """`group_totals(period)`, cached under the period's figures version.

    The period page shows the statements check on every visit, and once the month has
    statements the check adds up its billable charges (one GROUP BY: 12.8 s at ten million
    charges). Every import, review decision and status change of the period raises its
    version in its own transaction (billing.services.figures.figures_changed), so a cached
    answer is current or not found. Inside a transaction (the finalize service) it is computed
    afresh: what it reads may still roll back.
    """
    return cached_figures(
        f"statement-group-totals:{period.pk}",
        lambda: group_totals(period),
        figures_versions([period.pk]).get(period.pk),
    )


def warm_group_totals(period: BillingPeriod) -> None:
    """Billing's figures warmer (registered in apps.py): after a change to the period's figures,
    add up its statement groups for the period page's statements check, so the first view after
    the change doesn't (3.6 s at ten million charges). Only when the month has statements on
    record: without them the check is one EXISTS, and this is that EXISTS."""
    if Statement.objects.filter(period=period, superseded_by__isnull=True).exists():
        cached_group_totals(period)


def period_has_statements(period: BillingPeriod) -> bool:
    """True when every statement group of the period has a current, final, rendered statement
    showing its current figures.

    For the finalize check: a review decision after generation makes this False again. Before
    any statement exists (a month being worked on, whose period page shows this check), the
    answer is whether anything is billable: one EXISTS, not a GROUP BY over the month.
    """
    current = {
        (s.pi_id, s.project_id, s.fund_org, s.currency): s
        for s in Statement.objects.filter(period=period, superseded_by__isnull=True)
    }
    if not current:
        return not billable_charges(period).exists()
    groups = cached_group_totals(period)
    for key, s in current.items():
        if key not in groups and not s.is_draft and (s.due_amount or s.list_amount):
            return False  # shows charges that are no longer billable
    for key, totals in groups.items():
        s = current.get(key)
        if s is None or s.is_draft or not s.pdf_path or s.status == Statement.Status.RENDERING:
            return False
        if s.due_amount != totals["due"] or s.list_amount != totals["list"]:
            return False
    return True


def period_emails_settled(period: BillingPeriod) -> bool:
    """True when no statement email of the period is pending, queued or sending (the finalize
    check: a finalized period's statements must not change under a send in flight)."""
    live = [
        StatementEmail.Status.PENDING,
        StatementEmail.Status.QUEUED,
        StatementEmail.Status.SENDING,
    ]
    return not StatementEmail.objects.filter(run__period=period, status__in=live).exists()


def period_status(period: BillingPeriod, *, check_complete: bool = False) -> dict:
    """For the dashboard: current statements by status, drafts, emails sent and failed.

    `check_complete` adds "complete" (`period_has_statements`: with statements on record, one
    GROUP BY over the charges per figures version).
    """
    statements = Statement.objects.filter(period=period, superseded_by__isnull=True)
    by_status = {
        row["status"]: row["n"]
        for row in statements.values("status").annotate(n=Count("id")).order_by()
    }
    emails = {
        row["status"]: row["n"]
        for row in StatementEmail.objects.filter(run__period=period)
        .values("status")
        .annotate(n=Count("id"))
        .order_by()
    }
    return {
        "period": period.key,
        "statements": sum(by_status.values()),
        "drafts": statements.filter(is_draft=True).count(),
        "by_status": {s: by_status.get(s, 0) for s in Statement.Status.values},
        "emails": {s: emails.get(s, 0) for s in StatementEmail.Status.values},
        "emails_sent": emails.get(StatementEmail.Status.SENT, 0),
        "emails_failed": emails.get(StatementEmail.Status.FAILED, 0),
    } | ({"complete": period_has_statements(period)} if check_complete else {})


def run_progress(run: StatementRun) -> dict:
    """A batch's progress: its statements by status and its emails by status."""
    statements = {
        row["status"]: row["n"]
        for row in run.statements.values("status").annotate(n=Count("id")).order_by()
    }
    emails = {
        row["status"]: row["n"]
        for row in run.emails.values("status").annotate(n=Count("id")).order_by()
    }
    total_s, total_e = sum(statements.values()), sum(emails.values())
    rendered = total_s - statements.get(Statement.Status.RENDERING, 0)
    finished = emails.get(StatementEmail.Status.SENT, 0) + emails.get(
        StatementEmail.Status.FAILED, 0
    )
    return {
        "statements": total_s,
        "rendered": rendered,
        "statements_by_status": statements,
        "emails": total_e,
        "emails_finished": finished,
        "emails_by_status": emails,
        "done": rendered == total_s and finished == total_e,
    }
