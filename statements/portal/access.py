"""Who may see what in the portal.

A user sees a PI's portal when they are that PI (`PI.user`) or an unrevoked delegate of that PI
(`PIDelegate`). Nothing else grants portal access: staff roles are for the admin, and a staff
member who is not a PI or a delegate sees no PI's data here. Every lookup of a PI, a statement or
a file goes through these functions; what a user may not see is a 404, exactly like what does not
exist.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.http import Http404

from billing.models import PI
from statements.models import Statement


def visible_pis(user) -> QuerySet[PI]:
    """The PIs whose portal `user` may read, the user's own PI first."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return PI.objects.none()
    return (
        PI.objects.filter(
            Q(user=user) | Q(delegates__user=user, delegates__revoked_at__isnull=True)
        )
        .distinct()
        .order_by("email")
    )


def get_pi(user, pi_id) -> PI:
    pi = visible_pis(user).filter(pk=pi_id).first()
    if pi is None:
        raise Http404("no such PI")
    return pi


def own_pi(user) -> PI | None:
    """The PI whose login `user` is (the one who may grant and revoke delegates)."""
    if not getattr(user, "is_authenticated", False):
        return None
    return PI.objects.filter(user=user).first()


def visible_statements(user) -> QuerySet[Statement]:
    """Statements a PI has received or may receive: final (not draft), rendered, of a PI the
    user may read."""
    return Statement.objects.filter(
        pi__in=visible_pis(user),
        is_draft=False,
        status__in=(Statement.Status.READY, Statement.Status.QUEUED, Statement.Status.SENT),
    ).exclude(pdf_path="")


def get_statement(user, statement_id) -> Statement:
    statement = (
        visible_statements(user)
        .select_related("period", "pi", "project", "run")
        .filter(pk=statement_id)
        .first()
    )
    if statement is None:
        raise Http404("no such statement")
    return statement
