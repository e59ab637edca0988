"""Single sign-on: trust the campus proxy's header naming the signed-in person, by email.

Enabled only by OPENCHARGEBACK_REMOTE_USER_HEADER (settings.py adds the middleware and the
backend). The proxy in front of the site authenticates the person and puts their email in that
header; it must remove the header from anything a client sends, or anyone could claim to be
anyone. The backend logs in the PI (or an already invited delegate) whose email matches; it
never creates users and never logs in staff: staff use their passwords (and the admin).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.backends import RemoteUserBackend
from django.contrib.auth.middleware import PersistentRemoteUserMiddleware

from accounts.models import User
from billing.models import PI


def header_meta_key(header: str) -> str:
    """'X-Remote-User' -> 'HTTP_X_REMOTE_USER' (request.META's name for it)."""
    return "HTTP_" + header.strip().upper().replace("-", "_")


class PIRemoteUserMiddleware(PersistentRemoteUserMiddleware):
    """Reads the configured header. Persistent: the portal keeps its session when a page is
    reached without the header (a PDF link opened later), and logging out ends it."""

    force_logout_if_no_header = False

    @property
    def header(self):  # read per request so tests may change the setting
        return header_meta_key(settings.OPENCHARGEBACK_REMOTE_USER_HEADER)


class PIEmailRemoteUserBackend(RemoteUserBackend):
    """The user whose PI record (or own email) matches the header's email; never staff."""

    create_unknown_user = False

    def clean_username(self, username: str) -> str:
        return username.strip().lower()

    def authenticate(self, request, remote_user):
        email = self.clean_username(remote_user or "")
        if not email or "@" not in email:
            return None
        pi = PI.objects.filter(email=email).select_related("user").first()
        user = pi.user if pi is not None else None
        if user is None:
            # A delegate, or a PI whose login was made but not linked yet: their own email.
            user = User.objects.filter(email__iexact=email, is_active=True).first()
            if pi is not None and user is not None and user.is_staff:
                user = None
        if user is None or user.is_staff or user.is_superuser or not user.is_active:
            return None
        return user if self.user_can_authenticate(user) else None
