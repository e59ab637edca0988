"""`/health`: is this process able to serve? The database answers a query and, when tasks go
to workers, the broker accepts a connection.

The answer is 200 or 503 with a small JSON body naming each check "ok" or "failed" (or the
broker "not used" when tasks run in-process); the reasons go to the log, never the response, which
anyone may read. It is a middleware first in the chain so that a load balancer's or a container's
probe needs no login, no HTTPS (it asks over plain HTTP, by address) and no allowed host.
`openchargeback health` runs the same checks from a shell (the compose file's worker and beat).
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.db import connections
from django.http import HttpResponse

log = logging.getLogger(__name__)

PATHS = frozenset({"/health", "/health/"})
BROKER_TIMEOUT = 3.0  # seconds: a probe must answer before the prober gives up


def check_database() -> str:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        log.warning("health: the database did not answer: %s: %s", type(exc).__name__, exc)
        return "failed"
    return "ok"


def check_broker() -> str:
    # No broker configured: tasks run in-process (settings give kombu's in-memory transport).
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "not used"
    url = settings.CELERY_BROKER_URL
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=BROKER_TIMEOUT) as conn:
            conn.ensure_connection(max_retries=0, timeout=BROKER_TIMEOUT)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        log.warning("health: the broker did not accept a connection: %s", reason)
        return "failed"
    return "ok"


def run_checks() -> tuple[bool, dict]:
    checks = {"database": check_database(), "broker": check_broker()}
    healthy = all(value != "failed" for value in checks.values())
    return healthy, {"status": "ok" if healthy else "failed", "checks": checks}


def health_response(request) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        response = HttpResponse(status=405)
        response["Allow"] = "GET, HEAD"
        return response
    healthy, body = run_checks()
    response = HttpResponse(
        json.dumps(body), content_type="application/json", status=200 if healthy else 503
    )
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


class HealthMiddleware:
    """Answers /health before anything else looks at the request (see the module docstring)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info in PATHS:
            return health_response(request)
        return self.get_response(request)
