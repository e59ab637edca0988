"""The admin: statements with status and PDFs, the email log with resend, batch progress, and
the generate/send actions for billing periods (with confirmation and permissions)."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.contrib.messages.storage.fallback import FallbackStorage
from django.core.exceptions import PermissionDenied
from django.test import RequestFactory

from billing.models import BillingPeriod
from statements.admin import (
    StatementPeriodActionsMixin,
    generate_statements_action,
    send_statements_action,
)
from statements.models import Statement, StatementEmail

from .conftest import mailed

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sent(january, run, run_json, config_path, settings):
    settings.OPENCHARGEBACK_CONFIG = config_path
    run("periods", "close", "2025-01")
    return run_json("generate", "-p", "2025-01", "-c", config_path, "--send")


def test_statement_list_download_and_preview(sent, admin_client):
    page = admin_client.get(
        f"/admin/statements/statement/?period__id__exact={BillingPeriod.objects.get().pk}"
    )
    assert page.status_code == 200
    body = page.content.decode()
    assert sent["statements"][0]["number"] in body and "Sent" in body and "download" in body
    statement = Statement.objects.first()
    download = admin_client.get(f"/admin/statements/statement/{statement.pk}/pdf/")
    assert download.status_code == 200
    assert download["Content-Type"] == "application/pdf"
    assert "attachment" in download["Content-Disposition"]
    assert b"".join(download.streaming_content).startswith(b"%PDF")
    preview = admin_client.get(f"/admin/statements/statement/{statement.pk}/preview/")
    assert "inline" in preview["Content-Disposition"]
    detail = admin_client.get(f"/admin/statements/statement/{statement.pk}/change/")
    assert detail.status_code == 200


def test_email_log_resend_asks_first_then_mails_once(sent, admin_client, settings):
    email = StatementEmail.objects.get(to_address="tarn.voxley@example.edu")
    url = "/admin/statements/statementemail/"
    assert "tarn.voxley@example.edu" in admin_client.get(url).content.decode()
    confirm = admin_client.post(url, {"action": "resend_emails", "_selected_action": [email.pk]})
    assert confirm.status_code == 200 and b"Resend statement emails" in confirm.content
    assert len(mailed(settings.EMAIL_FILE_PATH)) == 7
    done = admin_client.post(
        url, {"action": "resend_emails", "_selected_action": [email.pk], "post": "yes"}
    )
    assert done.status_code == 302
    assert len(mailed(settings.EMAIL_FILE_PATH)) == 8
    assert StatementEmail.objects.get(resend_of=email).status == "sent"


def test_batch_progress(sent, admin_client):
    body = admin_client.get("/admin/statements/statementrun/").content.decode()
    assert "rendered 10 of 10; emails sent 7, failed 0 of 7" in body


class PeriodAdmin(StatementPeriodActionsMixin, admin.ModelAdmin):
    actions = [generate_statements_action, send_statements_action]


def _request(user, data=None):
    request = RequestFactory().post("/admin/billing/billingperiod/", data or {})
    request.user = user
    request.session = {}
    request._messages = FallbackStorage(request)
    return request


def test_period_actions_confirm_check_permissions_and_generate(
    january, run, django_user_model, config_path, settings
):
    settings.OPENCHARGEBACK_CONFIG = config_path
    model_admin = PeriodAdmin(BillingPeriod, admin.site)
    periods = BillingPeriod.objects.all()
    clerk = django_user_model.objects.create_user("clerk", is_staff=True)
    with pytest.raises(PermissionDenied):
        generate_statements_action(model_admin, _request(clerk, {"post": "yes"}), periods)
    assert not model_admin.has_generate_statement_permission(_request(clerk))

    clerk.user_permissions.add(
        Permission.objects.get(codename="generate_statement"),
        Permission.objects.get(codename="send_statement"),
    )
    clerk = django_user_model.objects.get(pk=clerk.pk)
    page = generate_statements_action(model_admin, _request(clerk), periods)
    page.render()
    assert b"Generate statements" in page.content and b"drafts (period open)" in page.content
    assert Statement.objects.count() == 0

    request = _request(clerk, {"post": "yes"})
    assert generate_statements_action(model_admin, request, periods) is None
    assert Statement.objects.filter(is_draft=True).count() == 10
    text = [str(m) for m in request._messages]
    assert "2025-01: 10 draft statement(s) for 7 PI(s), total due USD 20227.00." in text

    # Sending an open period is refused with a message; once closed it mails.
    request = _request(clerk, {"post": "yes"})
    send_statements_action(model_admin, request, periods)
    assert "drafts are not mailed" in " ".join(str(m) for m in request._messages)
    run("periods", "close", "2025-01")
    request = _request(clerk, {"post": "yes"})
    send_statements_action(model_admin, request, periods)
    assert "emails queued 0, sent 7, failed 0" in " ".join(str(m) for m in request._messages)
    assert len(mailed(settings.EMAIL_FILE_PATH)) == 7
