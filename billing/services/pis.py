"""Writes for PI logins and delegates: invitations, delegate grants and revocations.

Invariants:
- A PI's login is a User linked by `PI.user`. Invitations and grants only ever create non-staff,
  non-superuser users with no usable password; they never link a PI to a staff account, so a PI's
  login never reaches the admin.
- One user per email (case-insensitive): an invitation reuses the user that already has it.
- A person is an active delegate of a PI at most once (a constraint); a revocation keeps the row.
- Every invitation, grant and revocation writes an audit event in the same transaction. Emails
  go out after the transaction commits (nothing is mailed for a change that rolled back), and a
  message that could not be sent is audited as such.
- The set-password link is Django's password-reset token: it works once, expires after
  PASSWORD_RESET_TIMEOUT, and stops working when the password changes or the user logs in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts.models import User
from accounts.services import audit_record
from openchargeback import links

from ..models import PI, PIDelegate
from ..reference_audit import acting_as

log = logging.getLogger(__name__)


class PIAccessError(Exception):
    """A refused invitation, grant or revocation; the message says why."""


@dataclass
class InviteResult:
    invited: list[str] = field(default_factory=list)  # emails a set-password link went to
    created: list[str] = field(default_factory=list)  # of those, new logins
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (email, why)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (email, mail error)


def _base_url(request_or_base_url: HttpRequest | str | None) -> str:
    """A given URL (a command's --base-url), else OPENCHARGEBACK_BASE_URL; never the request's
    Host, which the client chooses (openchargeback/links.py)."""
    if isinstance(request_or_base_url, str) and request_or_base_url:
        return request_or_base_url.rstrip("/")
    return links.base_url()


def set_password_link(user: User, base_url: str) -> str:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    path = reverse("password_reset_confirm", kwargs={"uidb64": uid, "token": token})
    return base_url + path


def _user_for_email(email: str) -> User | None:
    matches = User.objects.filter(Q(email__iexact=email) | Q(username__iexact=email))
    return matches.order_by("id").first()


def _new_login(email: str, name: str = "") -> User:
    first, _, last = (name or "").strip().partition(" ")
    user = User(username=email, email=email, first_name=first[:150], last_name=last[:150])
    user.is_staff = False
    user.is_superuser = False
    user.set_unusable_password()
    user.save()
    return user


def _message(*, user: User, base_url: str, template: str, context: dict) -> EmailMultiAlternatives:
    context = {
        **context,
        "user": user,
        "link": set_password_link(user, base_url),
        "portal_url": base_url + reverse("portal:home"),
        "login_url": base_url + reverse("portal-login"),
        "valid_days": max(1, settings.PASSWORD_RESET_TIMEOUT // 86400),
    }
    subject = " ".join(render_to_string(f"portal/email/{template}_subject.txt", context).split())
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(f"portal/email/{template}_body.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[user.email],
    )
    message.attach_alternative(
        render_to_string(f"portal/email/{template}_body.html", context), "text/html"
    )
    return message


def _send_after_commit(outgoing: list[tuple[str, callable]], result: InviteResult, acting_user):
    """Build each message after commit (its token must see the committed user) and send it."""

    def send():
        connection = get_connection(fail_silently=False)
        for email, build in outgoing:
            try:
                message = build()
                message.connection = connection
                message.send()
            except Exception as exc:  # a mail server refusal must not stop the other invitations
                log.warning("invitation to %s not sent: %s", email, exc)
                result.failed.append((email, str(exc)))
                with transaction.atomic():
                    audit_record(
                        action="pi.invite_failed",
                        acting_user=acting_user,
                        details={"email": email, "error": str(exc)[:500]},
                    )
            else:
                result.invited.append(email)

    transaction.on_commit(send)


@transaction.atomic
def pi_invite(
    *, pis, acting_user, request_or_base_url: HttpRequest | str | None = None
) -> InviteResult:
    """Give each PI a login (or reuse theirs) and email them a link to set their password.

    `pis`: PIs (a queryset or a list). Skipped, with the reason: a PI whose email belongs to a
    staff account, or whose login is deactivated. Links start with OPENCHARGEBACK_BASE_URL, or
    with `request_or_base_url` when it is a URL such as "https://billing.example.edu".
    """
    base_url = _base_url(request_or_base_url)
    result = InviteResult()
    outgoing = []
    for pi in pis:
        email = pi.email.strip().lower()
        user = pi.user or _user_for_email(email)
        if user is not None and (user.is_staff or user.is_superuser):
            result.skipped.append((email, "the email belongs to a staff account"))
            continue
        if user is not None and not user.is_active:
            result.skipped.append((email, "the login is deactivated"))
            continue
        created = user is None
        if created:
            user = _new_login(email, pi.name)
            result.created.append(email)
        if pi.user_id != user.pk:
            pi.user = user
            pi.save(update_fields=["user"])
        audit_record(
            action="pi.invite",
            acting_user=acting_user,
            obj=pi,
            details={"email": email, "user": user.get_username(), "created_user": created},
        )
        outgoing.append(
            (
                email,
                lambda user=user, pi=pi: _message(
                    user=user, base_url=base_url, template="invite", context={"pi": pi}
                ),
            )
        )
    _send_after_commit(outgoing, result, acting_user)
    return result


def _may_manage(pi: PI, acting_user) -> bool:
    if acting_user is None or not getattr(acting_user, "pk", None):
        return False
    return pi.user_id == acting_user.pk or acting_user.has_perm("billing.change_pi")


@transaction.atomic
def pi_delegate_grant(
    *, pi: PI, email: str, acting_user, request_or_base_url: HttpRequest | str | None = None
) -> PIDelegate:
    """Let the person with `email` read `pi`'s portal. Makes them a login if they have none,
    and (with `request_or_base_url`) mails a new login its set-password link.

    Only the PI themself, or staff who may change PIs, grant access.
    """
    if not _may_manage(pi, acting_user):
        raise PIAccessError("only the PI (or finance staff) may grant access")
    email = (email or "").strip().lower()
    if "@" not in email:
        raise PIAccessError("give the delegate's email address")
    if email == pi.email.lower():
        raise PIAccessError("that is the PI's own email")
    user = _user_for_email(email)
    if user is not None and pi.user_id == user.pk:
        raise PIAccessError("that is the PI's own login")
    if user is not None and not user.is_active:
        raise PIAccessError(f"the login of {email} is deactivated")
    if user is not None and pi.delegates.filter(user=user, revoked_at__isnull=True).exists():
        raise PIAccessError(f"{email} is already a delegate")
    created = user is None
    if created:
        user = _new_login(email)
    delegate = PIDelegate.objects.create(pi=pi, user=user, granted_by=acting_user)
    audit_record(
        action="pi.delegate_grant",
        acting_user=acting_user,
        obj=pi,
        after={"delegate": email, "delegate_id": delegate.pk},
        details={"email": email, "created_user": created},
    )
    if created and request_or_base_url is not None:
        base_url = _base_url(request_or_base_url)
        _send_after_commit(
            [
                (
                    email,
                    lambda: _message(
                        user=user, base_url=base_url, template="delegate", context={"pi": pi}
                    ),
                )
            ],
            InviteResult(),
            acting_user,
        )
    return delegate


@transaction.atomic
def pi_delegate_revoke(*, delegate: PIDelegate, acting_user, reason: str = "") -> PIDelegate:
    """End a delegate's access now (their open sessions lose it on their next request)."""
    delegate = (
        PIDelegate.objects.select_for_update().select_related("pi", "user").get(pk=delegate.pk)
    )
    if not _may_manage(delegate.pi, acting_user):
        raise PIAccessError("only the PI (or finance staff) may revoke access")
    if delegate.revoked_at is not None:
        raise PIAccessError("this access was already revoked")
    delegate.revoked_at = timezone.now()
    delegate.revoked_by = acting_user
    delegate.save(update_fields=["revoked_at", "revoked_by"])
    audit_record(
        action="pi.delegate_revoke",
        acting_user=acting_user,
        obj=delegate.pi,
        before={"delegate": delegate.user.email, "delegate_id": delegate.pk},
        details={"email": delegate.user.email},
        reason=reason,
    )
    return delegate


@transaction.atomic
def pi_login_for_reset(*, email: str) -> User | None:
    """For "forgot password": the login of the PI with this email, made now if the PI (known
    from the billing data) has none yet. None for an email that is not a PI's, or a PI whose
    email is a staff account's. The caller mails the reset link only to the address on file.
    """
    email = (email or "").strip().lower()
    pi = PI.objects.select_for_update().filter(email=email).first()
    if pi is None or pi.user_id:
        return None
    user = _user_for_email(email)
    if user is not None and (user.is_staff or user.is_superuser):
        return None
    created = user is None
    if created:
        user = _new_login(email, pi.name)
    pi.user = user
    pi.save(update_fields=["user"])
    audit_record(
        action="pi.login_create",
        actor="password-reset",
        obj=pi,
        details={"email": email, "user": user.get_username(), "created_user": created},
        reason="forgot password from the portal's login page",
    )
    return user


NAME_MAX = PI._meta.get_field("name").max_length


@transaction.atomic
def pi_rename(*, pi: PI, name: str, acting_user) -> PI:
    """Set a PI's display name: the PI themself (the portal's profile) or staff who may change
    PIs. Audited like every PI edit (billing/reference_audit.py), naming who acted. An empty
    name is refused: the name is how emails and statements address the PI.

    A statement already sent keeps the name it printed; a rename alone never revises it
    (docs/statements.md, "PI names").
    """
    if not _may_manage(pi, acting_user):
        raise PIAccessError("only the PI (or finance staff) may change the name")
    name = " ".join((name or "").split())
    if not name:
        raise PIAccessError("give a name")
    if len(name) > NAME_MAX:
        raise PIAccessError(f"a name has at most {NAME_MAX} characters")
    pi = PI.objects.select_for_update().get(pk=pi.pk)
    if pi.name != name:
        pi.name = name
        with acting_as(acting_user):
            pi.save(update_fields=["name"])
    return pi
