"""Links in mail start with OPENCHARGEBACK_BASE_URL: an invitation sent from the admin (whatever
Host the admin used), a delegate's invitation from the portal, a "forgot password" link; a system
check warns when production leaves the setting unset."""

from __future__ import annotations

import re

import pytest
from django.core.checks import run_checks
from django.test import RequestFactory

from billing.models import PI
from billing.services.pis import pi_delegate_grant, pi_invite
from openchargeback import links

pytestmark = pytest.mark.django_db


def _links(message) -> list[str]:
    return re.findall(r"https?://[^\s\"<>]+", message.body)


def test_invitation_links_use_the_base_url_not_the_request_host(
    settings, mailoutbox, django_capture_on_commit_callbacks, django_user_model
):
    settings.OPENCHARGEBACK_BASE_URL = "https://billing.example.edu"
    staff = django_user_model.objects.create(username="fin", is_staff=True)
    pi = PI.objects.create(email="ottilie@example.edu", name="Ottilie Quagmire")
    request = RequestFactory().post("/admin/billing/pi/", HTTP_HOST="127.0.0.1:8000")
    with django_capture_on_commit_callbacks(execute=True):
        pi_invite(pis=[pi], acting_user=staff, request_or_base_url=request)
    (message,) = mailoutbox
    found = _links(message)
    assert found, message.body
    assert all(link.startswith("https://billing.example.edu/") for link in found), found
    assert "127.0.0.1" not in message.body and "Hello Ottilie Quagmire," in message.body


def test_delegate_invitation_uses_the_base_url(
    settings, mailoutbox, django_capture_on_commit_callbacks, django_user_model
):
    settings.OPENCHARGEBACK_BASE_URL = "https://billing.example.edu/"
    owner = django_user_model.objects.create(username="pi@example.edu", email="pi@example.edu")
    pi = PI.objects.create(email="pi@example.edu", user=owner)
    request = RequestFactory().post("/portal/profile/delegates/", HTTP_HOST="localhost:8000")
    with django_capture_on_commit_callbacks(execute=True):
        pi_delegate_grant(
            pi=pi, email="lab@example.edu", acting_user=owner, request_or_base_url=request
        )
    (message,) = mailoutbox
    found = _links(message)
    assert found and all(link.startswith("https://billing.example.edu/") for link in found)
    assert "//accounts" not in message.body  # the trailing slash of the setting is dropped


def test_absolute_reverse_joins_the_base_url(settings):
    settings.OPENCHARGEBACK_BASE_URL = "https://billing.example.edu/"
    assert links.absolute_reverse("portal:home") == "https://billing.example.edu/portal/"
    settings.OPENCHARGEBACK_BASE_URL = ""
    assert links.absolute_reverse("portal:home") == "http://127.0.0.1:8000/portal/"


def _w001():
    return [m for m in run_checks() if m.id == "openchargeback.W001"]


def test_production_without_a_base_url_is_warned(settings):
    settings.DEBUG = False
    settings.OPENCHARGEBACK_BASE_URL_SET = False
    (warning,) = _w001()
    assert "OPENCHARGEBACK_BASE_URL" in warning.msg and "127.0.0.1:8000" in warning.msg
    settings.OPENCHARGEBACK_BASE_URL_SET = True
    assert _w001() == []
    settings.OPENCHARGEBACK_BASE_URL_SET = False
    settings.DEBUG = True  # development: the default is right
    assert _w001() == []


def test_password_reset_links_use_the_base_url(settings, client, mailoutbox, django_user_model):
    settings.OPENCHARGEBACK_BASE_URL = "https://billing.example.edu"
    user = django_user_model.objects.create(username="ada@example.edu", email="ada@example.edu")
    user.set_password("a-long-Portal-passphrase-42")
    user.save()
    response = client.post("/accounts/password/reset/", {"email": "ada@example.edu"})
    assert response.status_code == 302
    (message,) = mailoutbox
    found = _links(message)
    assert found and all(link.startswith("https://billing.example.edu/") for link in found)
    assert "testserver" not in message.body
