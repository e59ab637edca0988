"""The authorization matrix: every portal view against an anonymous user, the owner, a
delegate, a revoked delegate, another PI and staff. What a user may not see is a 404, the same
answer as for something that does not exist; anonymous users are sent to the login page."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "owner", "delegate", "revoked", "other_pi", "staff")
# Ada's pages: who gets them (200) and who gets a 404.
ADA_PAGES = {
    "statements": "/portal/pi/{ada}/",
    "open": "/portal/pi/{ada}/open/",
    "csv": "/portal/pi/{ada}/charges/2025-01.csv",
    "statement": "/portal/statements/{statement}/",
    "pdf": "/portal/statements/{statement}/pdf/",
}
EXPECTED = {
    "anonymous": 302,
    "owner": 200,
    "delegate": 200,
    "revoked": 404,
    "other_pi": 404,
    "staff": 404,
}


def _login(client, world, role):
    user = {
        "anonymous": None,
        "owner": world.ada_user,
        "delegate": world.delegate,
        "revoked": world.revoked,
        "other_pi": world.bob_user,
        "staff": world.staff,
    }[role]
    if user is not None:
        client.force_login(user)
    return user


def _url(world, template):
    return template.format(ada=world.ada.pk, statement=world.ada_statement.pk)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", sorted(ADA_PAGES))
def test_ada_pages(world, client, role, page):
    _login(client, world, role)
    response = client.get(_url(world, ADA_PAGES[page]))
    assert response.status_code == EXPECTED[role], (role, page)
    if role == "anonymous":
        assert response["Location"].startswith("/accounts/login/?next=/portal/")
    if response.status_code == 404:
        # No hint that it exists: the same page as for an id nobody has.
        missing = client.get(_url(world, ADA_PAGES[page]).replace(str(world.ada.pk), "999999"))
        assert missing.status_code == 404
        assert b"Ada" not in response.content and b"MATH-1843" not in response.content
    if response.status_code == 200 and page == "pdf":
        assert response["Content-Type"] == "application/pdf"
        assert b"".join(response.streaming_content).startswith(b"%PDF")


@pytest.mark.parametrize("role", ROLES)
def test_home_and_profile(world, client, role):
    _login(client, world, role)
    home = client.get("/portal/")
    profile = client.get("/portal/profile/")
    if role == "anonymous":
        assert home.status_code == profile.status_code == 302
        return
    assert profile.status_code == 200
    if role in ("owner", "delegate"):
        assert home.status_code == 302 and home["Location"] == f"/portal/pi/{world.ada.pk}/"
    elif role == "other_pi":
        assert home["Location"] == f"/portal/pi/{world.bob.pk}/"
    else:  # revoked delegate, staff: nobody's statements
        assert home.status_code == 200
        assert b"no statements for your login" in home.content
        assert b"Ada" not in home.content


@pytest.mark.parametrize("role", ROLES)
def test_delegate_grant_and_revoke_only_by_the_pi(world, client, role):
    from billing.models import PIDelegate

    _login(client, world, role)
    active = PIDelegate.objects.get(pi=world.ada, user=world.delegate)
    revoke = client.post(f"/portal/profile/delegates/{active.pk}/revoke/")
    grant = client.post("/portal/profile/delegates/", {"email": "new@example.edu"})
    active.refresh_from_db()
    if role == "anonymous":
        assert revoke.status_code == grant.status_code == 302
        assert "/accounts/login/" in revoke["Location"]
    elif role == "owner":
        assert revoke.status_code == 302 and active.revoked_at is not None
        assert grant.status_code == 302
        assert world.ada.delegates.filter(user__email="new@example.edu").exists()
    else:
        assert revoke.status_code == 404 and active.revoked_at is None
        if role == "other_pi":  # Bob may grant access to his own statements, not Ada's
            assert grant.status_code == 302
            assert world.bob.delegates.filter(user__email="new@example.edu").exists()
        else:
            assert grant.status_code == 404
        assert not world.ada.delegates.filter(user__email="new@example.edu").exists()


def test_delegate_sees_ada_not_bob(world, client):
    client.force_login(world.delegate)
    assert client.get(f"/portal/pi/{world.bob.pk}/").status_code == 404
    assert client.get(f"/portal/statements/{world.bob_statement.pk}/").status_code == 404
    assert client.get(f"/portal/statements/{world.bob_statement.pk}/pdf/").status_code == 404
    assert client.get(f"/portal/pi/{world.bob.pk}/charges/2025-01.csv").status_code == 404


def test_revoking_ends_access_of_a_logged_in_delegate(world, client):
    from billing.models import PIDelegate
    from billing.services.pis import pi_delegate_revoke

    client.force_login(world.delegate)
    assert client.get(f"/portal/pi/{world.ada.pk}/").status_code == 200
    pi_delegate_revoke(
        delegate=PIDelegate.objects.get(user=world.delegate), acting_user=world.ada_user
    )
    assert client.get(f"/portal/pi/{world.ada.pk}/").status_code == 404
    assert client.get(f"/portal/statements/{world.ada_statement.pk}/pdf/").status_code == 404


def test_a_pi_never_reaches_the_admin_and_staff_keep_it(world, client):
    client.force_login(world.ada_user)
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert client.get("/admin/statements/statement/").status_code == 302
    # Her password does not open the admin either.
    client.logout()
    login = client.post(
        "/admin/login/", {"username": "ada@example.edu", "password": "a-long-Portal-passphrase-42"}
    )
    assert login.status_code == 200 and b"staff account" in login.content
    client.force_login(world.staff)
    assert client.get("/admin/").status_code == 200
    assert client.get("/").headers["Location"] == "/admin/"


def test_drafts_are_not_shown(world, client):
    from statements.models import Statement

    Statement.objects.filter(pk=world.ada_statement.pk).update(is_draft=True)
    client.force_login(world.ada_user)
    assert client.get(f"/portal/statements/{world.ada_statement.pk}/").status_code == 404
    assert (
        world.ada_statement.number.encode() not in client.get(f"/portal/pi/{world.ada.pk}/").content
    )
