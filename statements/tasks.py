"""Celery tasks: thin wrappers. They take primary keys and call statements.services.delivery,
which re-reads the rows and is idempotent, so a redelivered task (a worker killed mid-batch)
does no harm. Sending is at most once; see the delivery module for how."""

from __future__ import annotations

import socket
import time

from celery import shared_task
from django.conf import settings

# The project's Celery app, loaded before the tasks are declared so @shared_task binds to it
# (Django's start-up no longer loads it: openchargeback/__init__.py).
import openchargeback.celery  # noqa: F401
from openchargeback.logs import log_context

from .models import Statement, StatementEmail
from .services.delivery import (
    MAX_SEND_RETRIES,
    build_message,
    classify,
    email_send_attempt,
    email_sender_lock,
    pdf_name,
    statements_render,
)

__all__ = [
    "build_message",
    "classify",
    "pdf_name",
    "render_statement_task",
    "render_statements_task",
    "send_statement_email_task",
]


def _statement_context(model, pk: int) -> dict:
    """The batch and period a statement or email belongs to, for its task's log records."""
    row = model.objects.filter(pk=pk).values("run_id", "run__period__key").first() or {}
    return {"batch_id": row.get("run_id"), "period": row.get("run__period__key")}


def _worker_name(task) -> str:
    return f"{getattr(task.request, 'hostname', '') or socket.gethostname()}"


RENDER_RETRIES = 3
RENDER_RETRY_DELAY = 10  # seconds, doubled at each retry


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=RENDER_RETRIES)
def render_statements_task(self, statement_ids: list[int]) -> dict[str, int]:
    """Draw a chunk of statements' PDFs (statements.services.delivery.statements_render);
    queue each PI's email when their last statement is drawn. Statements that could not be
    stored stay `rendering` and are tried again by a retry of this task with only them."""
    if not statement_ids:
        return {}
    with log_context(**_statement_context(Statement, statement_ids[0])):
        outcomes = statements_render(statement_ids)
    left = [pk for pk, outcome in outcomes.items() if outcome == "error"]
    if left:
        if self.request.is_eager:  # in-process: the caller sees the failure, as it would have
            raise StatementRenderError(f"{len(left)} statement(s) could not be stored: {left}")
        retries = self.request.retries or 0
        raise self.retry(args=(left,), countdown=RENDER_RETRY_DELAY * 2**retries)
    counts: dict[str, int] = {}
    for outcome in outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


@shared_task(bind=True, acks_late=True, ignore_result=True)
def render_statement_task(self, statement_id: int) -> str:
    """One statement's PDF (tasks queued before chunks existed, e.g. across an upgrade)."""
    with log_context(**_statement_context(Statement, statement_id)):
        return statements_render([statement_id])[statement_id]


class StatementRenderError(RuntimeError):
    """Statements of a chunk rendered in-process could not be stored (they stay rendering)."""


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
