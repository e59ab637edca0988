"""Writes for statements: generate them, queue their emails, resend, resume a batch.

Invariants:
- A finalized period refuses every write (checked under the period's row lock). Final
  statements need a closed period; an open period gets drafts (DRAFT on every page); drafts are
  never mailed.
- One current statement per (period, PI, project, fund/org, currency); its base number never
  changes (`StatementNumber`). Before it is sent, regenerating replaces it; once sent (or maybe
  sent), it is kept with its PDF and hash, and a change makes a revision "<number>-R<n>".
- Figures come from statements.figures only (one rounding rule, shared with the journal).
- A statement is mailed once: `--send` skips statements already sent or waiting in an email,
  unless `resend` asks. Delivery state lives on StatementEmail rows (the outbox; see tasks.py).
- Each change is one transaction with its audit event; tasks are enqueued after commit.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import yaml
from django.core.files.storage import default_storage
from django.db import connection, models, transaction
from django.utils import timezone

from accounts.services import actor_name, audit_record
from billing.config import BillingConfig, load_config
from billing.models import PI, BillingPeriod
from billing.money import exact_sum, money_text
from billing.services import PeriodError, period_writable

from .figures import (
    REFERENCE_FIELDS,
    StatementFigures,
    billable_total,
    excluded_summary,
    statement_figures,
)
from .models import Statement, StatementEmail, StatementLine, StatementRun

NUMBER_PREFIX = "ST"
LIVE_EMAIL = (
    StatementEmail.Status.PENDING,
    StatementEmail.Status.QUEUED,
    StatementEmail.Status.SENDING,
)


class StatementError(Exception):
    """A statement operation that isn't allowed; the message says why."""


# ---------------------------------------------------------------------------------------------
# Configuration the statements show, frozen on the batch so every worker renders the same thing.


def _logo_path(config: BillingConfig) -> str:
    """`institution.logo` from the configuration (a path, relative to the file's folder)."""
    logo = getattr(config, "logo", "") or ""
    if not logo and config.path:
        try:
            data = yaml.safe_load(Path(config.path).read_text(encoding="utf-8")) or {}
            logo = (
                ((data.get("institution") or {}).get("logo") or "")
                if isinstance(data, dict)
                else ""
            )
        except (OSError, yaml.YAMLError, AttributeError):
            logo = ""
    if logo and config.path and not Path(logo).is_absolute():
        logo = str(Path(config.path).resolve().parent / logo)
    return str(logo)


def reference_labels(config: BillingConfig) -> dict[str, str]:
    """reference_1 -> "Grant number" (from the tag it comes from), cost_center -> "Cost center"."""
    labels = {}
    for name in REFERENCE_FIELDS:
        tag = config.tag_mapping.get(name, name)
        labels[name] = tag.replace("_", " ").strip().capitalize() or name
    return labels


def config_snapshot(config: BillingConfig) -> dict:
    return {
        "institution": config.institution_name,
        "contact_email": config.contact_email,
        "logo": _logo_path(config),
        "currency": config.currency,
        "reference_labels": reference_labels(config),
        "email": {
            "from_address": config.email.from_address,
            "from_name": config.email.from_name,
            "subject_template": config.email.subject_template,
        },
    }


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


def storage_path(name: str) -> str | None:
    """A stored PDF's path on disk (or its storage name when the storage has no paths)."""
    if not name:
        return None
    try:
        return default_storage.path(name)
    except NotImplementedError:
        return name


def _totals(rows: list[dict]) -> dict[str, str]:
    by_currency: dict[str, list[Decimal]] = defaultdict(list)
    for row in rows:
        by_currency[row["currency"]].append(Decimal(row["amount_due"]))
    return {c: money_text(exact_sum(v)) for c, v in sorted(by_currency.items())}


# ---------------------------------------------------------------------------------------------
# Numbers


def _numbers_for(period: BillingPeriod, figures: list[StatementFigures]) -> dict[tuple, str]:
    """The stable base number of each group, assigning new ones in the figures' order."""
    from .models import StatementNumber

    known = {
        (n.pi_id, n.project_id, n.fund_org, n.currency): n.base_number
        for n in StatementNumber.objects.filter(period=period)
    }
    seq = StatementNumber.objects.filter(period=period).aggregate(m=models.Max("seq"))["m"] or 0
    new = []
    for f in figures:
        if f.key not in known:
            seq += 1
            number = f"{NUMBER_PREFIX}-{period.key.replace('-', '')}-{seq:05d}"
            known[f.key] = number
            new.append(
                StatementNumber(
                    period=period,
                    pi_id=f.pi_id,
                    project_id=f.project_id,
                    fund_org=f.fund_org,
                    currency=f.currency,
                    seq=seq,
                    base_number=number,
                )
            )
    _bulk_insert(StatementNumber, new)
    return known


# ---------------------------------------------------------------------------------------------
# Generate


def _fill(statement: Statement, f: StatementFigures, *, draft: bool, run: StatementRun) -> None:
    statement.is_draft = draft
    statement.status = Statement.Status.RENDERING
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
    return out


def _current(period: BillingPeriod, pi_email: str | None):
    qs = Statement.objects.filter(period=period, superseded_by__isnull=True)
    if pi_email:
        qs = qs.filter(pi__email=pi_email)
    return qs


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
        billable = {c: money_text(v) for c, v in billable_total(period, pi_email=pi_email).items()}
        if dry_run:
            existing = {
                gone_key(s): s for s in _current(period, pi_email).select_related("pi", "project")
            }
            plan = _plan(
                period=period,
                figures=figures,
                existing=existing,
                numbers=_numbers_preview(period, figures),
                draft=draft,
                run=None,
            )
            rows = [
                _statement_row(f or s, number=s.number)
                for s, f in sorted(plan.shown.values(), key=lambda sf: _row_order(*sf))
            ]
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
    return _finish(result)


def _row_order(s: Statement, f: StatementFigures | None) -> tuple:
    if f is not None:
        return (f.pi_email, f.project_code, f.fund_org, f.currency)
    return (s.pi.email, s.project.code, s.fund_org, s.currency)


def _numbers_preview(period, figures) -> dict[tuple, str]:
    from .models import StatementNumber

    known = {
        (n.pi_id, n.project_id, n.fund_org, n.currency): n.base_number
        for n in StatementNumber.objects.filter(period=period)
    }
    seq = StatementNumber.objects.filter(period=period).aggregate(m=models.Max("seq"))["m"] or 0
    for f in figures:
        if f.key not in known:
            seq += 1
            known[f.key] = f"{NUMBER_PREFIX}-{period.key.replace('-', '')}-{seq:05d}"
    return known


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
        elif _is_unchanged(current, f.content_hash(), draft):
            action, statement = "unchanged", current
        elif current.sent_at is not None:
            action, statement = "revised", _revision(current, f, period)
            plan.create.append((statement, f))
            plan.supersede.append(current)
        else:
            action, statement = "replaced", current
            if current.pdf_path:
                plan.old_files.append(current.pdf_path)
            current.version += 1
            plan.replace.append((current, f))
        if action != "unchanged":
            _fill(statement, f, draft=draft, run=run)
        plan.changes[action] += 1
        plan.numbers[f.key] = statement.number
        plan.shown[f.key] = (statement, f)
        return action

    for f in figures:
        apply(existing.pop(f.key, None), f, numbers.get(f.key))
    for gone in existing.values():  # groups with no billable charges any more
        if gone.sent_at is None and gone.revision == 0:
            if gone.pdf_path:
                plan.old_files.append(gone.pdf_path)
            plan.delete.append(gone)
            plan.changes["removed"] += 1
            continue
        if gone.sent_at is not None and not (gone.due_amount or gone.list_amount):
            # Sent, and it already shows nothing due: nothing new to tell the PI.
            plan.changes["unchanged"] += 1
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
    numbers = _numbers_for(period, figures)
    existing = {
        (s.pi_id, s.project_id, s.fund_org, s.currency): s
        for s in _current(period, pi_email)
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
    _bulk_insert(Statement, [s for s, _ in to_create])
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

    emails = _queue_emails(run=run, period=period, pi_email=pi_email, resend=resend) if send else []
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
    transaction.on_commit(lambda: _enqueue(to_render, [e.pk for e in emails]))
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


def _finish(result: GenerateResult) -> GenerateResult:
    """Fill the result from the database after commit (tasks may have run in-process)."""
    run = StatementRun.objects.get(pk=result.run_id)
    statements = (
        _current(run.period, run.pi_email or None)
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


def _bulk_insert(model, objs: list) -> None:
    """bulk_create, by COPY on PostgreSQL with ids drawn from the table's sequence first."""
    if not objs:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(objs, batch_size=1000)
        return
    table = model._meta.db_table
    fields = model._meta.concrete_fields
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [table, len(objs)],
        )
        ids = [row[0] for row in cursor.fetchall()]
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for obj, pk in zip(objs, ids, strict=True):
                obj.pk = pk
                obj._state.adding = False
                copy.write_row(
                    [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
                )


def _enqueue(statement_ids: list[int], email_ids: list[int]) -> None:
    from openchargeback.celery import app

    from .tasks import render_statement_task, send_statement_email_task

    if app.conf.task_always_eager:  # in-process: no broker to talk to
        for pk in statement_ids:
            render_statement_task.delay(pk)
        for pk in email_ids:
            if StatementEmail.objects.filter(pk=pk, status=StatementEmail.Status.QUEUED).exists():
                send_statement_email_task.delay(pk)
        return
    # One producer (one broker connection) for the whole batch.
    with app.producer_or_acquire() as producer:
        for pk in statement_ids:
            render_statement_task.apply_async((pk,), producer=producer)
        queued = set(
            StatementEmail.objects.filter(
                pk__in=email_ids, status=StatementEmail.Status.QUEUED
            ).values_list("pk", flat=True)
        )
        for pk in email_ids:
            # Emails whose statements were all ready already; the others are queued by the
            # last render task of their PI.
            if pk in queued:
                send_statement_email_task.apply_async((pk,), producer=producer)


# ---------------------------------------------------------------------------------------------
# Email queueing


def _queue_emails(
    *,
    run: StatementRun,
    period: BillingPeriod,
    pi_email: str | None,
    resend: bool,
    statements=None,
) -> list[StatementEmail]:
    """One outbox row per PI with the statements to mail. Call inside the transaction.

    Skips drafts, statements already in a live email, and (unless `resend`) statements sent.
    """
    if statements is None:
        statements = _current(period, pi_email)
    statements = statements.filter(is_draft=False).exclude(emails__status__in=LIVE_EMAIL)
    if run.kind != StatementRun.Kind.GENERATE:
        # Outside a generation, only statements already drawn: their render tasks are done
        # and do not look for emails (tasks._after_render).
        statements = statements.exclude(status=Statement.Status.RENDERING)
    if not resend:
        statements = statements.filter(sent_at__isnull=True)
    by_pi: dict[int, list[Statement]] = defaultdict(list)
    for s in statements.select_related("pi").order_by("pi_id", "number"):
        by_pi[s.pi_id].append(s)
    emails = []
    for items in by_pi.values():
        pi = items[0].pi
        email = StatementEmail.objects.create(run=run, pi=pi, to_address=pi.email)
        email.statements.add(*items)
        emails.append(email)
    email_check_ready([e.pk for e in emails], enqueue=False)
    return emails


def email_check_ready(email_ids: list[int], *, enqueue: bool = True) -> list[int]:
    """pending → queued for each email whose statements have all rendered; a rendering failure
    fails the email. Already queued emails are enqueued again (harmless: the send task claims
    the row). Returns the ids to send. Runs in its own transaction (or the caller's)."""
    ready = []
    with transaction.atomic():
        emails = StatementEmail.objects.select_for_update().filter(
            pk__in=email_ids,
            status__in=[StatementEmail.Status.PENDING, StatementEmail.Status.QUEUED],
        )
        for email in emails.order_by("pk"):
            if email.status == StatementEmail.Status.QUEUED:
                ready.append(email.pk)
                continue
            items = list(email.statements.select_for_update().order_by("pk"))
            if any(s.status == Statement.Status.RENDERING for s in items):
                continue
            broken = [s for s in items if not s.pdf_path]
            if broken:
                email.status = StatementEmail.Status.FAILED
                email.error = "not rendered: " + "; ".join(
                    f"{s.number}: {s.error or 'no PDF'}" for s in broken
                )
                email.save(update_fields=["status", "error", "updated_at"])
                continue
            email.status = StatementEmail.Status.QUEUED
            email.queued_at = timezone.now()
            email.save(update_fields=["status", "queued_at", "updated_at"])
            for s in items:
                if s.sent_at is None:
                    s.status = Statement.Status.QUEUED
                    s.save(update_fields=["status", "updated_at"])
            ready.append(email.pk)
        if enqueue and ready:
            from .tasks import send_statement_email_task

            ids = list(ready)
            transaction.on_commit(lambda: [send_statement_email_task.delay(pk) for pk in ids])
    return ready


@transaction.atomic
def statement_send(
    *,
    period_key: str,
    pi_email: str | None = None,
    resend: bool = False,
    statement_ids: list[int] | None = None,
    acting_user=None,
    actor: str = "",
    config: BillingConfig | None = None,
) -> StatementRun:
    """Mail the period's current final statements (or the given ones) that were not sent."""
    config = config or load_config()
    pi_email = (pi_email or "").strip().lower() or None
    period = BillingPeriod.objects.filter(key=period_key).first()
    if period is None:
        raise StatementError(f"period {period_key} does not exist")
    try:
        period = period_writable(period, what="be mailed")
    except PeriodError as exc:
        raise StatementError(str(exc)) from None
    run = StatementRun.objects.create(
        period=period,
        kind=StatementRun.Kind.SEND,
        pi_email=pi_email or "",
        draft=False,
        send=True,
        resend=resend,
        acting_user=acting_user if getattr(acting_user, "pk", None) else None,
        actor=actor or actor_name(acting_user),
        settings_snapshot=config_snapshot(config),
    )
    statements = _current(period, pi_email)
    if statement_ids is not None:
        statements = Statement.objects.filter(pk__in=statement_ids, period=period)
    emails = _queue_emails(
        run=run, period=period, pi_email=pi_email, resend=resend, statements=statements
    )
    run.summary = {"emails": len(emails), "statements": sum(e.statements.count() for e in emails)}
    run.save(update_fields=["summary"])
    audit_record(
        action="statement.send",
        acting_user=acting_user,
        actor=run.actor,
        obj=run,
        after={"resend": resend, "pi": pi_email or ""},
        details={**run.summary, "pis": [e.to_address for e in emails]},
    )
    transaction.on_commit(lambda: _enqueue([], [e.pk for e in emails]))
    return run


@transaction.atomic
def email_resend(*, email: StatementEmail, acting_user=None, actor: str = "") -> StatementEmail:
    """Mail an email's statements again (their current versions), as a new outbox row."""
    period = email.run.period
    try:
        period_writable(period, what="be mailed")
    except PeriodError as exc:
        raise StatementError(str(exc)) from None
    current = []
    for s in email.statements.all():
        while s.superseded_by_id is not None:
            s = s.superseded_by
        current.append(s.pk)
    run = StatementRun.objects.create(
        period=period,
        kind=StatementRun.Kind.SEND,
        pi_email=email.pi.email,
        send=True,
        resend=True,
        acting_user=acting_user if getattr(acting_user, "pk", None) else None,
        actor=actor or actor_name(acting_user),
        settings_snapshot=email.run.settings_snapshot,
    )
    emails = _queue_emails(
        run=run,
        period=period,
        pi_email=None,
        resend=True,
        statements=Statement.objects.filter(pk__in=current),
    )
    if not emails:
        raise StatementError(
            f"nothing to resend for {email.to_address}: its statements are drafts or already "
            "waiting in another email"
        )
    new = emails[0]
    new.resend_of = email
    new.save(update_fields=["resend_of"])
    audit_record(
        action="statement.resend",
        acting_user=acting_user,
        actor=run.actor,
        obj=new,
        before={"email": email.pk, "status": email.status},
        after={"email": new.pk, "status": new.status},
        details={"statements": [s.number for s in new.statements.all()]},
    )
    transaction.on_commit(lambda: _enqueue([], [new.pk]))
    return new


def statement_run_resume(*, run: StatementRun) -> dict[str, int]:
    """Enqueue again what a batch still waits for (after a broker or worker loss). Idempotent:
    tasks skip what is done and claim rows before acting."""
    from .tasks import render_statement_task

    rendering = list(
        run.statements.filter(status=Statement.Status.RENDERING).values_list("pk", flat=True)
    )
    for pk in rendering:
        render_statement_task.delay(pk)
    waiting = list(
        run.emails.filter(
            status__in=[StatementEmail.Status.PENDING, StatementEmail.Status.QUEUED]
        ).values_list("pk", flat=True)
    )
    queued = email_check_ready(waiting)
    return {"rendering": len(rendering), "emails": len(queued)}
