"""A PI's name where people read it: the PI sets it on the profile page (audited), emails say
"Dear <name>,", and a rename alone never revises a sent statement while an unsent one takes the
new name (docs/statements.md, "PI names")."""

from __future__ import annotations

import pytest

from accounts.models import AuditEvent
from billing.models import PI
from billing.services.pis import pi_rename
from statements.models import Statement
from statements.services import statement_generate, statement_send

pytestmark = pytest.mark.django_db


def test_the_pi_sets_their_name_on_the_profile_page(world, client):
    client.force_login(world.ada_user)
    page = client.get("/portal/profile/").content.decode()
    assert 'action="/portal/profile/name/"' in page and 'value="Ada Lovelace"' in page
    response = client.post("/portal/profile/name/", {"name": "Augusta Ada King"})
    assert response.status_code == 302 and response["Location"] == "/portal/profile/"
    assert PI.objects.get(pk=world.ada.pk).name == "Augusta Ada King"
    event = AuditEvent.objects.filter(object_id=str(world.ada.pk)).latest("id")
    assert event.user == world.ada_user and event.after["name"] == "Augusta Ada King"
    assert "Augusta Ada King" in client.get(f"/portal/pi/{world.ada.pk}/").content.decode()
    # An empty name is refused with the form shown again.
    refused = client.post("/portal/profile/name/", {"name": "   "})
    assert refused.status_code == 400 and PI.objects.get(pk=world.ada.pk).name == "Augusta Ada King"


def test_a_delegate_or_staff_cannot_rename_through_the_portal(world, client):
    for user in (world.delegate, world.staff):
        client.force_login(user)
        assert client.post("/portal/profile/name/", {"name": "Mallory"}).status_code == 404
    assert PI.objects.get(pk=world.ada.pk).name == "Ada Lovelace"


def test_emails_address_the_pi_by_name_and_a_rename_revises_nothing_sent(
    world, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        statement_send(period_key="2025-01", pi_email="ada@example.edu")
    (message,) = mailoutbox
    assert message.body.startswith("Dear Ada Lovelace,")
    assert "ada@example.edu," not in message.body
    sent = Statement.objects.get(pk=world.ada_statement.pk)
    assert sent.sent_at is not None

    pi_rename(pi=world.ada, name="Augusta Ada King", acting_user=world.ada_user)
    pi_rename(pi=world.bob, name="Robert Babbage", acting_user=world.bob_user)
    with django_capture_on_commit_callbacks(execute=True):
        result = statement_generate(period_key="2025-01", actor="test")
    # Ada's sent statement stays as sent: no revision for a rename alone.
    ada_now = Statement.objects.get(pi=world.ada, superseded_by__isnull=True)
    assert ada_now.pk == sent.pk and ada_now.revision == 0
    assert ada_now.pi_name == "Ada Lovelace" and ada_now.content_hash == sent.content_hash
    # Bob's statement was never sent: it is remade with his new name, same number.
    bob_now = Statement.objects.get(pi=world.bob, superseded_by__isnull=True)
    assert bob_now.number == world.bob_statement.number and bob_now.pi_name == "Robert Babbage"
    assert result.changes["unchanged"] == 1 and result.changes["replaced"] == 1
    assert result.changes["revised"] == 0
