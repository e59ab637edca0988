"""statements/lifecycle.py: the one declaration of statement and email states."""

from __future__ import annotations

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
