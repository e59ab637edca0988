"""Authentication events into the audit trail: logins, logouts and failed logins.

Receivers of Django's own auth signals (not domain signals): the login machinery is Django's,
so this is the one place to observe it.
"""

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from .services import audit_record


def _client(request) -> dict:
    if request is None:
        return {}
    return {
        "ip": request.META.get("REMOTE_ADDR", ""),
        "user_agent": request.META.get("HTTP_USER_AGENT", "")[:200],
        "path": request.path,
    }


@receiver(user_logged_in, dispatch_uid="accounts.audit_login")
def audit_login(sender, request, user, **kwargs):
    audit_record(action="auth.login", acting_user=user, obj=user, details=_client(request))


@receiver(user_logged_out, dispatch_uid="accounts.audit_logout")
def audit_logout(sender, request, user, **kwargs):
    if user is not None:
        audit_record(action="auth.logout", acting_user=user, obj=user, details=_client(request))


@receiver(user_login_failed, dispatch_uid="accounts.audit_login_failed")
def audit_login_failed(sender, credentials, request=None, **kwargs):
    # Django has already masked the password in `credentials`; keep only the username.
    username = str(credentials.get("username", ""))[:150]
    audit_record(
        action="auth.login_failed",
        actor=username or "unknown",
        details={"username": username, **_client(request)},
    )
