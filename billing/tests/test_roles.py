"""The role matrix: every admin page and action against finance admin, reviewer and viewer."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Group

from accounts.models import AuditEvent
from accounts.roles import FINANCE_ADMIN, REVIEWER, VIEWER
from billing.models import AccountMapping, BillingPeriod, Charge

pytestmark = pytest.mark.django_db

ROLES = (FINANCE_ADMIN, REVIEWER, VIEWER)
PRODUCT_APPS = {"billing", "statements", "journals", "accounts"}

# Add pages each role may open, by model label. Pages the admin never allows (imports, charges,
# audit events, the queue) are refused for every role.
ADD_ALLOWED = {
    FINANCE_ADMIN: {
        "accounts.user",
        "billing.source",
        "billing.billingperiod",
        "billing.pi",
        "billing.project",
        "billing.accountmapping",
        "billing.rate",  # the rate card of usage sources (docs/sources.md)
        "billing.reviewpattern",
    },
    REVIEWER: {"billing.accountmapping"},
    VIEWER: set(),
}
NEVER_ADDED = {"billing.import", "billing.charge", "billing.reviewitem", "accounts.auditevent"}


@pytest.fixture
def as_role(client, django_user_model):
    def login(role):
        user = django_user_model.objects.create_user(f"u-{role}", password="pw", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
        return client

    return login


@pytest.fixture
def month(ingest, write_focus):
    ingest(
        write_focus(
            [
                {"BilledCost": "1.00", "ResourceId": "a", "Tags": ""},
                {"BilledCost": "2.00", "ResourceId": "b", "Tags": ""},
            ]
        ),
        source="aws",
    )
    return BillingPeriod.objects.get(key="2025-01")


def product_models():
    return [m for m in admin.site._registry if m._meta.app_label in PRODUCT_APPS]


def test_roles_exist_from_the_migration():
    assert set(Group.objects.values_list("name", flat=True)) >= set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_every_list_and_detail_page_is_readable_by_every_role(role, as_role, month):
    client = as_role(role)
    assert client.get("/admin/").status_code == 200
    for model in product_models():
        opts = model._meta
        page = client.get(f"/admin/{opts.app_label}/{opts.model_name}/")
        assert page.status_code == 200, (role, opts.label, page.status_code)
        obj = model._default_manager.first()
        if obj is not None:
            detail = client.get(f"/admin/{opts.app_label}/{opts.model_name}/{obj.pk}/change/")
            assert detail.status_code == 200, (role, opts.label, "detail")


@pytest.mark.parametrize("role", ROLES)
def test_add_pages_follow_the_role(role, as_role):
    client = as_role(role)
    for model in product_models():
        label = model._meta.label_lower
        status = client.get(f"/admin/{label.replace('.', '/')}/add/").status_code
        if label in ADD_ALLOWED[role]:
            assert status == 200, (role, label)
        elif label in NEVER_ADDED or label.startswith("billing."):
            assert status == 403, (role, label, status)


@pytest.mark.parametrize("role", ROLES)
def test_nobody_edits_or_deletes_the_audit_trail(role, as_role, month):
    client = as_role(role)
    event = AuditEvent.objects.first()
    url = f"/admin/accounts/auditevent/{event.pk}/"
    assert client.post(url + "change/", {"reason": "rewritten"}).status_code == 403
    assert client.post(url + "delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).reason == event.reason


@pytest.mark.parametrize("role", ROLES)
def test_audit_csv_export_for_every_role(role, as_role, month):
    client = as_role(role)
    ids = list(AuditEvent.objects.values_list("pk", flat=True))
    response = client.post(
        "/admin/accounts/auditevent/", {"action": "export_csv", ACTION_CHECKBOX_NAME: ids}
    )
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    assert body.splitlines()[0].startswith("id,created_at,actor,action")
    assert len(body.strip().splitlines()) == len(ids) + 1


@pytest.mark.parametrize(
    "role,may_review", [(FINANCE_ADMIN, True), (REVIEWER, True), (VIEWER, False)]
)
def test_review_actions_follow_the_role(role, may_review, as_role, month):
    client = as_role(role)
    pk = Charge.objects.get(resource_id="a").pk
    page = client.get("/admin/billing/reviewitem/")
    assert (b'value="approve"' in page.content) is may_review
    client.post(
        "/admin/billing/reviewitem/",
        {"action": "reject", ACTION_CHECKBOX_NAME: [pk], "post": "yes", "note": "n"},
    )
    expected = "rejected" if may_review else "flagged"
    assert Charge.objects.get(pk=pk).review_status == expected


@pytest.mark.parametrize(
    "role,may_transition", [(FINANCE_ADMIN, True), (REVIEWER, False), (VIEWER, False)]
)
def test_period_transitions_follow_the_role(role, may_transition, as_role, month):
    client = as_role(role)
    client.post(
        "/admin/billing/billingperiod/",
        {"action": "close", ACTION_CHECKBOX_NAME: [month.pk], "post": "yes"},
    )
    expected = "closed" if may_transition else "open"
    assert BillingPeriod.objects.get(pk=month.pk).status == expected


@pytest.mark.parametrize("role,may_map", [(FINANCE_ADMIN, True), (REVIEWER, True), (VIEWER, False)])
def test_account_map_edits_follow_the_role_and_are_audited(role, may_map, as_role):
    client = as_role(role)
    response = client.post(
        "/admin/billing/accountmapping/add/",
        {"account_id": "123456789012", "pi_email": "ada@example.edu", "project_id": "engines"},
    )
    assert AccountMapping.objects.filter(account_id="123456789012").exists() is may_map
    assert AuditEvent.objects.filter(action="account_mapping.save").exists() is may_map
    if not may_map:
        assert response.status_code == 403


def test_login_logout_and_failed_login_are_audited(client, django_user_model):
    django_user_model.objects.create_user("ada", password="right-horse-battery", is_staff=True)
    client.post("/admin/login/", {"username": "ada", "password": "wrong"})
    client.post("/admin/login/", {"username": "ada", "password": "right-horse-battery"})
    client.post("/admin/logout/")
    actions = list(
        AuditEvent.objects.filter(action__startswith="auth.")
        .order_by("id")
        .values_list("action", "actor")
    )
    assert actions == [("auth.login_failed", "ada"), ("auth.login", "ada"), ("auth.logout", "ada")]
    failed = AuditEvent.objects.get(action="auth.login_failed")
    assert "wrong" not in str(failed.details)


@pytest.mark.parametrize(
    "role,may_export", [(FINANCE_ADMIN, True), (REVIEWER, False), (VIEWER, False)]
)
def test_journal_export_is_offered_to_finance_admins_only(role, may_export, as_role, month):
    page = as_role(role).get("/admin/billing/billingperiod/")
    assert (b'value="export_journal_action"' in page.content) is may_export


def test_account_map_csv_import_is_audited(db):
    import tablib

    from billing.admin import AccountMappingResource

    data = tablib.Dataset(headers=["source", "account_id", "pi_email", "project_id", "fund_org"])
    data.append(["", "555566667777", "ada@example.edu", "engines", "MATH-1843"])
    dry = AccountMappingResource().import_data(data, dry_run=True)
    assert not dry.has_errors()
    assert not AuditEvent.objects.filter(action="account_mapping.import").exists()

    result = AccountMappingResource().import_data(data, dry_run=False)
    assert not result.has_errors()
    assert AccountMapping.objects.filter(account_id="555566667777").exists()
    event = AuditEvent.objects.get(action="account_mapping.import")
    assert event.details == {"new": 1}
