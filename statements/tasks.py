"""Celery tasks: thin wrappers. They take primary keys and call statements.services.delivery,
which re-reads the rows and is idempotent, so a redelivered task (a worker killed mid-batch)
does no harm. Sending is at most once; see the delivery module for how."""

from __future__ import annotations

import socket
import time

from celery import shared_task
from django.conf import settings

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


def _worker_name(task) -> str:
    return f"{getattr(task.request, 'hostname', '') or socket.gethostname()}"


@shared_task(bind=True, acks_late=True, ignore_result=True)
def render_statement_task(self, statement_id: int) -> str:
    """Draw one statement's PDF; queue its PI's email when it was the last one to render."""
    return statement_render(statement_id)


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=MAX_SEND_RETRIES)
def send_statement_email_task(self, email_id: int) -> str:
    """Send one PI's email with all their statements of the batch; at most once."""
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
