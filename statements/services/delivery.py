"""Delivery: queue statement emails, render PDFs, send each PI's email at most once.

Invariants:
- A statement is mailed once: `--send` skips statements already sent or waiting in an email,
  unless `resend` asks. Delivery state lives on StatementEmail rows (the outbox); every state
  change goes through statements/lifecycle.py.
- Rendering: a statement not in `rendering` is done; a statement regenerated while its PDF was
  being drawn (its `version` moved on) discards the stale PDF.
- Sending is at most once. The outbox row is claimed `queued → sending` and committed *before*
  the message goes to the mail server, and marked `sent` after it was accepted. A worker killed
  between the two leaves `sending`; the redelivered task sees it and does not send again: the
  email becomes `failed` ("interrupted, delivery unknown") and staff decide (admin → resend).
  The window is the SMTP conversation only: the message is built before the claim. On
  PostgreSQL a session advisory lock per email tells a live sender (lock held) from a dead one
  (lock released with its connection), so a duplicate task never takes a live sender's
  `sending` for an interruption.
- Nothing here writes a Statement row of a finalized period (the database refuses it): a resend
  of a finalized period's statements records itself in the outbox (StatementEmail,
  EmailAttempt) only.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
import socket
from collections import defaultdict
from contextlib import contextmanager
from email.utils import formataddr

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.mail import EmailMultiAlternatives
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.services import actor_name, audit_record
from billing.config import BillingConfig, load_config
from billing.models import BillingPeriod
from billing.money import cents_text
from billing.services import PeriodError, period_writable
from openchargeback import links

from ..figures import month_label
from ..lifecycle import EMAIL_LIVE, email_move, statement_move
from ..models import EmailAttempt, Statement, StatementEmail, StatementLine, StatementRun
from ..selectors import statement_pdf_data
from .common import StatementError, config_snapshot, current_statements

log = logging.getLogger(__name__)

LIVE_EMAIL = EMAIL_LIVE

ADVISORY_NAMESPACE = 48_412  # first key of pg_advisory_lock(int, int) for statement emails
MAX_SEND_RETRIES = 5
OPEN_EMAIL = [StatementEmail.Status.PENDING, StatementEmail.Status.QUEUED]


# ---------------------------------------------------------------------------------------------
# Rendering


def pdf_name(statement: Statement) -> str:
    return f"statements/{statement.period.key}/{statement.number}-v{statement.version}.pdf"


# Statements per render task. A task reads its statements and their lines in two queries and
# checks their PIs' emails once, so a batch costs a few tasks instead of one per statement; each
# statement still commits on its own (per-statement progress; a crash loses at most the one being
# drawn). `render_chunks` makes smaller chunks for small batches, so they spread over workers.
RENDER_CHUNK = 50
RENDER_MIN_TASKS = 16


def render_chunks(statement_ids: list[int]) -> list[list[int]]:
    """The statements split into the render tasks' chunks, in their order (the generation's
    order is by PI, so a PI's statements mostly share a chunk and their email is checked once)."""
    ids = list(statement_ids)
    size = max(1, min(RENDER_CHUNK, -(-len(ids) // RENDER_MIN_TASKS)))
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def statement_render(statement_id: int) -> str:
    """Draw one statement's PDF (`statements_render` of one); its outcome."""
    return statements_render([statement_id])[statement_id]


def statements_render(statement_ids: list[int]) -> dict[int, str]:
    """Draw the PDFs of a chunk of statements: store each, mark it ready, then queue the emails
    of PIs whose statements have all rendered. Returns each statement's outcome: rendered,
    failed (it can't be drawn: marked failed with the error), stale (regenerated meanwhile),
    done already, gone, or error (storing or recording it failed: it stays `rendering`, for a
    retry of the task or the batch's resume).

    Safe to run twice, at once or one after the other: a statement not in `rendering` is done,
    and each one commits by a conditional UPDATE of its own (see `_render_one`).
    """
    ids = list(dict.fromkeys(statement_ids))
    statements = {
        s.pk: s
        for s in Statement.objects.select_related("period", "pi", "project", "run").filter(
            pk__in=ids
        )
    }
    todo = [pk for pk in ids if pk in statements and statements[pk].status == "rendering"]
    lines: dict[int, list] = defaultdict(list)
    if todo:
        for line in StatementLine.objects.filter(statement_id__in=todo).order_by(
            "statement_id", "position"
        ):
            lines[line.statement_id].append(line)
    outcomes: dict[int, str] = {}
    for pk in ids:
        statement = statements.get(pk)
        if statement is None:
            outcomes[pk] = "gone"  # replaced by a regeneration that removed it
            continue
        if statement.status != Statement.Status.RENDERING:
            outcomes[pk] = "done already"
            continue
        try:
            outcomes[pk] = _render_one(statement, lines.get(pk, []))
        except Exception:  # storage or database: the others of the chunk still render
            log.exception("statement %s could not be stored", statement.number)
            outcomes[pk] = "error"
    # Also after "done already": a task that died between a statement's UPDATE and this check
    # queues the email on its redelivery.
    _after_render([pk for pk, outcome in outcomes.items() if outcome not in ("gone", "error")])
    return outcomes


def render_pdf(data) -> bytes:
    """statements.pdf.render_pdf, imported when a statement is first drawn: it brings reportlab
    (0.06 s), and the admin imports this module at every start-up."""
    from ..pdf import render_pdf as draw

    return draw(data)


def _render_one(statement: Statement, lines: list) -> str:
    version = statement.version
    try:
        content = render_pdf(statement_pdf_data(statement, lines=lines))
    except Exception as exc:  # a statement that cannot be drawn must not stop the batch
        log.exception("statement %s could not be rendered", statement.number)
        with transaction.atomic():
            locked = Statement.objects.select_for_update().get(pk=statement.pk)
            if locked.version == version and locked.status == Statement.Status.RENDERING:
                statement_move(locked, Statement.Status.FAILED)
                locked.error = f"rendering failed: {type(exc).__name__}: {exc}"
                locked.save(update_fields=["status", "error", "updated_at"])
        return "failed"
    # Never delete-then-write a shared name: two deliveries of this task may run at once (acks
    # late, a regeneration's on-commit render beside a worker's). Each saves under a name of its
    # own (the storage adds a suffix when the name is taken); the conditional UPDATE below picks
    # one, and the other deletes only the file it wrote.
    stored = default_storage.save(pdf_name(statement), ContentFile(content))
    now = timezone.now()
    # One conditional UPDATE: only the version that was drawn, only if still rendering.
    current = Statement.objects.filter(
        pk=statement.pk, version=version, status=Statement.Status.RENDERING
    ).update(
        pdf_path=stored,
        pdf_sha256=hashlib.sha256(content).hexdigest(),
        status=Statement.Status.READY,
        rendered_at=now,
        updated_at=now,
        error="",
    )
    if not current:
        if not Statement.objects.filter(pk=statement.pk, pdf_path=stored).exists():
            default_storage.delete(stored)
        return "stale"
    return "rendered"


def _after_render(statement_ids: list[int]) -> None:
    if not statement_ids:
        return
    ids = list(
        StatementEmail.objects.filter(statements__pk__in=statement_ids, status__in=OPEN_EMAIL)
        .values_list("pk", flat=True)
        .distinct()
    )
    if ids:
        email_check_ready(ids)


# ---------------------------------------------------------------------------------------------
# Sending


def classify(exc: BaseException) -> str:
    """'transient' (retry with backoff) or 'permanent' (record and stop)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return "transient" if codes and all(400 <= c < 500 for c in codes) else "permanent"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return "transient"
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        return "transient" if code < 0 or 400 <= code < 500 else "permanent"
    if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout, socket.gaierror)):
        return "transient"
    return "permanent"


@contextmanager
def email_sender_lock(email_id: int):
    """True when this process may act on the email: no other live worker is sending it."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [ADVISORY_NAMESPACE, email_id])
        got = cursor.fetchone()[0]
    try:
        yield got
    finally:
        if got:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [ADVISORY_NAMESPACE, email_id])


class _SafeFormat(dict):
    def __missing__(self, key):
        return "{" + key + "}"


def build_message(email: StatementEmail, attempt: int) -> EmailMultiAlternatives:
    """The email: subject from the configured template, text and HTML from the templates
    statements/email/body.txt and body.html, every statement attached."""
    snapshot = email.run.settings_snapshot or {}
    conf = snapshot.get("email", {})
    period = email.run.period.key
    statements = list(email.statements.select_related("pi", "project").order_by("number"))
    context = {
        "pi": email.pi,
        # As the statements print it (their snapshot), so a later rename changes no resend.
        "pi_name": (statements[0].printed()["pi_name"] if statements else email.pi.name)
        or email.to_address,
        "period": period,
        "period_label": month_label(period),
        "institution": snapshot.get("institution", ""),
        "contact_email": snapshot.get("contact_email", ""),
        "portal_url": links.absolute_reverse("portal:home"),
        "statements": [
            {
                "number": s.number,
                "project": s.printed()["project_code"],
                "fund_org": s.fund_org,
                "currency": s.currency,
                "list": cents_text(s.list_amount),  # as the PDF shows them (statements.pdf.money)
                "discount": cents_text(s.discount_amount),
                "amount_due": cents_text(s.due_amount),
                "revision": s.revision,
            }
            for s in statements
        ],
        "count": len(statements),
    }
    template = conf.get("subject_template") or "Research computing statement for {period}"
    subject = template.format_map(
        _SafeFormat(
            period=period,
            period_label=context["period_label"],
            pi_name=context["pi_name"],
            pi_email=email.pi.email,
            institution=context["institution"],
            count=len(statements),
        )
    )
    subject = " ".join(subject.split())[:250]
    text = render_to_string("statements/email/body.txt", context)
    html = render_to_string("statements/email/body.html", context)
    from_address = conf.get("from_address") or settings.DEFAULT_FROM_EMAIL
    domain = from_address.rpartition("@")[2] or "openchargeback.local"
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=formataddr((conf.get("from_name", ""), from_address)),
        to=[email.to_address],
        headers={"Message-ID": f"<statement-email-{email.pk}.{attempt}@{domain}>"},
    )
    message.attach_alternative(html, "text/html")
    for s in statements:
        with default_storage.open(s.pdf_path, "rb") as fh:
            message.attach(f"{s.number}.pdf", fh.read(), "application/pdf")
    return message


def _record(email: StatementEmail, attempt: EmailAttempt, outcome: str, error: str = "") -> None:
    attempt.outcome = outcome
    attempt.error = error
    attempt.finished_at = timezone.now()
    attempt.save(update_fields=["outcome", "error", "finished_at"])
    audit_record(
        action=f"statement.email.{outcome}",
        actor=f"worker:{attempt.worker}" if attempt.worker else "worker",
        obj=email,
        after={"status": email.status, "attempt": attempt.number},
        details={
            "to": email.to_address,
            "statements": [s.number for s in email.statements.all()],
            "message_id": attempt.message_id,
        },
        reason=error,
    )


def _frozen(email: StatementEmail) -> bool:
    """A finalized period's statements are never written again (the database refuses it):
    the outbox row alone records what happened to a resend."""
    return BillingPeriod.objects.filter(
        pk=email.run.period_id, status=BillingPeriod.Status.FINALIZED
    ).exists()


def _fail_statements(email: StatementEmail, error: str, *, maybe_sent: bool = False) -> None:
    if _frozen(email):
        return
    for s in email.statements.select_for_update().filter(sent_at__isnull=True):
        # A statement sent before (a resend failed) stays sent: only unsent ones change.
        statement_move(s, Statement.Status.FAILED)
        s.error = error
        fields = ["status", "error", "updated_at"]
        if maybe_sent:
            s.sent_at = timezone.now()  # may have reached the PI: kept, revised on change
            fields.append("sent_at")
        s.save(update_fields=fields)


def email_send_attempt(email_id: int, *, retries: int, worker: str) -> str | BaseException:
    """One attempt to send one PI's email (at most once). Returns the outcome, or the
    exception to retry on (a transient failure, `retries` below the limit)."""
    email = StatementEmail.objects.select_related("run__period", "pi").filter(pk=email_id).first()
    if email is None:
        return "gone"
    if email.status in (StatementEmail.Status.SENT, StatementEmail.Status.FAILED):
        return email.status
    if email.status == StatementEmail.Status.PENDING:
        return "waiting for statements"
    try:
        message = build_message(email, email.attempts + 1) if email.status == "queued" else None
    except Exception as exc:
        error = f"could not build the message: {type(exc).__name__}: {exc}"
        with transaction.atomic():
            email = StatementEmail.objects.select_for_update().get(pk=email_id)
            if email.status != StatementEmail.Status.QUEUED:
                return email.status
            email_move(email, StatementEmail.Status.FAILED)
            email.error = error
            email.attempts += 1
            email.save(update_fields=["status", "error", "attempts", "updated_at"])
            attempt = EmailAttempt.objects.create(email=email, number=email.attempts, worker=worker)
            _fail_statements(email, error)
            _record(email, attempt, EmailAttempt.Outcome.PERMANENT, error)
        return "failed"

    # Claim: committed before the mail server sees anything.
    with transaction.atomic():
        email = StatementEmail.objects.select_for_update().get(pk=email_id)
        if email.status == StatementEmail.Status.SENDING:
            # A previous attempt died after the claim: it may have been delivered. Never again.
            attempt = email.log.order_by("-number").first()
            error = (
                "interrupted while sending: the message may have been delivered "
                f"(Message-ID {attempt.message_id if attempt else '?'}); not sent again so that "
                "nobody is mailed twice. Check the mail server's log, then resend if needed."
            )
            email_move(email, StatementEmail.Status.FAILED)
            email.error = error
            email.save(update_fields=["status", "error", "updated_at"])
            _fail_statements(email, error, maybe_sent=True)
            if attempt is not None:
                _record(email, attempt, EmailAttempt.Outcome.INTERRUPTED, error)
            return "interrupted"
        if email.status != StatementEmail.Status.QUEUED:
            return email.status
        email_move(email, StatementEmail.Status.SENDING)
        email.attempts += 1
        email.subject = message.subject
        email.save(update_fields=["status", "attempts", "subject", "updated_at"])
        attempt = EmailAttempt.objects.create(
            email=email,
            number=email.attempts,
            worker=worker,
            message_id=message.extra_headers["Message-ID"],
        )

    try:
        message.send(fail_silently=False)
    except Exception as exc:
        kind = classify(exc)
        error = f"{type(exc).__name__}: {exc}"
        retry = kind == "transient" and retries < MAX_SEND_RETRIES
        with transaction.atomic():
            email = StatementEmail.objects.select_for_update().get(pk=email_id)
            if retry:
                email_move(email, StatementEmail.Status.QUEUED)
                email.error = f"will retry: {error}"
            else:
                if kind == "transient":
                    error = f"gave up after {email.attempts} attempts: {error}"
                email_move(email, StatementEmail.Status.FAILED)
                email.error = error
                _fail_statements(email, error)
            email.save(update_fields=["status", "error", "updated_at"])
            _record(
                email,
                attempt,
                EmailAttempt.Outcome.TRANSIENT if retry else EmailAttempt.Outcome.PERMANENT,
                error,
            )
        return exc if retry else "failed"

    # Accepted by the mail server: record it. (A crash here is the at-most-once window.)
    with transaction.atomic():
        email = StatementEmail.objects.select_for_update().get(pk=email_id)
        now = timezone.now()
        email_move(email, StatementEmail.Status.SENT)
        email.error = ""
        email.message_id = attempt.message_id
        email.sent_at = now
        email.save(update_fields=["status", "error", "message_id", "sent_at", "updated_at"])
        # Statements already sent (a resend) are left as they are, and a finalized period's
        # are never written: the outbox row records this send.
        unsent = email.statements.select_for_update().exclude(status=Statement.Status.SENT)
        for s in [] if _frozen(email) else unsent:
            statement_move(s, Statement.Status.SENT)
            s.error = ""
            s.sent_at = s.sent_at or now
            s.save(update_fields=["status", "error", "sent_at", "updated_at"])
        _record(email, attempt, EmailAttempt.Outcome.SENT)
    return "sent"


# ---------------------------------------------------------------------------------------------
# Email queueing


def enqueue(statement_ids: list[int], email_ids: list[int]) -> None:
    """Render tasks (chunks of statements), then send tasks of emails already queued (call
    after commit)."""
    from openchargeback.celery import app

    from ..tasks import render_statements_task, send_statement_email_task

    chunks = render_chunks(statement_ids)
    if app.conf.task_always_eager:  # in-process: no broker to talk to
        for chunk in chunks:
            render_statements_task.delay(chunk)
        for pk in email_ids:
            if StatementEmail.objects.filter(pk=pk, status=StatementEmail.Status.QUEUED).exists():
                send_statement_email_task.delay(pk)
        return
    # One producer (one broker connection) for the whole batch.
    with app.producer_or_acquire() as producer:
        for chunk in chunks:
            render_statements_task.apply_async((chunk,), producer=producer)
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


def queue_emails(
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
        statements = current_statements(period, pi_email)
    statements = statements.filter(is_draft=False).exclude(emails__status__in=LIVE_EMAIL)
    if run.kind != StatementRun.Kind.GENERATE:
        # Outside a generation, only statements already drawn: their render tasks are done
        # and do not look for emails (`_after_render`).
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
                email_move(email, StatementEmail.Status.FAILED)
                email.error = "not rendered: " + "; ".join(
                    f"{s.number}: {s.error or 'no PDF'}" for s in broken
                )
                email.save(update_fields=["status", "error", "updated_at"])
                continue
            email_move(email, StatementEmail.Status.QUEUED)
            email.queued_at = timezone.now()
            email.save(update_fields=["status", "queued_at", "updated_at"])
            for s in [] if _frozen(email) else items:
                if s.sent_at is None and s.status != Statement.Status.QUEUED:
                    statement_move(s, Statement.Status.QUEUED)
                    s.save(update_fields=["status", "updated_at"])
            ready.append(email.pk)
        if enqueue and ready:
            from ..tasks import send_statement_email_task

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
    statements = current_statements(period, pi_email)
    if statement_ids is not None:
        statements = Statement.objects.filter(pk__in=statement_ids, period=period)
    emails = queue_emails(
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
    transaction.on_commit(lambda: enqueue([], [e.pk for e in emails]))
    return run


@transaction.atomic
def email_resend(*, email: StatementEmail, acting_user=None, actor: str = "") -> StatementEmail:
    """Mail an email's statements again (their current versions), as a new outbox row.

    Works for a finalized period too: its statements are not written, the new outbox row (and
    its attempts) record the resend."""
    period = BillingPeriod.objects.select_for_update().get(pk=email.run.period_id)
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
    emails = queue_emails(
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
    transaction.on_commit(lambda: enqueue([], [new.pk]))
    return new


def statement_send_refusal(statement: Statement) -> str:
    """Why this one statement can't be sent (or sent again) now; empty when it can."""
    if statement.is_draft:
        return "it is a draft; close the period and generate final statements first"
    if statement.superseded_by_id is not None:
        return f"it was replaced by {statement.superseded_by.number}; send that one"
    if statement.status == Statement.Status.RENDERING or not statement.pdf_path:
        return "its PDF is not drawn yet" + (f" ({statement.error})" if statement.error else "")
    if not statement.due_amount and not statement.list_amount:
        return "it is a zero statement: nothing is due and nothing was used"
    if not (statement.pi.email or "").strip():
        return "its PI has no email address"
    if statement.emails.filter(status__in=LIVE_EMAIL).exists():
        return "it is already waiting in an email; let that one finish"
    if statement.period.is_locked() and statement.sent_at is None:
        return (
            f"period {statement.period.key} is finalized and this statement was never sent; "
            "a finalized period's statements can only be sent again"
        )
    return ""


@transaction.atomic
def statement_send_one(
    *,
    statement: Statement,
    acting_user=None,
    actor: str = "",
    config: BillingConfig | None = None,
) -> StatementEmail:
    """Send one statement to its PI, or send it again: a new outbox row of its own.

    Refused, with the reason (`statement_send_refusal`), for a draft, a replaced statement, one
    without its PDF, a zero statement, a PI without an email address, a statement already
    waiting in an email, and a finalized period's statement that was never sent. A resend in a
    finalized period is recorded in the outbox only, as `email_resend` does.
    """
    period = BillingPeriod.objects.select_for_update().get(pk=statement.period_id)
    statement = Statement.objects.select_related("period", "pi", "superseded_by").get(
        pk=statement.pk
    )
    problem = statement_send_refusal(statement)
    if problem:
        raise StatementError(f"{statement.number} can't be sent: {problem}")
    config = config or load_config()
    resend = statement.sent_at is not None
    run = StatementRun.objects.create(
        period=period,
        kind=StatementRun.Kind.SEND,
        pi_email=statement.pi.email,
        send=True,
        resend=resend,
        acting_user=acting_user if getattr(acting_user, "pk", None) else None,
        actor=actor or actor_name(acting_user),
        settings_snapshot=config_snapshot(config),
    )
    emails = queue_emails(
        run=run,
        period=period,
        pi_email=None,
        resend=True,
        statements=Statement.objects.filter(pk=statement.pk),
    )
    if not emails:  # the checks above make this unreachable; never send nothing silently
        raise StatementError(f"{statement.number} can't be sent: nothing was queued")
    email = emails[0]
    run.summary = {"emails": 1, "statements": 1}
    run.save(update_fields=["summary"])
    audit_record(
        action="statement.resend_one" if resend else "statement.send_one",
        acting_user=acting_user,
        actor=run.actor,
        obj=email,
        after={"email": email.pk, "status": email.status, "to": email.to_address},
        details={"statement": statement.number},
    )
    transaction.on_commit(lambda: enqueue([], [email.pk]))
    return email


def statement_run_resume(*, run: StatementRun) -> dict[str, int]:
    """Enqueue again what a batch still waits for (after a broker or worker loss). Idempotent:
    tasks skip what is done and claim rows before acting."""
    from ..tasks import render_statements_task

    rendering = list(
        run.statements.filter(status=Statement.Status.RENDERING)
        .order_by("pi__email", "number")
        .values_list("pk", flat=True)
    )
    for chunk in render_chunks(rendering):
        render_statements_task.delay(chunk)
    waiting = list(
        run.emails.filter(
            status__in=[StatementEmail.Status.PENDING, StatementEmail.Status.QUEUED]
        ).values_list("pk", flat=True)
    )
    queued = email_check_ready(waiting)
    return {"rendering": len(rendering), "emails": len(queued)}
