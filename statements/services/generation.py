"""Generation: make (or remake) a period's statements from its billable charges.

Invariants:
- A finalized period refuses every write (checked under the period's row lock). Final
  statements need a closed period; an open period gets drafts (DRAFT on every page); drafts are
  never mailed.
- One current statement per (period, PI, project, fund/org, currency); its base number never
  changes (`StatementNumber`). Before it is sent, regenerating replaces it; once sent (or maybe
  sent), it is kept with its PDF and hash, and a change makes a revision "<number>-R<n>".
- Figures come from statements.figures only (one rounding rule, shared with the journal).
- A statement is mailed once: `--send` skips statements already sent or waiting in an email,
  unless `resend` asks (statements/services/delivery.py).
- A group that was sent keeps a current statement for good: a change, a fund/org move or no
  charges left makes a revision (statements/lifecycle.py), never a deletion.
- Each change is one transaction with its audit event; tasks are enqueued after commit.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from decimal import Decimal

from django.core.files.storage import default_storage
from django.db import connection, models, transaction
from django.utils import timezone

from accounts.services import actor_name, audit_record
from billing.config import BillingConfig, load_config
from billing.models import PI, BillingPeriod
from billing.money import ZERO, exact_sum, money_text
from billing.services import PeriodError, period_writable

from ..figures import (
    StatementFigures,
    billable_total,
    excluded_summary,
    statement_figures,
)
from ..lifecycle import DRAFT, FINAL, REMOVED, SUPERSEDED, phase_check, statement_move
from ..models import Statement, StatementEmail, StatementLine, StatementRun
from .common import StatementError, config_snapshot, current_statements, storage_path
from .delivery import LIVE_EMAIL, enqueue, queue_emails
from .numbering import bulk_insert, numbers_for, numbers_preview

# ---------------------------------------------------------------------------------------------
# The result of a generation, as the command prints it.


@dataclass
class GenerateResult:
    period: str
    status: str  # "generated", "dry-run"
    draft: bool
    run_id: int | None = None
    statements: list[dict] = field(default_factory=list)
    changes: dict[str, int] = field(default_factory=dict)
    total_due: dict[str, str] = field(default_factory=dict)
    billable_total: dict[str, str] = field(default_factory=dict)
    excluded: dict = field(default_factory=dict)
    emails: dict[str, int] = field(default_factory=dict)
    orphaned: list[str] = field(default_factory=list)

    @property
    def pis(self) -> int:
        return len({s["pi_email"] for s in self.statements})

    def as_dict(self) -> dict:
        return {
            "period": self.period,
            "status": self.status,
            "draft": self.draft,
            "run": self.run_id,
            "statements": self.statements,
            "pis": self.pis,
            "changes": self.changes,
            "total_due": self.total_due,
            "billable_total": self.billable_total,
            "excluded": self.excluded,
            "emails": self.emails,
            "orphaned": self.orphaned,
        }


def _statement_row(s: Statement | StatementFigures, *, number: str = "", pdf: str = "") -> dict:
    if isinstance(s, Statement):
        return {
            "number": s.number,
            "pi_email": s.printed()["pi_email"],
            "project": s.printed()["project_code"],
            "fund_org": s.fund_org,
            "currency": s.currency,
            "draft": s.is_draft,
            "revision": s.revision,
            "status": s.status,
            "list": money_text(s.list_amount),
            "discount": money_text(s.discount_amount),
            "amount_due": money_text(s.due_amount),
            "charges": s.charge_count,
            "pdf": storage_path(s.pdf_path),
            "sha256": s.pdf_sha256 or None,
        }
    return {
        "number": number,
        "pi_email": s.pi_email,
        "project": s.project_code,
        "fund_org": s.fund_org,
        "currency": s.currency,
        "list": money_text(s.list_amount),
        "discount": money_text(s.discount_amount),
        "amount_due": money_text(s.due_amount),
        "charges": s.charge_count,
        "pdf": pdf or None,
    }


def _totals(rows: list[dict]) -> dict[str, str]:
    by_currency: dict[str, list[Decimal]] = defaultdict(list)
    for row in rows:
        by_currency[row["currency"]].append(Decimal(row["amount_due"]))
    return {c: money_text(exact_sum(v)) for c, v in sorted(by_currency.items())}


# ---------------------------------------------------------------------------------------------
# Generate


def _fill(statement: Statement, f: StatementFigures, *, draft: bool, run: StatementRun) -> None:
    statement_move(statement, Statement.Status.RENDERING)
    statement.is_draft = draft
    statement.error = ""
    statement.list_amount = f.list_amount
    statement.discount_amount = f.discount_amount
    statement.due_amount = f.due_amount
    statement.charge_count = f.charge_count
    statement.references = f.references
    statement.pi_email, statement.pi_name = f.pi_email, f.pi_name
    statement.project_code, statement.project_name = f.project_code, f.project_name
    statement.note = f.note
    statement.content_hash = f.content_hash()
    statement.issued_on = timezone.localdate()
    statement.pdf_path = ""
    statement.pdf_sha256 = ""
    statement.rendered_at = None
    statement.run = run


def _lines(statement: Statement, f: StatementFigures) -> list[tuple]:
    """The statement's lines as rows in LINE_COLUMNS order (the statement object first)."""
    out = []
    position = 0
    section_kind, detail_kind = StatementLine.Kind.SECTION.value, StatementLine.Kind.DETAIL.value
    for section in f.sections:
        position += 1
        head = position
        out.append(
            (statement, section_kind, head, head, section.category, section.label,
             section.service_name, "", "", section.corrects_period, None, "",
             section.charge_count, section.list_amount, section.discount_amount,
             section.due_amount)
        )  # fmt: skip
        for line in section.lines:
            position += 1
            out.append(
                (statement, detail_kind, position, head, section.category, line.label,
                 line.service_name, line.resource_id, line.resource_name,
                 section.corrects_period, line.quantity, line.unit, line.charge_count,
                 line.list_amount, line.list_amount - line.due_amount, line.due_amount)
            )  # fmt: skip
        for reduction in section.reductions:
            position += 1
            out.append(
                (statement, StatementLine.Kind.REDUCTION.value, position, head, section.category,
                 reduction.label, reduction.kind, "", "", section.corrects_period,
                 reduction.quantity, reduction.unit, 0, ZERO, reduction.amount, ZERO)
            )  # fmt: skip
    return out


def statement_generate(
    *,
    period_key: str,
    pi_email: str | None = None,
    dry_run: bool = False,
    send: bool = False,
    resend: bool = False,
    acting_user=None,
    actor: str = "",
    config: BillingConfig | None = None,
) -> GenerateResult:
    """Make (or remake) the period's statements, render them by tasks, and maybe mail them.

    Open period: drafts. Closed: final statements. Finalized: refused. See the module docstring
    for replacement and revision. Rendering and sending run after commit (in-process without a
    broker, so the result then shows them done).
    """
    config = config or load_config()
    pi_email = (pi_email or "").strip().lower() or None
    if resend and not send:
        raise StatementError("--resend only makes sense with --send")
    with transaction.atomic():
        period = BillingPeriod.objects.filter(key=period_key).first()
        if period is None:
            raise StatementError(f"period {period_key} does not exist")
        try:
            period = period_writable(period, what="get new statements")
        except PeriodError as exc:
            raise StatementError(str(exc)) from None
        draft = period.is_open()
        if send and draft:
            raise StatementError(
                f"period {period.key} is open: its statements are drafts, and drafts are not "
                "mailed. Close the period first (openchargeback periods close "
                f"{period.key})."
            )
        if pi_email and not PI.objects.filter(email=pi_email).exists():
            raise StatementError(f"no PI with email {pi_email}")
        busy = StatementEmail.objects.filter(run__period=period, status__in=LIVE_EMAIL)
        if pi_email:
            busy = busy.filter(pi__email=pi_email)
        if not dry_run and busy.exists():
            raise StatementError(
                f"{busy.count()} email(s) of {period.key} are still being sent; wait for the "
                "batch to finish (admin: Statement batches) before generating again"
            )
        figures = statement_figures(period, pi_email=pi_email)
        excluded = excluded_summary(period, pi_email=pi_email)
        billable = {
            c: money_text(v)
            for c, v in billable_total(period, pi_email=pi_email, figures=figures).items()
        }
        if dry_run:
            existing = {
                gone_key(s): s
                for s in current_statements(period, pi_email).select_related("pi", "project")
            }
            plan = _plan(
                period=period,
                figures=figures,
                existing=existing,
                numbers=numbers_preview(period, figures),
                draft=draft,
                run=None,
            )
            rows = []
            for key, (s, f) in sorted(plan.shown.items(), key=lambda kv: _row_order(*kv[1])):
                row = _statement_row(f or s, number=s.number)
                row["change"], replaces = plan.actions[key]
                if replaces:
                    row["replaces"] = replaces
                rows.append(row)
            return GenerateResult(
                period=period.key,
                status="dry-run",
                draft=draft,
                changes=plan.changes,
                orphaned=plan.orphaned,
                statements=rows,
                total_due=_totals(rows),
                billable_total=billable,
                excluded=excluded,
                emails={"queued": 0, "sent": 0, "failed": 0},
            )
        result = _generate(
            period=period,
            figures=figures,
            draft=draft,
            pi_email=pi_email,
            send=send,
            resend=resend,
            acting_user=acting_user,
            actor=actor,
            config=config,
            excluded=excluded,
            billable=billable,
        )
    return generate_finish(result)


def _row_order(s: Statement, f: StatementFigures | None) -> tuple:
    if f is not None:
        return (f.pi_email, f.project_code, f.fund_org, f.currency)
    return (s.pi.email, s.project.code, s.fund_org, s.currency)


@dataclass
class GenerationPlan:
    """What a generation does, decided before anything is written: the dry run shows it, the
    real run applies it. Statements in `create` are unsaved (new groups and revisions)."""

    changes: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("new", "replaced", "revised", "unchanged", "removed"), 0
        )
    )
    create: list[tuple[Statement, StatementFigures]] = field(default_factory=list)
    replace: list[tuple[Statement, StatementFigures]] = field(default_factory=list)
    supersede: list[Statement] = field(default_factory=list)
    delete: list[Statement] = field(default_factory=list)
    old_files: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    # group key -> the number its current statement will have after this generation
    numbers: dict[tuple, str] = field(default_factory=dict)
    # group key -> (its current statement after this generation, the figures it shows; None
    # when kept as it is)
    shown: dict[tuple, tuple] = field(default_factory=dict)
    # group key -> (what happens to it: a key of `changes`, the number a revision replaces)
    actions: dict[tuple, tuple[str, str]] = field(default_factory=dict)


def _content_compared(current: Statement, f: StatementFigures) -> str:
    """The content hash to compare with `current`'s. A sent statement keeps the PI name it
    printed: a rename alone (the admin, the portal, an import filling an empty name) never
    makes a revision, in an open month or a closed one. A revision made for another reason, and
    every unsent statement, prints the current name (docs/statements.md, "PI names")."""
    if current.sent_at is not None and current.pi_email and current.pi_name != f.pi_name:
        return replace(f, pi_name=current.pi_name).content_hash()
    return f.content_hash()


def _is_unchanged(current: Statement, content: str, draft: bool) -> bool:
    if current.content_hash != content:
        return False
    if current.sent_at is not None:
        return True  # sent: kept as it is, even if the period reopened
    return (
        current.is_draft == draft
        and current.status in (Statement.Status.READY, Statement.Status.QUEUED)
        and bool(current.pdf_path)
    )


def _empty_figures(gone: Statement, note: str) -> StatementFigures:
    """The figures of a group that has no billable charges left: nothing due, and why."""
    empty = StatementFigures(gone.pi_id, gone.project_id, gone.fund_org, gone.currency)
    empty.pi_email, empty.pi_name = gone.pi.email, gone.pi.name
    empty.project_code, empty.project_name = gone.project.code, gone.project.name
    empty.note = note
    return empty


def _revision(current: Statement, f: StatementFigures, period: BillingPeriod) -> Statement:
    revision = current.revision + 1
    return Statement(
        period=period,
        pi_id=f.pi_id,
        project_id=f.project_id,
        fund_org=f.fund_org,
        currency=f.currency,
        base_number=current.base_number,
        number=f"{current.base_number}-R{revision}",
        revision=revision,
    )


def _plan(
    *,
    period: BillingPeriod,
    figures: list[StatementFigures],
    existing: dict[tuple, Statement],
    numbers: dict[tuple, str],
    draft: bool,
    run: StatementRun | None,
) -> GenerationPlan:
    """Decide, group by group, what happens to the current statements (see the lifecycle in
    statements/lifecycle.py):

    - a new group gets a new statement with its stable number;
    - an unchanged group keeps its statement (a sent one is never touched);
    - a changed group's unsent statement is replaced in place; a sent one gets a revision;
    - a group with no billable charges left: an unsent original is removed; a statement that
      was sent, or an unsent revision of one (the sent one points at it), becomes a 0.00
      revision saying why ("charges moved to statement …" or "no billable charges remain").
      Nothing that a sent statement points at is ever deleted.
    """
    plan = GenerationPlan()
    existing = dict(existing)

    def apply(current: Statement | None, f: StatementFigures, base: str | None) -> str:
        if current is None:
            action, statement = (
                "new",
                Statement(
                    period=period,
                    pi_id=f.pi_id,
                    project_id=f.project_id,
                    fund_org=f.fund_org,
                    currency=f.currency,
                    base_number=base,
                    number=base,
                ),
            )
            plan.create.append((statement, f))
        elif _is_unchanged(current, _content_compared(current, f), draft):
            action, statement = "unchanged", current
        elif current.sent_at is not None:
            phase_check(current, SUPERSEDED)
            action, statement = "revised", _revision(current, f, period)
            plan.create.append((statement, f))
            plan.supersede.append(current)
        else:
            phase_check(current, DRAFT if draft else FINAL)
            action, statement = "replaced", current
            if current.pdf_path:
                plan.old_files.append(current.pdf_path)
            current.version += 1
            plan.replace.append((current, f))
        if action != "unchanged":
            _fill(statement, f, draft=draft, run=run)
        plan.changes[action] += 1
        plan.actions[f.key] = (action, current.number if action == "revised" else "")
        plan.numbers[f.key] = statement.number
        plan.shown[f.key] = (statement, f)
        return action

    for f in figures:
        apply(existing.pop(f.key, None), f, numbers.get(f.key))
    for gone in existing.values():  # groups with no billable charges any more
        if gone.sent_at is None and gone.revision == 0:
            phase_check(gone, REMOVED)
            if gone.pdf_path:
                plan.old_files.append(gone.pdf_path)
            plan.delete.append(gone)
            plan.changes["removed"] += 1
            continue
        if gone.sent_at is not None and not (gone.due_amount or gone.list_amount):
            # Sent, and it already shows nothing due: nothing new to tell the PI.
            plan.changes["unchanged"] += 1
            plan.actions[gone_key(gone)] = ("unchanged", "")
            plan.numbers[gone_key(gone)] = gone.number
            plan.shown[gone_key(gone)] = (gone, None)
            continue
        moved = sorted(
            plan.numbers[f.key]
            for f in figures
            if (f.pi_id, f.project_id, f.currency) == (gone.pi_id, gone.project_id, gone.currency)
        )
        note = (
            f"No billable charges remain here: they moved to statement {', '.join(moved)}."
            if moved
            else "No billable charges remain on this statement."
        )
        if apply(gone, _empty_figures(gone, note), None) != "unchanged":
            plan.orphaned.append(gone.number)
    return plan


def gone_key(s: Statement) -> tuple:
    return (s.pi_id, s.project_id, s.fund_org, s.currency)


def _generate(
    *,
    period,
    figures,
    draft,
    pi_email,
    send,
    resend,
    acting_user,
    actor,
    config,
    excluded,
    billable,
) -> GenerateResult:
    run = StatementRun.objects.create(
        period=period,
        kind=StatementRun.Kind.GENERATE,
        pi_email=pi_email or "",
        draft=draft,
        send=send,
        resend=resend,
        acting_user=acting_user if getattr(acting_user, "pk", None) else None,
        actor=actor or actor_name(acting_user),
        settings_snapshot=config_snapshot(config),
    )
    numbers = numbers_for(period, figures)
    existing = {
        (s.pi_id, s.project_id, s.fund_org, s.currency): s
        for s in current_statements(period, pi_email)
        .select_related("pi", "project")
        .select_for_update(of=("self",))
    }
    plan = _plan(
        period=period, figures=figures, existing=existing, numbers=numbers, draft=draft, run=run
    )
    changes, to_create, replaced = plan.changes, plan.create, plan.replace
    superseded, old_files, orphaned = plan.supersede, plan.old_files, plan.orphaned
    for gone in plan.delete:
        gone.emails.clear()
        gone.delete()

    # Supersede first: the unique "one current per group" constraint must hold at every step.
    if superseded:
        Statement.objects.filter(pk__in=[s.pk for s in superseded]).update(
            superseded_by=models.F("pk")  # temporarily points at itself: not current
        )
    bulk_insert(Statement, [s for s, _ in to_create])
    revision_of = {(s.pi_id, s.project_id, s.fund_org, s.currency): s for s, _ in to_create}
    for old in superseded:
        old.superseded_by = revision_of[(old.pi_id, old.project_id, old.fund_org, old.currency)]
        old.save(update_fields=["superseded_by", "updated_at"])
    if replaced:
        StatementLine.objects.filter(statement__in=[s for s, _ in replaced]).delete()
        Statement.objects.bulk_update(
            [s for s, _ in replaced],
            [
                "is_draft",
                "status",
                "error",
                "list_amount",
                "discount_amount",
                "due_amount",
                "charge_count",
                "references",
                "pi_email",
                "pi_name",
                "project_code",
                "project_name",
                "note",
                "content_hash",
                "issued_on",
                "pdf_path",
                "pdf_sha256",
                "rendered_at",
                "run",
                "version",
                "updated_at",
            ],
            batch_size=1000,
        )
    lines = []
    for statement, f in [*to_create, *replaced]:
        lines.extend(_lines(statement, f))
    _insert_lines(lines)

    emails = queue_emails(run=run, period=period, pi_email=pi_email, resend=resend) if send else []
    summary = {
        "statements": len(figures),
        "changes": changes,
        "billable_total": billable,
        "excluded": excluded,
        "emails": len(emails),
        "orphaned": orphaned,
    }
    run.summary = summary
    run.save(update_fields=["summary"])
    audit_record(
        action="statement.generate",
        acting_user=acting_user,
        actor=run.actor,
        obj=run,
        after={"draft": draft, "send": send, "resend": resend, "pi": pi_email or ""},
        details=summary,
    )
    if old_files:
        transaction.on_commit(lambda: _delete_files(old_files))
    to_render = [s.pk for s, _ in [*to_create, *replaced]]
    transaction.on_commit(lambda: enqueue(to_render, [e.pk for e in emails]))
    return GenerateResult(
        period=period.key,
        status="generated",
        draft=draft,
        run_id=run.pk,
        changes=changes,
        billable_total=billable,
        excluded=excluded,
        orphaned=orphaned,
    )


def generate_finish(result: GenerateResult) -> GenerateResult:
    """Fill the result from the database after commit (tasks may have run in-process)."""
    run = StatementRun.objects.get(pk=result.run_id)
    statements = (
        current_statements(run.period, run.pi_email or None)
        .select_related("pi", "project")
        .order_by("pi__email", "project__code", "fund_org", "currency")
    )
    result.statements = [_statement_row(s) for s in statements]
    result.total_due = _totals(result.statements)
    result.emails = email_counts(run)
    return result


def email_counts(run: StatementRun) -> dict[str, int]:
    counts = {
        row["status"]: row["n"]
        for row in run.emails.values("status").annotate(n=models.Count("id")).order_by()
    }
    waiting = sum(counts.get(s, 0) for s in LIVE_EMAIL)
    return {
        "queued": waiting,
        "sent": counts.get(StatementEmail.Status.SENT, 0),
        "failed": counts.get(StatementEmail.Status.FAILED, 0),
    }


def _delete_files(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            pass


LINE_COLUMNS = (
    "statement_id", "kind", "position", "section", "category", "label", "service_name",
    "resource_id", "resource_name", "corrects_period", "quantity", "unit", "charge_count",
    "list_amount", "discount_amount", "due_amount",
)  # fmt: skip


def _insert_lines(rows: list[tuple]) -> None:
    """Statement lines in bulk: COPY on PostgreSQL (a 5,000-statement period has ~100,000
    lines; bulk_create spent most of its time building model instances and SQL)."""
    if connection.vendor != "postgresql":
        StatementLine.objects.bulk_create(
            [
                StatementLine(statement=row[0], **dict(zip(LINE_COLUMNS[1:], row[1:], strict=True)))
                for row in rows
            ],
            batch_size=2000,
        )
        return
    table = StatementLine._meta.db_table
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {table} ({', '.join(LINE_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((row[0].pk, *row[1:]))
