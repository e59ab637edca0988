"""PI logins: invitations (service and admin action), "forgot password" for a PI who was never
invited, delegates' grants and revocations (audited), and single sign-on by email."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.contrib.messages.storage.fallback import FallbackStorage
from django.test import RequestFactory

from accounts.models import AuditEvent, User
from billing.admin.pis import PIPeriodFilter, invite_pis_action
from billing.models import PI, PIDelegate
from billing.services.pis import (
    PIAccessError,
    pi_delegate_grant,
    pi_delegate_revoke,
    pi_invite,
)

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "Correct-horse-battery-9"


def _link(message) -> str:
    return re.search(r"https?://\S+/accounts/password/reset/\S+/", message.body).group(0)


def _set_password_and_login(client, link, username):
    path = link.split("://", 1)[1].split("/", 1)[1]
    page = client.get("/" + path, follow=True)  # Django swaps the token for a session key
    assert page.status_code == 200 and b"Choose a password" in page.content
    done = client.post(
        page.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert done.status_code == 302 and done["Location"] == "/accounts/password/reset/done/"
    login = client.post("/accounts/login/", {"username": username, "password": NEW_PASSWORD})
    assert login.status_code == 302, login.content[:2000]
    return login


def test_invite_creates_logins_mails_links_and_audits(
    world, client, mailoutbox, django_capture_on_commit_callbacks
):
    carol = PI.objects.create(email="carol@example.edu", name="Carol Shaw")
    with django_capture_on_commit_callbacks(execute=True):
        result = pi_invite(
            pis=[carol, world.ada],
            acting_user=world.staff,
            request_or_base_url="https://billing.example.edu",
        )
    assert sorted(result.invited) == ["ada@example.edu", "carol@example.edu"]
    assert result.created == ["carol@example.edu"]
    carol.refresh_from_db()
    assert carol.user.username == "carol@example.edu" and not carol.user.is_staff
    assert not carol.user.has_usable_password()
    assert carol.user.first_name == "Carol" and carol.user.last_name == "Shaw"
    assert sorted(m.to[0] for m in mailoutbox) == ["ada@example.edu", "carol@example.edu"]
    message = next(m for m in mailoutbox if m.to == ["carol@example.edu"])
    assert _link(message).startswith("https://billing.example.edu/accounts/password/reset/")
    assert message.alternatives and "Set your password" in message.alternatives[0][0]
    events = AuditEvent.objects.filter(action="pi.invite")
    assert events.count() == 2 and {e.user for e in events} == {world.staff}
    # Carol follows her link, sets a password, logs in and sees her (empty) portal.
    _set_password_and_login(client, _link(message), "carol@example.edu")
    assert client.get(f"/portal/pi/{carol.pk}/").status_code == 200
    # The link works once.
    again = client.get("/" + _link(message).split("/", 3)[3], follow=True)
    assert b"no longer works" in again.content


def test_invite_never_links_a_staff_account(world, mailoutbox, django_capture_on_commit_callbacks):
    pi = PI.objects.create(email="finance@example.edu")
    world.staff.email = "finance@example.edu"
    world.staff.save()
    with django_capture_on_commit_callbacks(execute=True):
        result = pi_invite(pis=[pi], acting_user=world.staff, request_or_base_url="http://x")
    pi.refresh_from_db()
    assert pi.user is None and result.invited == [] and mailoutbox == []
    assert result.skipped == [("finance@example.edu", "the email belongs to a staff account")]


def test_invite_action_confirms_then_invites(world, mailoutbox, django_capture_on_commit_callbacks):
    carol = PI.objects.create(email="carol@example.edu")
    modeladmin = admin.site._registry[PI]
    factory = RequestFactory()

    def request(data):
        req = factory.post("/admin/billing/pi/", data)
        req.user = world.staff
        req.session = {}
        req._messages = FallbackStorage(req)
        return req

    queryset = PI.objects.filter(pk__in=[carol.pk, world.bob.pk])
    confirm = invite_pis_action(modeladmin, request({"action": "invite_pis_action"}), queryset)
    confirm.render()
    assert b"Invite 2 PIs" in confirm.content and b"carol@example.edu" in confirm.content
    assert mailoutbox == []
    with django_capture_on_commit_callbacks(execute=True):
        done = invite_pis_action(modeladmin, request({"post": "yes"}), queryset)
    assert done is None
    assert sorted(m.to[0] for m in mailoutbox) == ["bob@example.edu", "carol@example.edu"]


def test_period_filter_selects_the_pis_of_a_period(world):
    carol = PI.objects.create(email="carol@example.edu")
    modeladmin = admin.site._registry[PI]
    req = RequestFactory().get("/admin/billing/pi/", {"charges_in": "2025-01"})
    req.user = world.staff
    f = PIPeriodFilter(req, {"charges_in": ["2025-01"]}, PI, modeladmin)
    assert set(f.queryset(req, PI.objects.all())) == {world.ada, world.bob}
    assert carol not in f.queryset(req, PI.objects.all())


def test_forgot_password_makes_a_login_for_a_known_pi(
    db, client, mailoutbox, django_capture_on_commit_callbacks
):
    PI.objects.create(email="dana@example.edu", name="Dana")
    response = client.post("/accounts/password/reset/", {"email": "Dana@Example.edu"})
    assert response.status_code == 302
    assert [m.to for m in mailoutbox] == [["dana@example.edu"]]
    user = User.objects.get(username="dana@example.edu")
    assert PI.objects.get(email="dana@example.edu").user == user and not user.is_staff
    assert AuditEvent.objects.filter(action="pi.login_create").count() == 1
    _set_password_and_login(client, _link(mailoutbox[0]), "dana@example.edu")
    # An unknown address: the same answer, no email, no user.
    client.logout()
    unknown = client.post("/accounts/password/reset/", {"email": "nobody@example.edu"})
    assert unknown.status_code == 302 and len(mailoutbox) == 1
    assert not User.objects.filter(email="nobody@example.edu").exists()


def test_grant_and_revoke_are_audited_and_checked(world):
    delegate = pi_delegate_grant(pi=world.ada, email="Lab@example.edu", acting_user=world.ada_user)
    assert delegate.user.email == "lab@example.edu" and delegate.granted_by == world.ada_user
    grant = AuditEvent.objects.get(action="pi.delegate_grant")
    assert grant.user == world.ada_user and grant.details["email"] == "lab@example.edu"
    with pytest.raises(PIAccessError, match="already a delegate"):
        pi_delegate_grant(pi=world.ada, email="lab@example.edu", acting_user=world.ada_user)
    with pytest.raises(PIAccessError, match="only the PI"):
        pi_delegate_grant(pi=world.ada, email="x@example.edu", acting_user=world.bob_user)
    with pytest.raises(PIAccessError, match="only the PI"):
        pi_delegate_revoke(delegate=delegate, acting_user=world.delegate)
    pi_delegate_revoke(delegate=delegate, acting_user=world.ada_user, reason="left the lab")
    delegate.refresh_from_db()
    assert delegate.revoked_at is not None and delegate.revoked_by == world.ada_user
    revoke = AuditEvent.objects.get(action="pi.delegate_revoke")
    assert revoke.reason == "left the lab"
    with pytest.raises(PIAccessError, match="already revoked"):
        pi_delegate_revoke(delegate=delegate, acting_user=world.ada_user)
    # Granting again after a revocation makes a new grant; the old one stays as history.
    pi_delegate_grant(pi=world.ada, email="lab@example.edu", acting_user=world.staff)
    assert PIDelegate.objects.filter(pi=world.ada, user=delegate.user).count() == 2


@pytest.fixture
def sso(settings):
    settings.OPENCHARGEBACK_REMOTE_USER_HEADER = "X-Remote-User"
    settings.AUTHENTICATION_BACKENDS = [
        "axes.backends.AxesStandaloneBackend",
        "statements.portal.sso.PIEmailRemoteUserBackend",
        "django.contrib.auth.backends.ModelBackend",
    ]
    middleware = list(settings.MIDDLEWARE)
    middleware.insert(
        middleware.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
        "statements.portal.sso.PIRemoteUserMiddleware",
    )
    settings.MIDDLEWARE = middleware


def test_sso_header_logs_in_the_pi_by_email(world, client, sso):
    page = client.get(f"/portal/pi/{world.ada.pk}/", HTTP_X_REMOTE_USER="ADA@example.edu")
    assert page.status_code == 200 and b"Ada Lovelace" in page.content
    # The session persists without the header.
    assert client.get(f"/portal/pi/{world.ada.pk}/").status_code == 200


def test_sso_never_logs_in_staff_nor_creates_users(world, client, sso):
    world.staff.email = "finance@example.edu"
    world.staff.save()
    users = User.objects.count()
    for email in ("finance@example.edu", "finance", "stranger@example.edu"):
        response = client.get("/portal/", HTTP_X_REMOTE_USER=email)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert client.get("/admin/", HTTP_X_REMOTE_USER="finance@example.edu").status_code == 302
    assert User.objects.count() == users
