"""Celery tasks: render one statement, send one PI's email. They take primary keys, re-read the
rows and are idempotent, so a redelivered task (a worker killed mid-batch) does no harm.

Rendering: a statement not in `rendering` is done; a statement regenerated while its PDF was
being drawn (its `version` moved on) discards the stale PDF.

Sending is at most once. The outbox row (StatementEmail) is claimed `queued → sending` and
committed *before* the message goes to the mail server, and marked `sent` after it was
accepted. A worker killed between the two leaves `sending`; the redelivered task sees it and
does not send again: the email becomes `failed` ("interrupted, delivery unknown") and staff
decide (admin → resend). The window is the SMTP conversation only: the message is built before
the claim. On PostgreSQL a session advisory lock per email tells a live sender (lock held) from
a dead one (lock released with its connection), so a duplicate task never takes a live
sender's `sending` for an interruption.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
import socket
import time
from contextlib import contextmanager
from email.utils import formataddr

from celery import shared_task
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.mail import EmailMultiAlternatives
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.services import audit_record

from .figures import month_label
from .models import EmailAttempt, Statement, StatementEmail
from .pdf import money, render_pdf
from .selectors import statement_pdf_data
from .services import email_check_ready

log = logging.getLogger(__name__)

ADVISORY_NAMESPACE = 48_412  # first key of pg_advisory_lock(int, int) for statement emails
MAX_SEND_RETRIES = 5
OPEN_EMAIL = [StatementEmail.Status.PENDING, StatementEmail.Status.QUEUED]


def _worker_name(task) -> str:
    return f"{getattr(task.request, 'hostname', '') or socket.gethostname()}"


# ---------------------------------------------------------------------------------------------
# Rendering


def pdf_name(statement: Statement) -> str:
    return f"statements/{statement.period.key}/{statement.number}-v{statement.version}.pdf"


@shared_task(bind=True, acks_late=True, ignore_result=True)
def render_statement_task(self, statement_id: int) -> str:
    """Draw one statement's PDF, store it, mark the statement ready, queue its PI's email when
    this was the last of their statements to render."""
    statement = (
        Statement.objects.select_related("period", "pi", "project", "run")
        .filter(pk=statement_id)
        .first()
    )
    if statement is None:
        return "gone"  # replaced by a regeneration that removed it
    if statement.status != Statement.Status.RENDERING:
        _after_render(statement_id)
        return "done already"
    version = statement.version
    try:
        content = render_pdf(statement_pdf_data(statement))
    except Exception as exc:  # a statement that cannot be drawn must not stop the batch
        log.exception("statement %s could not be rendered", statement.number)
        with transaction.atomic():
            locked = Statement.objects.select_for_update().get(pk=statement_id)
            if locked.version == version and locked.status == Statement.Status.RENDERING:
                locked.status = Statement.Status.FAILED
                locked.error = f"rendering failed: {type(exc).__name__}: {exc}"
                locked.save(update_fields=["status", "error", "updated_at"])
        _after_render(statement_id)
        return "failed"
    name = pdf_name(statement)
    if default_storage.exists(name):  # an earlier delivery of this task wrote it
        default_storage.delete(name)
    stored = default_storage.save(name, ContentFile(content))
    # One conditional UPDATE: only the version that was drawn, only if still rendering.
    current = Statement.objects.filter(
        pk=statement_id, version=version, status=Statement.Status.RENDERING
    ).update(
        pdf_path=stored,
        pdf_sha256=hashlib.sha256(content).hexdigest(),
        status=Statement.Status.READY,
        rendered_at=timezone.now(),
        updated_at=timezone.now(),
        error="",
    )
    if not current:
        if not Statement.objects.filter(pk=statement_id, pdf_path=stored).exists():
            default_storage.delete(stored)
        return "stale"
    _after_render(statement_id)
    return "rendered"


def _after_render(statement_id: int) -> None:
    ids = list(
        StatementEmail.objects.filter(
            statements__pk=statement_id, status__in=OPEN_EMAIL
        ).values_list("pk", flat=True)
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
def _sender_lock(email_id: int):
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
    statements = list(email.statements.select_related("project").order_by("number"))
    context = {
        "pi": email.pi,
        "pi_name": email.pi.name or email.pi.email,
        "period": period,
        "period_label": month_label(period),
        "institution": snapshot.get("institution", ""),
        "contact_email": snapshot.get("contact_email", ""),
        "portal_url": getattr(
            settings, "OPENCHARGEBACK_PORTAL_URL", "http://localhost:8000/portal/"
        ),
        "statements": [
            {
                "number": s.number,
                "project": s.printed()["project_code"],
                "fund_org": s.fund_org,
                "currency": s.currency,
                "list": money(s.list_amount),
                "discount": money(s.discount_amount),
                "amount_due": money(s.due_amount),
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


def _fail_statements(email: StatementEmail, error: str, *, maybe_sent: bool = False) -> None:
    for s in email.statements.select_for_update():
        if s.sent_at is not None and not maybe_sent:
            continue  # sent before (a resend failed): it stays sent
        s.status = Statement.Status.FAILED
        s.error = error
        fields = ["status", "error", "updated_at"]
        if maybe_sent and s.sent_at is None:
            s.sent_at = timezone.now()  # may have reached the PI: kept, revised on change
            fields.append("sent_at")
        s.save(update_fields=fields)


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=MAX_SEND_RETRIES)
def send_statement_email_task(self, email_id: int) -> str:
    """Send one PI's email with all their statements of the batch; at most once."""
    delay = getattr(settings, "OPENCHARGEBACK_EMAIL_RETRY_DELAY", 30)
    retries = self.request.retries or 0
    with _sender_lock(email_id) as mine:
        if not mine:
            return "being sent by another worker"
        while True:
            outcome = _send(self, email_id, retries)
            if not isinstance(outcome, BaseException):
                return outcome
            if not self.request.is_eager:
                break
            # In-process (no broker): retry here, with a short pause.
            time.sleep(min(delay * 2**retries, 5))
            retries += 1
    # With a broker: a new delivery after the backoff, the lock released meanwhile.
    raise self.retry(countdown=delay * 2**retries, exc=outcome, max_retries=MAX_SEND_RETRIES)


def _send(task, email_id: int, retries: int) -> str | BaseException:
    """One attempt. Returns the outcome, or the exception to retry on."""
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
            email.status, email.error = StatementEmail.Status.FAILED, error
            email.attempts += 1
            email.save(update_fields=["status", "error", "attempts", "updated_at"])
            attempt = EmailAttempt.objects.create(
                email=email, number=email.attempts, worker=_worker_name(task)
            )
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
            email.status, email.error = StatementEmail.Status.FAILED, error
            email.save(update_fields=["status", "error", "updated_at"])
            _fail_statements(email, error, maybe_sent=True)
            if attempt is not None:
                _record(email, attempt, EmailAttempt.Outcome.INTERRUPTED, error)
            return "interrupted"
        if email.status != StatementEmail.Status.QUEUED:
            return email.status
        email.status = StatementEmail.Status.SENDING
        email.attempts += 1
        email.subject = message.subject
        email.save(update_fields=["status", "attempts", "subject", "updated_at"])
        attempt = EmailAttempt.objects.create(
            email=email,
            number=email.attempts,
            worker=_worker_name(task),
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
                email.status, email.error = StatementEmail.Status.QUEUED, f"will retry: {error}"
            else:
                if kind == "transient":
                    error = f"gave up after {email.attempts} attempts: {error}"
                email.status, email.error = StatementEmail.Status.FAILED, error
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
        email.status, email.error = StatementEmail.Status.SENT, ""
        email.message_id = attempt.message_id
        email.sent_at = now
        email.save(update_fields=["status", "error", "message_id", "sent_at", "updated_at"])
        for s in email.statements.select_for_update():
            s.status, s.error = Statement.Status.SENT, ""
            s.sent_at = s.sent_at or now
            s.save(update_fields=["status", "error", "sent_at", "updated_at"])
        _record(email, attempt, EmailAttempt.Outcome.SENT)
    return "sent"
