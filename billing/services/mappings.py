"""Account-map entries changed in the admin (the review queue saves its own, see review.py).

Invariant: every change is saved with its audit event (before and after) in one transaction.
"""

from __future__ import annotations

from django.db import transaction

from accounts.services import audit_record

from ..models import AccountMapping

FIELDS = (
    "source_id",
    "account_id",
    "pi_email",
    "pi_name",
    "project_id",
    "fund_org",
    "cost_center",
    "note",
)


def _snapshot(mapping: AccountMapping) -> dict:
    return {name: getattr(mapping, name) for name in FIELDS}


@transaction.atomic
def account_mapping_save(
    *, mapping: AccountMapping, acting_user=None, actor: str = "", changed=()
) -> AccountMapping:
    before = None
    if mapping.pk:
        stored = AccountMapping.objects.filter(pk=mapping.pk).first()
        before = _snapshot(stored) if stored else None
    mapping.full_clean()
    mapping.save()
    audit_record(
        action="account_mapping.save",
        acting_user=acting_user,
        actor=actor,
        obj=mapping,
        before=before,
        after=_snapshot(mapping),
        details={"changed": list(changed)},
    )
    return mapping


@transaction.atomic
def account_mapping_delete(*, mapping: AccountMapping, acting_user=None, actor: str = "") -> None:
    audit_record(
        action="account_mapping.delete",
        acting_user=acting_user,
        actor=actor,
        obj=mapping,
        before=_snapshot(mapping),
    )
    mapping.delete()
