"""Statement emails: content, retries with backoff, permanent failures, at most once."""

from __future__ import annotations

import smtplib

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend

from accounts.models import AuditEvent
from billing.models import BillingPeriod
from statements.models import EmailAttempt, Statement, StatementEmail
from statements.services import email_resend, statement_send
from statements.tasks import classify, send_statement_email_task

pytestmark = pytest.mark.django_db(transaction=True)


class FlakyBackend(BaseEmailBackend):
    """Fails the first `failures` sends with `error`, then delivers to mail.outbox."""

    failures = 0
    error: Exception = smtplib.SMTPServerDisconnected("connection lost")
    calls = 0

    def send_messages(self, messages):
        type(self).calls += 1
        if type(self).calls <= type(self).failures:
            raise type(self).error
        mail.outbox.extend(messages)
        return len(messages)


@pytest.fixture
def flaky(settings):
    settings.EMAIL_BACKEND = "statements.tests.test_email.FlakyBackend"
    FlakyBackend.calls = 0
    mail.outbox = []
    return FlakyBackend


@pytest.fixture
def generated(january, run, run_json, config_path):
    run("periods", "close", "2025-01")
    return run_json("generate", "-p", "2025-01", "-c", config_path)


def send(config, pi="zorp.blinkman@example.edu"):
    return statement_send(period_key="2025-01", pi_email=pi, config=config)


def test_the_email_carries_all_statements_html_text_portal_and_subject(
    generated, flaky, config, settings
):
    settings.OPENCHARGEBACK_BASE_URL = "https://billing.example.edu"
    flaky.failures = 0
    send(config)
    (message,) = mail.outbox
    assert message.subject == "Research computing statement for 2025-01"
    assert message.to == ["zorp.blinkman@example.edu"]
    assert message.from_email == "Research Computing Billing <rc-billing@example.edu>"
    assert "https://billing.example.edu/portal/" in message.body
    html = message.alternatives[0].content
    assert 'href="https://billing.example.edu/portal/"' in html
    assert "4,152.25" in message.body and "2,307.75" in html
    names = sorted(a.filename for a in message.attachments)
    numbers = sorted(
        s["number"] + ".pdf"
        for s in generated["statements"]
        if s["pi_email"] == "zorp.blinkman@example.edu"
    )
    assert names == numbers
    assert all(a.content.startswith(b"%PDF") for a in message.attachments)
    email = StatementEmail.objects.get()
    assert email.status == "sent" and email.message_id == message.extra_headers["Message-ID"]
    assert set(email.statements.values_list("status", flat=True)) == {"sent"}


def test_transient_failures_are_retried_then_sent(generated, flaky, config):
    flaky.failures = 2
    flaky.error = smtplib.SMTPResponseException(451, b"try again later")
    send(config)
    assert len(mail.outbox) == 1
    email = StatementEmail.objects.get()
    assert email.status == "sent" and email.attempts == 3
    assert list(email.log.values_list("outcome", flat=True)) == ["transient", "transient", "sent"]
    assert AuditEvent.objects.filter(action="statement.email.transient").count() == 2


def test_transient_failures_give_up_after_the_retries(generated, flaky, config):
    flaky.failures = 100
    flaky.error = smtplib.SMTPServerDisconnected("gone")
    send(config)
    email = StatementEmail.objects.get()
    assert email.status == "failed" and "gave up after 6 attempts" in email.error
    assert email.log.count() == 6
    assert set(email.statements.values_list("status", flat=True)) == {"failed"}


def test_a_permanent_failure_is_recorded_not_retried(generated, flaky, config):
    flaky.failures = 1
    flaky.error = smtplib.SMTPRecipientsRefused(
        {"zorp.blinkman@example.edu": (550, b"no such user")}
    )
    send(config)
    email = StatementEmail.objects.get()
    assert email.status == "failed" and email.attempts == 1
    assert "550" in email.error
    assert mail.outbox == []
    statement = email.statements.first()
    assert statement.status == "failed" and statement.sent_at is None
    # Resend (the admin's action) mails it once it works.
    flaky.failures = 0
    new = email_resend(email=email)
    new.refresh_from_db()
    assert new.status == "sent" and new.resend_of == email
    assert len(mail.outbox) == 1


def test_classify():
    assert classify(smtplib.SMTPResponseException(421, b"busy")) == "transient"
    assert classify(smtplib.SMTPResponseException(554, b"rejected")) == "permanent"
    assert classify(smtplib.SMTPAuthenticationError(535, b"bad credentials")) == "permanent"
    assert classify(ConnectionRefusedError()) == "transient"
    assert classify(TimeoutError()) == "transient"
    assert classify(ValueError("x")) == "permanent"


def test_a_redelivered_task_never_sends_twice(generated, flaky, config):
    flaky.failures = 0
    send(config)
    email = StatementEmail.objects.get()
    send_statement_email_task.delay(email.pk)  # the same task again (redelivery)
    assert len(mail.outbox) == 1


def test_an_interrupted_send_is_not_repeated(generated, flaky, config):
    """A worker killed between claiming (`sending`) and recording leaves `sending`."""
    flaky.failures = 0
    period = BillingPeriod.objects.get(key="2025-01")
    from statements.models import StatementRun

    run = StatementRun.objects.create(
        period=period, kind="send", actor="test", settings_snapshot={}
    )
    statement = Statement.objects.filter(pi__email="tarn.voxley@example.edu").get()
    email = StatementEmail.objects.create(
        run=run, pi=statement.pi, to_address=statement.pi.email, status="sending", attempts=1
    )
    email.statements.add(statement)
    EmailAttempt.objects.create(email=email, number=1, message_id="<x@example.edu>")
    send_statement_email_task.delay(email.pk)
    email.refresh_from_db()
    assert mail.outbox == []
    assert email.status == "failed" and "may have been delivered" in email.error
    assert email.log.get().outcome == "interrupted"
    statement.refresh_from_db()
    # Maybe sent: kept as it is; --send does not mail it again by itself.
    assert statement.sent_at is not None
    again = statement_send(period_key="2025-01", pi_email="tarn.voxley@example.edu", config=config)
    assert again.emails.count() == 0
