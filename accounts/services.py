"""Writes for accounts: the audit trail, and who is acting in the current request.

Invariant: an audit event is written in the same transaction as the change it records (callers
are inside `transaction.atomic`), so there is never a change without its event or the reverse.

Changes to users, groups and permissions are audited by receivers of Django's model signals
(accounts/signals.py), because Django's own admin and `User.objects`/`group.permissions` calls
write those rows, not our services. Those receivers learn who acts from `acting_as` (set per
request by `AuditActorMiddleware`); in a shell or a command they name the operating-system user.
"""

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

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


# The user acting in this request or block (None: the command line). A request's user is lazy,
# so the middleware stores the request and the user is read only when an event is written.
_acting: ContextVar = ContextVar("accounts_acting", default=None)
# True while the role groups are synced after `migrate`: the roles are code, not a user's change.
_suppressed: ContextVar = ContextVar("accounts_audit_suppressed", default=False)


@contextmanager
def acting_as(user_or_request) -> Iterator[None]:
    """Attribute the user, group and permission changes made inside the block to this user."""
    token = _acting.set(user_or_request)
    try:
        yield
    finally:
        _acting.reset(token)


@contextmanager
def audit_suppressed() -> Iterator[None]:
    token = _suppressed.set(True)
    try:
        yield
    finally:
        _suppressed.reset(token)


def is_audit_suppressed() -> bool:
    return _suppressed.get()


def current_acting_user():
    value = _acting.get()
    user = getattr(value, "user", value)  # a request, or a user
    return user if getattr(user, "is_authenticated", False) else None


class AuditActorMiddleware:
    """Makes the request's user the actor of the user/group/permission changes it causes."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with acting_as(request):
            return self.get_response(request)
