"""The review queue's decisions: approve, reject, return to the queue, reassign attribution.

Invariants:
- Each decision is one transaction: the charges' new state, a ReviewDecision linked to every
  charge it covers (their review history), and an audit event with the count and amounts.
- A decision covers one period; a selection spanning periods makes one decision per period.
- A finalized period refuses every decision; a rejected charge returns to the queue only while
  its period is open.
- Approval means "bill it as it is": a flagged charge with no PI, project or fund/org, or whose
  fund/org fails the configured patterns, can't be billed as it is. An approval whose selection
  holds one is refused as a whole, naming how many and saying to reassign them first: the
  reviewer confirmed a count and an amount, and billing part of it would bill something else.
- Rejection is a disposition with a note, never a delete.
- Work is set-based (INSERT … SELECT, UPDATE … WHERE), never per charge in Python, so 100,000
  charges take seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.lookups import Exact

from accounts.services import actor_name, audit_record

from ..config import BillingConfig
from ..locking import hold_referenced
from ..models import PI, AccountMapping, Charge, Flag, Project, ReviewDecision
from ..money import ZERO, ExactSum, money_text
from .figures import figures_changed
from .patterns import with_review_patterns
from .periods import PeriodError, period_writable

Status = Charge.ReviewStatus

# Flags that come from attribution, recomputed when a reviewer reassigns it.
ATTRIBUTION_FLAGS = Flag.NO_PI | Flag.NO_PROJECT | Flag.NO_FUND_ORG | Flag.FUND_ORG_PATTERN
ATTRIBUTED = Q(pi__isnull=False, project__isnull=False) & ~Q(fund_org="")
PATTERN_OK = Q(Exact(F("flags").bitand(int(Flag.FUND_ORG_PATTERN)), 0))


class ReviewError(Exception):
    """A review decision that can't be made; the message says why."""


@dataclass
class ReviewResult:
    action: str
    decisions: list[ReviewDecision] = field(default_factory=list)
    count: int = 0  # charges decided on
    billed: dict[str, str] = field(default_factory=dict)  # per currency, exact
    skipped: int = 0  # charges in the selection the action did not apply to
    skipped_why: str = ""
    account_mapping: AccountMapping | None = None

    def as_dict(self) -> dict:
        return {
            "action": self.action,
            "count": self.count,
            "billed": self.billed,
            "skipped": self.skipped,
            "skipped_why": self.skipped_why,
            "decisions": [d.pk for d in self.decisions],
        }


def _billed_by_currency(charges: QuerySet) -> dict[str, str]:
    rows = charges.order_by().values("billing_currency").annotate(total=ExactSum("billed_cost"))
    return {r["billing_currency"]: money_text(r["total"] or ZERO) for r in rows}


def _link(decision: ReviewDecision, charges: QuerySet, new_status: str | None = None) -> int:
    """Record the decision on each charge (and set the new status); returns how many.

    SQL, not the ORM, because this is the hot path of bulk review: the charges are linked with
    one INSERT … SELECT. On PostgreSQL the status UPDATE and the INSERT are one statement (a
    data-modifying CTE), so the linked set is exactly the updated set even with a concurrent
    import; SQLite has a single writer, so two statements see the same rows.
    """
    qn = connection.ops.quote_name
    table = qn(ReviewDecision.charges.through._meta.db_table)
    insert = f"INSERT INTO {table} (reviewdecision_id, charge_id) "
    picked = charges.order_by().annotate(picked_id=F("pk")).values_list("picked_id")
    sql, params = picked.query.sql_with_params()
    with connection.cursor() as cursor:
        if new_status and connection.vendor == "postgresql":
            cursor.execute(
                f"WITH changed AS (UPDATE {qn(Charge._meta.db_table)} SET review_status = %s "
                f"WHERE id IN ({sql}) RETURNING id) {insert} SELECT %s, id FROM changed",
                [new_status, *params, decision.pk],
            )
            return cursor.rowcount
        cursor.execute(
            f"{insert} SELECT %s, picked.picked_id FROM ({sql}) picked", [decision.pk, *params]
        )
        count = cursor.rowcount
    if new_status:
        _decided(decision).update(review_status=new_status)
    return count


def _decided(decision: ReviewDecision) -> QuerySet:
    return Charge.objects.filter(decisions=decision)


def _decide(
    *,
    action: str,
    charges: QuerySet,
    eligible: Q,
    new_status: str | None,
    acting_user,
    actor: str,
    note: str,
    require_open: bool = False,
    attribution: dict | None = None,
) -> ReviewResult:
    """The common shape: per period, lock, link eligible charges, change them, audit."""
    result = ReviewResult(action=action)
    billed: dict[str, object] = {}
    period_ids = charges.order_by().values_list("period_id", flat=True).distinct()
    for period_id in sorted(set(period_ids)):
        period = period_writable(period_id, what="be reviewed")
        if require_open and not period.is_open():
            raise PeriodError(
                f"period {period.key} is {period.status}; reopen it to return charges to the queue"
            )
        in_period = charges.filter(period_id=period_id)
        # Counted before the decision: the selection may be a filter on the status it changes
        # (the queue's "flagged"), which would count the decided charges out afterwards.
        selected = in_period.count()
        picked = in_period.filter(eligible)
        decision = ReviewDecision.objects.create(
            period=period,
            action=action,
            acting_user=acting_user if getattr(acting_user, "pk", None) else None,
            actor=actor or actor_name(acting_user),
            note=note,
            charge_count=0,
            attribution=attribution or {},
        )
        count = _link(decision, picked, new_status)
        result.skipped += selected - count
        if not count:
            decision.delete()
            continue
        decided = _decided(decision)
        decision.charge_count = count
        decision.billed = _billed_by_currency(decided)
        decision.save(update_fields=["charge_count", "billed"])
        audit_record(
            action=f"charge.{action}",
            acting_user=acting_user,
            actor=decision.actor,
            obj=decision,
            after={"review_status": new_status} if new_status else attribution,
            details={
                "period": period.key,
                "charges": count,
                "billed": decision.billed,
                "decision": decision.pk,
            },
            reason=note,
        )
        result.decisions.append(decision)
        result.count += count
        for currency, amount in decision.billed.items():
            billed[currency] = billed.get(currency, ZERO) + Decimal(amount)
    result.billed = {c: money_text(v) for c, v in sorted(billed.items())}
    figures_changed(decision.period_id for decision in result.decisions)
    return result


def _unbillable_as_is(charges: QuerySet, config: BillingConfig | None) -> dict[str, int]:
    """Flagged charges of the selection that can't be billed as they are, counted by reason.

    The flags say what the importer (or the last reassignment) found; with `config`, a fund/org
    that fails today's patterns counts too, so a pattern added after the import is honoured.
    """
    flagged = charges.filter(review_status=Status.FLAGGED).order_by()
    counts = {
        "no PI, project or fund/org": flagged.exclude(ATTRIBUTED).count(),
    }
    attributed = flagged.filter(ATTRIBUTED)
    failing = attributed.exclude(PATTERN_OK)
    if config is not None and config.fund_org_patterns:
        fund_orgs = attributed.values_list("fund_org", flat=True).distinct()
        bad = [f for f in fund_orgs if not any(p.fullmatch(f) for p in config.fund_org_patterns)]
        failing = attributed.filter(~PATTERN_OK | Q(fund_org__in=bad))
    counts["a fund/org that fails the configured patterns"] = failing.count()
    return {why: n for why, n in counts.items() if n}


@transaction.atomic
def charge_approve(
    *,
    charges: QuerySet,
    acting_user=None,
    actor: str = "",
    note: str = "",
    config: BillingConfig | None = None,
) -> ReviewResult:
    """Flagged → approved (billable): every flagged charge of the selection, or none.

    Refused as a whole (a ReviewError, nothing written) when a flagged charge of the selection
    can't be billed as it is; charges that aren't flagged are left as they were and counted.
    """
    # Lock the selection's periods first (as each decision does), so the check below sees what
    # the approval will change: a concurrent import or reassignment waits for this decision.
    period_ids = charges.order_by().values_list("period_id", flat=True).distinct()
    for period_id in sorted(set(period_ids)):
        period_writable(period_id, what="be reviewed")
    if config is not None:
        config = with_review_patterns(config)
    unbillable = _unbillable_as_is(charges, config)
    if unbillable:
        total = sum(unbillable.values())
        reasons = "; ".join(f"{n:,} with {why}" for why, n in unbillable.items())
        raise ReviewError(
            f"nothing was approved: {total:,} of the selected charge(s) can't be billed as "
            f"they are ({reasons}). Reassign them first (PI, project, fund/org), or leave them "
            "out of the selection."
        )
    result = _decide(
        action=ReviewDecision.Action.APPROVE,
        charges=charges,
        # Belt and braces under the check above: an unbillable charge is never approved.
        eligible=Q(review_status=Status.FLAGGED) & ATTRIBUTED & PATTERN_OK,
        new_status=Status.APPROVED,
        acting_user=acting_user,
        actor=actor,
        note=note,
    )
    if result.skipped:
        result.skipped_why = "not flagged"
    return result


@transaction.atomic
def charge_reject(
    *, charges: QuerySet, note: str, acting_user=None, actor: str = ""
) -> ReviewResult:
    """Flagged or approved → rejected: never billed. The note is required."""
    if not (note or "").strip():
        raise ReviewError("a rejection needs a note saying why")
    result = _decide(
        action=ReviewDecision.Action.REJECT,
        charges=charges,
        eligible=Q(review_status__in=[Status.FLAGGED, Status.APPROVED]),
        new_status=Status.REJECTED,
        acting_user=acting_user,
        actor=actor,
        note=note.strip(),
    )
    if result.skipped:
        result.skipped_why = "clean or already rejected"
    return result


@transaction.atomic
def charge_return(
    *, charges: QuerySet, acting_user=None, actor: str = "", note: str = ""
) -> ReviewResult:
    """Rejected → flagged again (the queue), while the period is open.

    A rejected charge with no reason left (its attribution was fixed before it was rejected) goes
    back to clean: the queue holds only charges with a reason.
    """
    result = _decide(
        action=ReviewDecision.Action.RETURN,
        charges=charges,
        eligible=Q(review_status=Status.REJECTED),
        new_status=None,
        acting_user=acting_user,
        actor=actor,
        note=note,
        require_open=True,
    )
    for decision in result.decisions:
        decided = _decided(decision)
        decided.filter(flags=0).update(review_status=Status.CLEAN)
        decided.exclude(flags=0).update(review_status=Status.FLAGGED)
    if result.skipped:
        result.skipped_why = "not rejected"
    return result


def _attribution_flags(config: BillingConfig, *, pi, project, fund_org: str) -> int:
    flags = 0
    if pi is None:
        flags |= Flag.NO_PI
    if project is None:
        flags |= Flag.NO_PROJECT
    if not fund_org:
        flags |= Flag.NO_FUND_ORG
    elif config.fund_org_patterns and not any(
        p.fullmatch(fund_org) for p in config.fund_org_patterns
    ):
        flags |= Flag.FUND_ORG_PATTERN
    return int(flags)


@transaction.atomic
def charge_reassign(
    *,
    charges: QuerySet,
    config: BillingConfig,
    pi_email: str = "",
    project_id: str = "",
    fund_org: str = "",
    save_mapping: bool = False,
    acting_user=None,
    actor: str = "",
    note: str = "",
) -> ReviewResult:
    """Set PI, project and/or fund/org on the selection and recompute their flags.

    Blank fields are left as they are. A flagged charge whose reasons are all resolved becomes
    clean; a clean or approved charge whose new attribution fails becomes flagged. With
    `save_mapping`, the attribution is also saved as an account-map entry for the selection's one
    sub-account, so the next delivery is attributed automatically.
    """
    config = with_review_patterns(config)
    pi_email = (pi_email or "").strip().lower()
    project_id = (project_id or "").strip()
    fund_org = (fund_org or "").strip()
    if not (pi_email or project_id or fund_org):
        raise ReviewError("give at least one of PI email, project id and fund/org")
    if (
        config.fund_org_patterns
        and fund_org
        and not any(p.fullmatch(fund_org) for p in config.fund_org_patterns)
    ):
        raise ReviewError(f"fund/org {fund_org!r} does not match the configured patterns")
    mapping_target = _mapping_target(charges) if save_mapping else None

    values = {}
    attribution = {}
    if pi_email:
        values["pi"], _ = PI.objects.get_or_create(email=pi_email)
        attribution["pi_email"] = pi_email
    if project_id:
        values["project"], _ = Project.objects.get_or_create(code=project_id)
        attribution["project_id"] = project_id
    if fund_org:
        values["fund_org"] = fund_org
        attribution["fund_org"] = fund_org
    for key, model in (("pi", PI), ("project", Project)):
        if key in values and hold_referenced(model, [values[key].pk]):
            raise ReviewError(f"the {key} was deleted meanwhile; nothing was changed")

    result = _decide(
        action=ReviewDecision.Action.REASSIGN,
        charges=charges,
        eligible=Q(),
        new_status=None,
        acting_user=acting_user,
        actor=actor,
        note=note,
        attribution=attribution,
    )
    for decision in result.decisions:
        decided = _decided(decision)
        decided.update(**values)
        _recompute_flags(decided, config)

    if mapping_target is not None and result.count:
        result.account_mapping = _save_mapping(
            mapping_target, attribution, acting_user=acting_user, actor=actor
        )
        for decision in result.decisions:
            decision.account_mapping = result.account_mapping
            decision.save(update_fields=["account_mapping"])
    return result


def _recompute_flags(decided: QuerySet, config: BillingConfig) -> None:
    """New attribution flags and status, one UPDATE per distinct combination (a handful)."""
    combos = decided.order_by().values_list("pi_id", "project_id", "fund_org", "flags").distinct()
    for pi_id, project_id, fund_org, flags in combos:
        attribution_flags = _attribution_flags(
            config, pi=pi_id, project=project_id, fund_org=fund_org
        )
        new_flags = (flags & ~int(ATTRIBUTION_FLAGS)) | attribution_flags
        group = decided.filter(pi_id=pi_id, project_id=project_id, fund_org=fund_org, flags=flags)
        # Status follows the reasons: resolved flagged → clean; newly failing billable → flagged.
        if new_flags == 0:
            group.filter(review_status=Status.FLAGGED).update(flags=0, review_status=Status.CLEAN)
            group.exclude(review_status=Status.FLAGGED).update(flags=0)
        elif attribution_flags:
            group.filter(review_status__in=[Status.CLEAN, Status.APPROVED]).update(
                flags=new_flags, review_status=Status.FLAGGED
            )
            group.filter(review_status__in=[Status.FLAGGED, Status.REJECTED]).update(
                flags=new_flags
            )
        else:
            group.update(flags=new_flags)


def _mapping_target(charges: QuerySet) -> tuple[int, str]:
    """The (source, account id) the selection shares, or a ReviewError saying why not."""
    accounts = list(
        charges.order_by()
        .values_list("source_id", "sub_account_id", "billing_account_id")
        .distinct()[:2]
    )
    if len(accounts) != 1:
        raise ReviewError(
            "to save an account-map entry, select charges of one source and one account"
        )
    source_id, sub_account, billing_account = accounts[0]
    account_id = sub_account or billing_account
    if not account_id:
        raise ReviewError("these charges have no sub-account or billing account id to map")
    return source_id, account_id


def _save_mapping(target, attribution: dict, *, acting_user, actor: str) -> AccountMapping:
    source_id, account_id = target
    mapping = AccountMapping.objects.filter(source_id=source_id, account_id=account_id).first()
    before = None
    if mapping is None:
        mapping = AccountMapping(source_id=source_id, account_id=account_id)
    else:
        before = {f: getattr(mapping, f) for f in ("pi_email", "project_id", "fund_org")}
    for name, value in attribution.items():
        setattr(mapping, name, value)
    mapping.note = mapping.note or "saved from the review queue"
    mapping.save()
    audit_record(
        action="account_mapping.save",
        acting_user=acting_user,
        actor=actor,
        obj=mapping,
        before=before,
        after={f: getattr(mapping, f) for f in ("pi_email", "project_id", "fund_org")},
    )
    return mapping
