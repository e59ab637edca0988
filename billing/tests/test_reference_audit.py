"""Edits to PIs, projects and sources are audited, from the admin and from code (issue 11, item 3);
a write the database guards refuse is a message in the admin, never a server error."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.db import IntegrityError
from django.test import RequestFactory
from django.urls import reverse

from accounts.middleware import GuardRefusalMiddleware
from accounts.models import AuditEvent
from billing.models import PI, Project, Source

from .conftest import GOOD_TAGS

pytestmark = pytest.mark.django_db


def events(action):
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_project_renamed_in_the_admin_is_audited_with_before_and_after(admin_client, admin_user):
    project = Project.objects.create(code="engines", name="Engines")
    url = reverse("admin:billing_project_change", args=[project.pk])
    response = admin_client.post(url, {"code": "engines", "name": "Analytical Engines"})
    assert response.status_code == 302
    [event] = events("project.change")
    assert event.before == {"name": "Engines"}
    assert event.after == {"name": "Analytical Engines"}
    assert event.user == admin_user and event.object_id == str(project.pk)


def test_pi_created_changed_deleted_from_code_is_audited():
    pi = PI.objects.create(email="ada@example.edu")
    pi.name = "Ada"
    pi.save()
    pi.save()  # nothing changed: no event
    pi.delete()
    assert [e.action for e in AuditEvent.objects.order_by("id")] == [
        "pi.create",
        "pi.change",
        "pi.delete",
    ]
    create, change, delete = AuditEvent.objects.order_by("id")
    assert create.after["email"] == "ada@example.edu" and create.before is None
    assert change.before == {"name": ""} and change.after == {"name": "Ada"}
    assert delete.before["name"] == "Ada" and delete.after is None
    assert change.actor.endswith("@cli")


def test_source_edit_in_the_admin_is_audited(admin_client):
    source = Source.objects.create(name="aws", credit_fund_org="IT-CLOUD")
    url = reverse("admin:billing_source_change", args=[source.pk])
    data = {"name": "aws", "display_name": "", "filename_pattern": "", "account_code": ""}
    admin_client.post(url, {**data, "credit_fund_org": "IT-OTHER"})
    [event] = events("source.change")
    assert event.before == {"credit_fund_org": "IT-CLOUD"}
    assert event.after == {"credit_fund_org": "IT-OTHER"}


def test_the_importer_records_its_new_pis_in_its_import_event_only(ingest, write_focus):
    ingest(write_focus([{"BilledCost": "1.00", "Tags": GOOD_TAGS}]), source="aws")
    assert PI.objects.exists() and Project.objects.exists()
    assert not events("pi.create") and not events("project.create")
    assert events("import")


def test_a_guard_refusal_in_the_admin_is_a_message_not_a_server_error(admin_user):
    request = RequestFactory().post("/admin/billing/billingperiod/1/delete/")
    request.user = admin_user
    request.session = {}
    from django.contrib.messages.storage.fallback import FallbackStorage

    request._messages = FallbackStorage(request)
    refusal = IntegrityError("finalized period: a finalized period can't change or be deleted")
    response = GuardRefusalMiddleware(lambda r: None).process_exception(request, refusal)
    assert response.status_code == 302 and response.url == request.get_full_path()
    [message] = list(get_messages(request))
    assert "finalized period" in str(message)
    other = IntegrityError("UNIQUE constraint failed")
    assert GuardRefusalMiddleware(lambda r: None).process_exception(request, other) is None
