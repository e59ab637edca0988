"""Login lockouts into the audit trail.

django-axes sends `user_locked_out` when a login attempt reaches the failure limit (and on each
attempt while locked). Logins, logouts and failed logins are audited by accounts/signals.py;
this adds the lockout, with what was locked and from where.
"""

from axes.signals import user_locked_out
from django.conf import settings
from django.db import transaction
from django.dispatch import receiver

from accounts.models import User
from accounts.services import audit_record


@receiver(user_locked_out, dispatch_uid="portal.audit_lockout")
def audit_lockout(sender, request, username, ip_address, **kwargs):
    username = str(username or "")[:150]
    user = User.objects.filter(username=username).first() if username else None
    with transaction.atomic():
        audit_record(
            action="auth.locked_out",
            actor=username or ip_address or "unknown",
            obj=user,
            details={
                "username": username,
                "ip": ip_address or "",
                "path": getattr(request, "path", ""),
                "failure_limit": settings.AXES_FAILURE_LIMIT,
                "lockout_by": settings.AXES_LOCKOUT_PARAMETERS,
                "cooloff_minutes": (
                    int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
                    if settings.AXES_COOLOFF_TIME
                    else None
                ),
            },
        )
