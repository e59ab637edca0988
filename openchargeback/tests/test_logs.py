"""Structured logs: the format LOG_FORMAT names, on stderr and in LOG_FILE, and each record naming
the acting user, the period, the upload or batch it is about (a request's, a task's)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery import shared_task
from django.test import RequestFactory

from accounts.models import User
from openchargeback.logs import (
    ContextFilter,
    JsonFormatter,
    KeyValueFormatter,
    LogContextMiddleware,
    log_context,
)

REPO = Path(__file__).resolve().parents[2]
log = logging.getLogger("openchargeback.tests.logs")


@pytest.fixture
def captured():
    """A handler as settings.LOGGING builds it (formatter + context filter), on a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    def lines():
        return stream.getvalue().splitlines()

    def use(formatter):
        handler.setFormatter(formatter)
        return lines

    yield use
    log.removeHandler(handler)


def test_key_value_line_quotes_what_would_break_it(captured):
    lines = captured(KeyValueFormatter())
    with log_context(user="ana@example.edu", period="2026-09", batch_id=7):
        log.info('statement "S-1" sent\nto=someone')
    (line,) = lines()
    assert " level=INFO logger=openchargeback.tests.logs " in line
    assert 'message="statement \\"S-1\\" sent\\nto=someone"' in line
    assert line.endswith(" user=ana@example.edu period=2026-09 batch_id=7")


def test_json_line_and_context_ends_with_its_block(captured):
    lines = captured(JsonFormatter())
    with log_context(user="ana", upload_id=12):
        with log_context(period="2026-10"):
            log.warning("inner")
        log.warning("outer")
    log.warning("after")
    inner, outer, after = (json.loads(line) for line in lines())
    assert inner["message"] == "inner" and inner["level"] == "WARNING"
    assert (inner["user"], inner["upload_id"], inner["period"]) == ("ana", 12, "2026-10")
    assert "period" not in outer and outer["upload_id"] == 12
    assert not {"user", "upload_id", "period"} & set(after)
    with pytest.raises(ValueError, match="unknown log context field"):
        with log_context(colour="red"):
            pass


@pytest.mark.django_db
def test_request_names_its_user_and_period_then_forgets_them(captured):
    lines = captured(JsonFormatter())
    user = User.objects.create_user("reviewer", password="x-long-password-1")
    request = RequestFactory().get("/admin/billing/charge/", {"period__key__exact": "2026-09"})
    request.user = user
    request.META["HTTP_X_REQUEST_ID"] = "req-42"

    def view(req):
        middleware.process_view(req, None, (), {})
        log.info("listing charges")
        return "response"

    middleware = LogContextMiddleware(view)
    assert middleware(request) == "response"
    log.info("between requests")
    during, between = (json.loads(line) for line in lines())
    assert during["user"] == "reviewer" and during["period"] == "2026-09"
    assert during["request_id"] == "req-42"
    assert "user" not in between and "period" not in between


@shared_task
def _logging_task(upload_id):
    with log_context(upload_id=upload_id):
        log.info("task working")
    return "done"


@pytest.mark.django_db
def test_task_records_name_the_task_and_keep_the_callers_user(captured):
    lines = captured(JsonFormatter())
    with log_context(user="ana"):
        assert _logging_task.delay(5).get() == "done"  # in-process: no broker in tests
        log.info("back in the request")
    working, back = (json.loads(line) for line in lines())
    assert working["task"].endswith("_logging_task") and working["task_id"]
    assert working["user"] == "ana" and working["upload_id"] == 5
    assert back["user"] == "ana" and "task" not in back and "upload_id" not in back


def run_health_with_dead_broker(tmp_path, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("LOG_", "CELERY_"))}
    environ.update(
        DJANGO_DEBUG="1",
        OPENCHARGEBACK_HOME=str(tmp_path / "instance"),
        CELERY_BROKER_URL="redis://127.0.0.1:1/0",
        **env,
    )
    environ.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "manage.py", "health"],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_settings_json_to_stderr_and_file(tmp_path):
    log_file = tmp_path / "openchargeback.log"
    result = run_health_with_dead_broker(tmp_path, LOG_FORMAT="json", LOG_FILE=str(log_file))
    assert result.returncode == 1
    (from_file,) = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert from_file["logger"] == "openchargeback.health" and from_file["level"] == "WARNING"
    assert "broker did not accept a connection" in from_file["message"]
    assert json.dumps(from_file) in result.stderr.splitlines()


def test_settings_default_is_key_value_and_a_wrong_format_is_named(tmp_path):
    result = run_health_with_dead_broker(tmp_path)
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("time=")]
    assert " level=WARNING logger=openchargeback.health message=" in line
    wrong = run_health_with_dead_broker(tmp_path, LOG_FORMAT="xml")
    assert wrong.returncode != 0
    assert "LOG_FORMAT='xml': use one of json, keyvalue" in wrong.stderr
