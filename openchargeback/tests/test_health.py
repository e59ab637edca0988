"""/health: a probe's view of the site. It answers without a login, over plain HTTP and to any
Host (a load balancer asks by address), says 200 or 503, and names no part of the configuration."""

from __future__ import annotations

import json
import os
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError, connections

pytestmark = pytest.mark.django_db

DEAD_BROKER = "redis://127.0.0.1:1/0"  # port 1: nothing listens; refused at once


def test_healthy_without_broker_is_200_and_says_tasks_run_in_process(client, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # no broker configured
    response = client.get("/health")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert json.loads(response.content) == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "not used"},
    }
    assert not response.cookies  # no session, no CSRF cookie for a probe


def test_answers_by_address_over_plain_http_where_other_pages_are_refused(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["billing.example.edu"]
    probe = client.get("/health", HTTP_HOST="10.1.2.3:8000")
    assert probe.status_code == 200
    # The same request for another page meets the host check and the HTTPS redirect.
    assert client.get("/accounts/login/", HTTP_HOST="10.1.2.3:8000").status_code == 400
    page = client.get("/accounts/login/", HTTP_HOST="billing.example.edu")
    assert page.status_code == 301 and page["Location"].startswith("https://")


def test_broker_down_is_503_and_reveals_nothing(client, settings, caplog):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = DEAD_BROKER
    response = client.get("/health/")
    assert response.status_code == 503
    body = json.loads(response.content)
    assert body == {"status": "failed", "checks": {"database": "ok", "broker": "failed"}}
    text = response.content.decode()
    assert "127.0.0.1" not in text and "redis" not in text and "refused" not in text.lower()
    # The reason is in the log, for the operator.
    assert any("broker did not accept" in r.getMessage() for r in caplog.records)


def test_database_down_is_503(client, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # no broker configured
    with mock.patch.object(
        connections["default"], "cursor", side_effect=OperationalError("no route to host")
    ):
        response = client.get("/health")
    assert response.status_code == 503
    assert json.loads(response.content)["checks"] == {"database": "failed", "broker": "not used"}
    assert b"no route" not in response.content


@pytest.mark.skipif(
    not os.environ.get("CELERY_BROKER_URL"), reason="needs CELERY_BROKER_URL (a running Redis)"
)
def test_live_broker_is_ok(client, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = os.environ["CELERY_BROKER_URL"]
    response = client.get("/health")
    assert response.status_code == 200
    assert json.loads(response.content)["checks"]["broker"] == "ok"


def test_only_reads(client):
    response = client.post("/health")
    assert response.status_code == 405 and response["Allow"] == "GET, HEAD"
    assert client.head("/health").status_code == 200


def test_command_prints_the_same_checks_and_fails_when_unhealthy(settings, capsys):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # no broker configured
    call_command("health")
    assert json.loads(capsys.readouterr().out)["status"] == "ok"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = DEAD_BROKER
    with pytest.raises(CommandError, match="unhealthy: broker"):
        call_command("health")
    assert json.loads(capsys.readouterr().out)["checks"]["broker"] == "failed"
