"""Every URL the portal serves (pages, the PDF, the CSV, the login and password pages, their
redirects and refusals) says `Cache-Control: private, no-store`. The URL list is read from the
URLconf: a new portal URL without a sample here fails the test."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, reverse

from statements.portal import auth_views
from statements.portal import urls as portal_urls
from statements.portal.middleware import portal_prefixes

pytestmark = pytest.mark.django_db


def _samples(world) -> dict[str, dict]:
    return {
        "portal:home": {},
        "portal:statements": {"pi_id": world.ada.pk},
        "portal:open": {"pi_id": world.ada.pk},
        "portal:charges_csv": {"pi_id": world.ada.pk, "period_key": "2025-01"},
        "portal:statement": {"statement_id": world.ada_statement.pk},
        "portal:statement_pdf": {"statement_id": world.ada_statement.pk},
        "portal:profile": {},
        "portal:profile_name": {},
        "portal:delegate_grant": {},
        "portal:delegate_revoke": {"delegate_id": world.ada.delegates.first().pk},
        "portal-login": {},
        "logout": {},
        "password_reset": {},
        "password_reset_done": {},
        "password_reset_confirm": {"uidb64": "MQ", "token": "set-password"},
        "password_reset_complete": {},
        "password_change": {},
    }


def _names() -> list[str]:
    names = [f"portal:{p.name}" for p in portal_urls.urlpatterns if isinstance(p, URLPattern)]
    return names + [p.name for p in auth_views.urlpatterns]


def _no_store(response) -> bool:
    directives = {d.strip() for d in response.get("Cache-Control", "").split(",")}
    return {"private", "no-store"} <= directives and not any(
        d.startswith(("max-age", "public")) for d in directives if d != "no-store"
    )


def test_every_portal_url_is_private_and_not_stored(world, client):
    samples = _samples(world)
    missing = [name for name in _names() if name not in samples]
    assert not missing, f"add a sample for the new portal URL(s) {missing}"
    urls = [reverse(name, kwargs=samples[name]) for name in _names()]
    assert all(url.startswith(portal_prefixes()) for url in urls)
    statuses = set()
    for who in (None, world.ada_user, world.delegate):
        client.logout()
        if who is not None:
            client.force_login(who)
        for url in urls:
            response = client.get(url)
            statuses.add(response.status_code)
            assert _no_store(response), (
                who,
                url,
                response.status_code,
                response.get("Cache-Control"),
            )
    # Pages, downloads, redirects to the login and POST-only refusals were all seen.
    assert {200, 302, 405} <= statuses


def test_downloads_are_private_and_not_stored(world, client):
    client.force_login(world.ada_user)
    pdf = client.get(reverse("portal:statement_pdf", args=[world.ada_statement.pk]))
    csv = client.get(reverse("portal:charges_csv", args=[world.ada.pk, "2025-01"]))
    assert pdf.status_code == csv.status_code == 200
    assert pdf["Content-Type"] == "application/pdf" and csv["Content-Type"].startswith("text/csv")
    assert pdf["Cache-Control"] == csv["Cache-Control"] == "private, no-store"


def test_the_admin_is_left_to_its_own_headers(world, client):
    client.force_login(world.staff)
    response = client.get(reverse("admin:index"))
    assert "private, no-store" != response.get("Cache-Control")
