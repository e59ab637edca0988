"""Sending or resending one statement: the service (`statement_send_one`) and its refusals,
and the statement list's admin action with its confirmation page."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

from accounts.models import AuditEvent
from billing.models import BillingPeriod
from statements.models import Statement, StatementEmail
from statements.services import StatementError, statement_send_one, statement_send_refusal

from .conftest import mailed

pytestmark = pytest.mark.django_db(transaction=True)
LIST = "/admin/statements/statement/"


@pytest.fixture
def sent(january, run, run_json, config_path, settings):
    settings.OPENCHARGEBACK_CONFIG = config_path
    run("periods", "close", "2025-01")
    return run_json("generate", "-p", "2025-01", "-c", config_path, "--send")


@pytest.fixture
def drafts(january, run, config_path, settings):
    settings.OPENCHARGEBACK_CONFIG = config_path
    run("generate", "-p", "2025-01", "-c", config_path)


def a_sent_statement() -> Statement:
    return (
        Statement.objects.filter(sent_at__isnull=False, superseded_by__isnull=True)
        .exclude(due_amount=0)
        .order_by("number")
        .first()
    )


def test_admin_action_confirms_then_resends_once(sent, admin_client, settings, config):
    statement = a_sent_statement()
    before = len(mailed(settings.EMAIL_FILE_PATH))
    to_pi = sum(m["To"] == statement.pi.email for m in mailed(settings.EMAIL_FILE_PATH))
    data = {"action": "send_one", ACTION_CHECKBOX_NAME: [statement.pk]}

    page = admin_client.post(LIST, data)
    assert page.status_code == 200
    text = page.content.decode()
    assert "Send the statement again" in text and statement.number in text
    assert 'value="Send again"' in text
    assert len(mailed(settings.EMAIL_FILE_PATH)) == before  # nothing until confirmed

    done = admin_client.post(LIST, {**data, "post": "yes"}, follow=True)
    assert f"{statement.number}: email to {statement.pi.email} sent." in done.content.decode()
    messages = mailed(settings.EMAIL_FILE_PATH)
    assert len(messages) == before + 1
    assert sum(m["To"] == statement.pi.email for m in messages) == to_pi + 1
    email = StatementEmail.objects.order_by("-pk").first()
    assert list(email.statements.all()) == [statement]
    assert AuditEvent.objects.filter(action="statement.resend_one").count() == 1


def test_admin_action_wants_exactly_one_statement(sent, admin_client, settings):
    picked = list(Statement.objects.values_list("pk", flat=True)[:2])
    before = len(mailed(settings.EMAIL_FILE_PATH))
    page = admin_client.post(
        LIST, {"action": "send_one", ACTION_CHECKBOX_NAME: picked, "post": "yes"}, follow=True
    )
    assert "Select exactly one statement" in page.content.decode()
    assert len(mailed(settings.EMAIL_FILE_PATH)) == before


def test_a_draft_is_refused_with_the_reason(drafts, admin_client, config):
    draft = Statement.objects.filter(is_draft=True).first()
    with pytest.raises(StatementError, match="it is a draft; close the period"):
        statement_send_one(statement=draft, config=config)
    page = admin_client.post(
        LIST, {"action": "send_one", ACTION_CHECKBOX_NAME: [draft.pk]}, follow=True
    )
    assert f"{draft.number} can&#x27;t be sent: it is a draft" in page.content.decode()
    assert not StatementEmail.objects.exists()


def test_refusals_name_what_is_wrong(sent, config):
    statement = a_sent_statement()
    assert statement_send_refusal(statement) == ""

    statement.due_amount = statement.list_amount = Decimal("0")
    assert "zero statement" in statement_send_refusal(statement)

    statement = a_sent_statement()
    statement.pi.email = ""
    assert statement_send_refusal(statement) == "its PI has no email address"

    statement = a_sent_statement()
    statement.sent_at = None
    statement.period.status = BillingPeriod.Status.FINALIZED
    assert "finalized and this statement was never sent" in statement_send_refusal(statement)


def test_a_statement_waiting_in_an_email_is_not_sent_twice(sent, config, settings):
    statement = a_sent_statement()
    email = statement_send_one(statement=statement, config=config)
    StatementEmail.objects.filter(pk=email.pk).update(status="queued")  # as if the worker waits
    with pytest.raises(StatementError, match="already waiting in an email"):
        statement_send_one(statement=statement, config=config)
