"""`openchargeback serve`: the development server, for trying OpenChargeback on this machine.

Django's runserver speaks plain HTTP only. With DEBUG off, the production defaults (HTTPS
redirect, secure-only cookies, HSTS; settings.py, docs/security.md) would send the browser to an
https:// address the development server can't answer, and the login cookie would never come
back over HTTP. This command turns those four off for its own process, whatever the environment
says, serves the static files itself, and listens on 127.0.0.1:8000 unless told otherwise.
DEBUG stays as the environment sets it (tracebacks only with DJANGO_DEBUG=1).

It is never a production server: production runs a WSGI server (gunicorn, in the Dockerfile)
behind a proxy that terminates TLS.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.contrib.staticfiles.management.commands.runserver import Command as RunserverCommand
from django.test.utils import override_settings

PLAIN_STATIC = "django.contrib.staticfiles.storage.StaticFilesStorage"

PLAIN_HTTP = {
    "SECURE_SSL_REDIRECT": False,
    "SESSION_COOKIE_SECURE": False,
    "CSRF_COOKIE_SECURE": False,
    "SECURE_HSTS_SECONDS": 0,
}


class Command(RunserverCommand):
    help = (
        "Run the development server on http://127.0.0.1:8000/ (plain HTTP, this machine only). "
        "Not for production: see docs/security.md."
    )
    default_addr = "127.0.0.1"
    default_port = "8000"

    def handle(self, *args, **options):
        for name, value in PLAIN_HTTP.items():
            setattr(settings, name, value)
        options["insecure_serving"] = True  # static files, with DEBUG on or off
        # ... by their own names, from the apps' folders: production's hashed names need a
        # collectstatic this server doesn't ask for. override_settings, not setattr, so the
        # storage already built (if any) is dropped.
        override_settings(
            STORAGES={**settings.STORAGES, "staticfiles": {"BACKEND": PLAIN_STATIC}}
        ).enable()
        if os.environ.get("RUN_MAIN") != "true":  # once, not again in the reloader's child
            self.stdout.write(
                "OpenChargeback development server: plain HTTP, not for production "
                "(docs/security.md)."
            )
        super().handle(*args, **options)
