"""Every admin action that changes data shows its confirmation page first and changes nothing
until it is confirmed: the actions of every app (billing, statements, journals), found in the
admin site's registry, so a new action is covered the day it is added."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import RequestFactory
from django.urls import reverse

from accounts.models import AuditEvent

from .conftest import mailed

pytestmark = pytest.mark.django_db(transaction=True)

# Actions that write nothing, or that are not ours: checked to change nothing, no page asked.
READ_ONLY = {("accounts", "auditevent", "export_csv")}
NOT_OURS = {("axes", "accessattempt", "cleanup_expired_attempts")}  # django-axes' own


@pytest.fixture
def month(january, run, run_json, config_path, settings):
    """A closed month with final statements sent: every list has something to select."""
    settings.OPENCHARGEBACK_CONFIG = config_path
    run("periods", "close", "2025-01")
    run_json("generate", "-p", "2025-01", "-c", config_path, "--send")


def snapshot(settings) -> dict:
    """Every table's row count, the latest audit event and the mail sent: what an action that
    ran would have changed."""
    counts = {m._meta.label: m._default_manager.count() for m in apps.get_models()}
    states = {
        label: sorted(apps.get_model(label)._default_manager.values_list("pk", *fields))
        for label, fields in (
            ("billing.BillingPeriod", ("status",)),
            ("billing.Charge", ("review_status", "pi_id", "project_id", "fund_org")),
            ("statements.Statement", ("status", "sent_at")),
            ("statements.StatementEmail", ("status",)),
        )
    }
    return {
        "counts": counts,
        "states": states,
        "audit": AuditEvent.objects.order_by("-id").values_list("id", flat=True).first(),
        "mail": len(mailed(settings.EMAIL_FILE_PATH)),
    }


def all_actions(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    for model, model_admin in admin.site._registry.items():
        for name in model_admin.get_actions(request):
            yield model, model_admin, name


def test_every_action_that_changes_data_asks_first(month, admin_client, admin_user, settings):
    checked = []
    for model, model_admin, name in all_actions(admin_user):
        key = (model._meta.app_label, model._meta.model_name, name)
        if key in NOT_OURS:
            continue
        request = RequestFactory().get("/")
        request.user = admin_user
        first = model_admin.get_queryset(request).order_by("pk").first()
        if first is None:
            continue
        if model._meta.model_name == "statement":  # a current, sent statement: it can be sent
            first = model.objects.filter(sent_at__isnull=False, superseded_by__isnull=True).first()
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        before = snapshot(settings)
        response = admin_client.post(url, {"action": name, ACTION_CHECKBOX_NAME: [first.pk]})
        assert snapshot(settings) == before, f"{key} changed data before confirmation"
        if key in READ_ONLY:
            checked.append(key)
            continue
        assert response.status_code == 200, key
        templates = {t.name for t in response.templates}
        expected = (
            "admin/delete_selected_confirmation.html"
            if name == "delete_selected"
            else "admin/confirm_action.html"
        )
        assert expected in templates, f"{key} answered without its confirmation page"
        checked.append(key)
    names = {name for _, _, name in checked}
    # The lifecycle, review, invitation, statement and journal actions were all among them.
    assert {
        "close",
        "reopen",
        "finalize",
        "approve",
        "reject",
        "return_to_queue",
        "reassign",
        "invite_pis_action",
        "send_one",
        "resend_emails",
        "resume_runs",
        "generate_statements_action",
        "send_statements_action",
        "export_journal_action",
    } <= names


def test_the_confirmed_post_does_it(month, admin_client, settings):
    """The other half: the same post with the page's confirmation runs the action."""
    period = apps.get_model("billing", "BillingPeriod").objects.get(key="2025-01")
    url = reverse("admin:billing_billingperiod_changelist")
    data = {"action": "reopen", ACTION_CHECKBOX_NAME: [period.pk], "reason": "late invoice"}
    admin_client.post(url, data)
    period.refresh_from_db()
    assert period.status == "closed"
    admin_client.post(url, {**data, "post": "yes"})
    period.refresh_from_db()
    assert period.status == "open"
