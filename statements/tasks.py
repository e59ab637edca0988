"""Celery tasks: thin wrappers. They take primary keys and call statements.services.delivery,
which re-reads the rows and is idempotent, so a redelivered task (a worker killed mid-batch)
does no harm. Sending is at most once; see the delivery module for how."""

from __future__ import annotations

import socket
import time

from celery import shared_task
from django.conf import settings

from openchargeback.logs import log_context

from .models import Statement, StatementEmail
from .services.delivery import (
    MAX_SEND_RETRIES,
    build_message,
    classify,
    email_send_attempt,
    email_sender_lock,
    pdf_name,
    statement_render,
)

__all__ = [
    "build_message",
    "classify",
    "pdf_name",
    "render_statement_task",
    "send_statement_email_task",
]


def _statement_context(model, pk: int) -> dict:
    """The batch and period a statement or email belongs to, for its task's log records."""
    row = model.objects.filter(pk=pk).values("run_id", "run__period__key").first() or {}
    return {"batch_id": row.get("run_id"), "period": row.get("run__period__key")}


def _worker_name(task) -> str:
    return f"{getattr(task.request, 'hostname', '') or socket.gethostname()}"


@shared_task(bind=True, acks_late=True, ignore_result=True)
def render_statement_task(self, statement_id: int) -> str:
    """Draw one statement's PDF; queue its PI's email when it was the last one to render."""
    with log_context(**_statement_context(Statement, statement_id)):
        return statement_render(statement_id)


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=MAX_SEND_RETRIES)
def send_statement_email_task(self, email_id: int) -> str:
    """Send one PI's email with all their statements of the batch; at most once."""
    with log_context(**_statement_context(StatementEmail, email_id)):
        return _send(self, email_id)


def _send(self, email_id: int) -> str:
    delay = getattr(settings, "OPENCHARGEBACK_EMAIL_RETRY_DELAY", 30)
    retries = self.request.retries or 0
    with email_sender_lock(email_id) as mine:
        if not mine:
            return "being sent by another worker"
        while True:
            outcome = email_send_attempt(email_id, retries=retries, worker=_worker_name(self))
            if not isinstance(outcome, BaseException):
                return outcome
            if not self.request.is_eager:
                break
            # In-process (no broker): retry here, with a short pause.
            time.sleep(min(delay * 2**retries, 5))
            retries += 1
    # With a broker: a new delivery after the backoff, the lock released meanwhile.
    raise self.retry(countdown=delay * 2**retries, exc=outcome, max_retries=MAX_SEND_RETRIES)
