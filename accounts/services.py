"""Writes for accounts: the audit trail.

Invariant: an audit event is written in the same transaction as the change it records (callers
are inside `transaction.atomic`), so there is never a change without its event or the reverse.
"""

import getpass

from django.db import models

from .models import AuditEvent


def actor_name(user=None) -> str:
    """Text naming who acts: the user, or the operating-system account on the command line."""
    if user is not None and getattr(user, "pk", None):
        return user.get_username()
    try:
        return f"{getpass.getuser()}@cli"
    except Exception:  # no login name in some containers
        return "unknown@cli"


def audit_record(
    *,
    action: str,
    acting_user=None,
    actor: str = "",
    obj: models.Model | None = None,
    before=None,
    after=None,
    details: dict | None = None,
    reason: str = "",
) -> AuditEvent:
    return AuditEvent.objects.create(
        user=acting_user if getattr(acting_user, "pk", None) else None,
        actor=actor or actor_name(acting_user),
        action=action,
        object_type=obj._meta.label if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        object_repr=str(obj)[:200] if obj is not None else "",
        before=before,
        after=after,
        details=details or {},
        reason=reason,
    )
