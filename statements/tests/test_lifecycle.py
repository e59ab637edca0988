"""statements/lifecycle.py: the one declaration of statement and email states."""

from __future__ import annotations

import os

import pytest

from billing.models import BillingPeriod
from billing.services import periods as period_services
from statements.lifecycle import (
    EMAIL_TRANSITIONS,
    STATEMENT_TRANSITIONS,
    TransitionError,
    email_move,
    phase_check,
    statement_move,
)
from statements.models import Statement, StatementEmail


def test_every_status_is_declared():
    assert set(STATEMENT_TRANSITIONS) == set(Statement.Status.values)
    assert set(EMAIL_TRANSITIONS) == set(StatementEmail.Status.values)


def test_an_undeclared_transition_raises():
    sent = Statement(pk=1, number="ST-1", status="sent")
    sent._state.adding = False
    with pytest.raises(TransitionError, match="sent -> rendering"):
        statement_move(sent, "rendering")
    assert sent.status == "sent"
    with pytest.raises(TransitionError):
        email_move(StatementEmail(pk=1, status="sent"), "queued")
    with pytest.raises(TransitionError):
        email_move(StatementEmail(pk=1, status="pending"), "sending")
    new = Statement(number="ST-2")
    with pytest.raises(TransitionError, match="starts rendering"):
        statement_move(new, "sent")


def test_a_sent_statement_or_a_revision_is_never_removed():
    from django.utils import timezone

    with pytest.raises(TransitionError):
        phase_check(Statement(number="ST-1", sent_at=timezone.now()), "removed")
    with pytest.raises(TransitionError, match="never removed"):
        phase_check(Statement(number="ST-1-R1", revision=1, is_draft=False), "removed")
    phase_check(Statement(number="ST-2", is_draft=False), "removed")


@pytest.mark.django_db(transaction=True)
def test_a_resend_after_finalizing_writes_no_statement_row(
    january, run, run_json, config_path, monkeypatch
):
    from statements.services import email_resend

    run("periods", "close", "2025-01")
    run_json("generate", "-p", "2025-01", "-c", config_path, "--send")
    monkeypatch.setattr(period_services, "_FINALIZE_CHECKS", [])
    run("periods", "finalize", "2025-01")
    before = list(Statement.objects.order_by("pk").values())
    email = StatementEmail.objects.filter(status="sent").order_by("pk").first()
    new = email_resend(email=email, actor="test")
    new.refresh_from_db()
    assert new.status == "sent" and new.resend_of == email
    assert list(Statement.objects.order_by("pk").values()) == before
    assert BillingPeriod.objects.get(key="2025-01").status == "finalized"


@pytest.mark.django_db
def test_two_renders_of_one_statement_at_once_leave_the_winners_file_alone(
    january, run_json, config_path, monkeypatch
):
    """A render task delivered twice (acks late) may run twice at once. Each writes a file of
    its own; the one whose conditional UPDATE wins keeps its file, the other deletes only its
    own. (Deleting and re-writing one shared name let the loser delete the winner's file, and
    the winner's own chmod fail with FileNotFoundError: found by the concurrent chaos test.)"""
    from django.core.files.storage import default_storage

    from statements.services import delivery

    run_json("generate", "-p", "2025-01", "-c", config_path)
    statement = Statement.objects.order_by("pk").first()
    Statement.objects.filter(pk=statement.pk).update(status=Statement.Status.RENDERING)
    draw = delivery.render_pdf
    inner = {}

    def draw_while_another_render_runs(data):
        if not inner:
            inner["outcome"] = "running"
            inner["outcome"] = delivery.statement_render(statement.pk)
            inner["path"] = Statement.objects.get(pk=statement.pk).pdf_path
        return draw(data)

    monkeypatch.setattr(delivery, "render_pdf", draw_while_another_render_runs)
    deleted = []
    delete = default_storage.delete
    monkeypatch.setattr(
        default_storage, "delete", lambda name: (deleted.append(name), delete(name))[1]
    )
    outer = delivery.statement_render(statement.pk)

    assert (inner["outcome"], outer) == ("rendered", "stale")
    statement.refresh_from_db()
    assert statement.status == Statement.Status.READY and statement.pdf_path == inner["path"]
    assert inner["path"] not in deleted  # the loser deleted only the file it wrote
    assert len(deleted) == 1
    folder = os.path.dirname(default_storage.path(statement.pdf_path))
    mine = [n for n in os.listdir(folder) if n.startswith(statement.number + "-")]
    assert mine == [statement.pdf_path.rsplit("/", 1)[1]]  # the loser's file is gone
