"""Staff roles as Django groups, and the permissions each one holds.

- finance admin: everything in billing, statements, journals and the audit trail.
- reviewer: reads everything; approves, rejects and reassigns charges (and saves the account-map
  entries a reassignment makes); no period transitions, imports, exports or sends.
- viewer: reads everything, changes nothing.

The groups are created by a migration (accounts/migrations/0002_roles.py). Their permissions are
synced after every `migrate`, because the permissions of apps migrated later (statements,
journals) exist only once those apps' tables do.
"""

from __future__ import annotations

FINANCE_ADMIN = "finance admin"
REVIEWER = "reviewer"
VIEWER = "viewer"
ROLES = (FINANCE_ADMIN, REVIEWER, VIEWER)

APPS = ("billing", "statements", "journals", "accounts")

REVIEWER_EXTRA = (
    "billing.review_charge",
    "billing.add_accountmapping",
    "billing.change_accountmapping",
)


def _wanted(role: str, permissions) -> list:
    """The permissions `role` should hold, from all permissions of the product's apps."""
    if role == FINANCE_ADMIN:
        return list(permissions)
    view = [p for p in permissions if p.codename.startswith("view_")]
    if role == VIEWER:
        return view
    extra = [p for p in permissions if f"{p.content_type.app_label}.{p.codename}" in REVIEWER_EXTRA]
    return view + extra


def sync_role_permissions(Group, Permission) -> None:
    """Give each role group exactly its permissions (idempotent)."""
    permissions = list(
        Permission.objects.filter(content_type__app_label__in=APPS).select_related("content_type")
    )
    for role in ROLES:
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(_wanted(role, permissions))


def sync_after_migrate(sender, using="default", **kwargs) -> None:
    from django.contrib.auth.models import Group, Permission

    from .services import audit_suppressed

    if Group.objects.using(using).filter(name__in=ROLES).exists():
        # Not audited: the roles' permissions are declared here, in code, and a deploy that
        # syncs them is not someone's decision. Changes made by a person (admin, shell) are.
        with audit_suppressed():
            sync_role_permissions(Group, Permission)
