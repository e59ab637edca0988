"""Authentication and authorisation events into the audit trail: logins, logouts, failed
logins, and every change to a user, a group or a permission assignment.

Receivers of Django's own signals (not domain signals): the login machinery, the user admin, the
group admin and `user.groups.add(...)` in a shell are Django's, so this is the one place that
sees them all. Each event is written in the transaction of the change (the signals fire inside
it), with before and after.
"""

from django.contrib.auth.models import Group, Permission
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.dispatch import receiver

from .models import User
from .services import audit_record, current_acting_user, is_audit_suppressed


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


# What a user's audit event shows (never the password hash: only that it changed).
USER_FIELDS = (
    "username",
    "email",
    "first_name",
    "last_name",
    "is_active",
    "is_staff",
    "is_superuser",
)


def _user_state(user) -> dict:
    return {field: getattr(user, field) for field in USER_FIELDS}


def _record(**kwargs):
    if not is_audit_suppressed():
        audit_record(acting_user=current_acting_user(), **kwargs)


@receiver(pre_save, sender=User, dispatch_uid="accounts.audit_user_before")
def remember_user_before(sender, instance, raw=False, **kwargs):
    instance._audit_before = None
    if raw or instance.pk is None:
        return
    old = User.objects.filter(pk=instance.pk).values(*USER_FIELDS, "password").first()
    instance._audit_before = old


@receiver(post_save, sender=User, dispatch_uid="accounts.audit_user_save")
def audit_user_save(sender, instance, created, raw=False, update_fields=None, **kwargs):
    if raw:
        return
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # a login: audited as auth.login
    after = _user_state(instance)
    old = getattr(instance, "_audit_before", None)
    if created or old is None:
        _record(action="user.create", obj=instance, after=after)
        return
    password_changed = old.pop("password") != instance.password
    before = {k: v for k, v in old.items() if after[k] != v}
    changed = {k: after[k] for k in before}
    if not changed and not password_changed:
        return
    _record(
        action="user.change",
        obj=instance,
        before=before,
        after=changed,
        details={"password_changed": True} if password_changed else {},
    )


@receiver(post_delete, sender=User, dispatch_uid="accounts.audit_user_delete")
def audit_user_delete(sender, instance, **kwargs):
    _record(action="user.delete", obj=instance, before=_user_state(instance))


@receiver(post_save, sender=Group, dispatch_uid="accounts.audit_group_save")
def audit_group_save(sender, instance, created, raw=False, **kwargs):
    if not raw:
        _record(
            action="group.create" if created else "group.change",
            obj=instance,
            after={"name": instance.name},
        )


@receiver(post_delete, sender=Group, dispatch_uid="accounts.audit_group_delete")
def audit_group_delete(sender, instance, **kwargs):
    _record(action="group.delete", obj=instance, before={"name": instance.name})


def _linked(obj, attr):
    objects = getattr(obj, attr).all()
    return objects.select_related("content_type") if objects.model is Permission else objects


def _names(objects) -> list[str]:
    return sorted(
        f"{o.content_type.app_label}.{o.codename}" if isinstance(o, Permission) else str(o)
        for o in objects
    )


# through model -> (action, attribute on the instance when reverse=False, on the other side)
_RELATIONS = {
    User.groups.through: ("user.groups", "groups", "user_set"),
    User.user_permissions.through: ("user.permissions", "user_permissions", "user_set"),
    Group.permissions.through: ("group.permissions", "permissions", "group_set"),
}


@receiver(m2m_changed, dispatch_uid="accounts.audit_roles_m2m")
def audit_role_links(sender, instance, action, reverse, model, pk_set, **kwargs):
    """Groups of a user, permissions of a user or a group: before and after, whichever side
    the change was made from (`user.groups.add(g)` or `g.user_set.add(user)`)."""
    if sender not in _RELATIONS or is_audit_suppressed():
        return
    name, forward_attr, reverse_attr = _RELATIONS[sender]
    if action in ("pre_add", "pre_remove", "pre_clear"):
        if not reverse:
            instance._audit_links_before = _names(_linked(instance, forward_attr))
        elif action == "pre_clear":
            # Every object linked to `instance` loses it: remember them to record each one.
            instance._audit_cleared = list(getattr(instance, reverse_attr).all())
        return
    if action in ("post_add", "post_remove") and not pk_set:
        return
    if not reverse:
        before = getattr(instance, "_audit_links_before", None)
        after = _names(_linked(instance, forward_attr))
        if before != after:
            _record(action=name, obj=instance, before=before, after=after)
        return
    # Reverse: `instance` is the group or permission; record the change on each linked object.
    if action == "post_clear":
        targets = getattr(instance, "_audit_cleared", [])
    else:
        targets = list(model.objects.filter(pk__in=pk_set))
    for target in targets:
        after = _names(_linked(target, forward_attr))
        if action == "post_add":
            before = sorted(set(after) - set(_names([instance])))
        else:
            before = sorted(set(after) | set(_names([instance])))
        _record(action=name, obj=target, before=before, after=after)
