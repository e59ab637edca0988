"""Reference data edits are audited: PI, Project, Rate, Source, ReviewPattern (AccountMapping:
its services).

Signals (pre_save, post_save, post_delete) write one AuditEvent per create, change or delete with
the changed fields before and after, whichever path saves the row: the admin, a service, a
Django shell. The importer's own creations of PIs and projects are not audited one by one (its
import event records them): it runs them inside `reference_audit_paused()`. QuerySet.update and
bulk_create send no signals; they are not used on these models outside the importer.

Who acted: `acting_as(user)` (set for each request by `ReferenceAuditMiddleware`), else the
operating-system user ("name@cli").
"""

from __future__ import annotations

import contextlib
import contextvars

from django.db.models.signals import post_delete, post_save, pre_save

from accounts.services import audit_record

from .models import PI, Project, Rate, ReviewPattern, Source

# AccountMapping is audited by billing/services/mappings.py, which the admin calls.
AUDITED = (PI, Project, Rate, Source, ReviewPattern)
SKIPPED_FIELDS = {"id", "created_at", "updated_at"}

_paused = contextvars.ContextVar("oc_reference_audit_paused", default=False)
_acting_user = contextvars.ContextVar("oc_reference_audit_user", default=None)


@contextlib.contextmanager
def reference_audit_paused():
    """For the importer only: its PIs and projects are recorded by its import event."""
    token = _paused.set(True)
    try:
        yield
    finally:
        _paused.reset(token)


@contextlib.contextmanager
def acting_as(user):
    token = _acting_user.set(user)
    try:
        yield
    finally:
        _acting_user.reset(token)


class ReferenceAuditMiddleware:
    """Names the request's user on the audit events of reference-data edits."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        with acting_as(user if getattr(user, "is_authenticated", False) else None):
            return self.get_response(request)


def _values(instance) -> dict:
    values = {}
    for field in instance._meta.concrete_fields:
        if field.name not in SKIPPED_FIELDS:
            value = getattr(instance, field.attname)
            values[field.attname] = value if value is None else str(value)
    return values


def _label(sender) -> str:
    return sender._meta.model_name


def _before_save(sender, instance, raw=False, **kwargs):
    if raw or _paused.get():
        return
    old = sender._default_manager.filter(pk=instance.pk).first() if instance.pk else None
    instance._reference_audit_before = _values(old) if old is not None else None


def _after_save(sender, instance, created, raw=False, **kwargs):
    if raw or _paused.get():
        return
    before = getattr(instance, "_reference_audit_before", None)
    after = _values(instance)
    if before is not None and not created:
        changed = [k for k in after if before.get(k) != after[k]]
        if not changed:
            return
        before = {k: before.get(k) for k in changed}
        after = {k: after[k] for k in changed}
        action = "change"
    else:
        before, action = None, "create"
    audit_record(
        action=f"{_label(sender)}.{action}",
        acting_user=_acting_user.get(),
        obj=instance,
        before=before,
        after=after,
    )


def _after_delete(sender, instance, **kwargs):
    if _paused.get():
        return
    audit_record(
        action=f"{_label(sender)}.delete",
        acting_user=_acting_user.get(),
        obj=instance,
        before=_values(instance),
        after=None,
    )


for _model in AUDITED:
    uid = f"billing.reference_audit.{_model._meta.model_name}"
    pre_save.connect(_before_save, sender=_model, dispatch_uid=uid)
    post_save.connect(_after_save, sender=_model, dispatch_uid=uid)
    post_delete.connect(_after_delete, sender=_model, dispatch_uid=uid)
