"""Review patterns: the one place imports, review and journals get them from.

Invariants:
- `with_review_patterns(config)` is the only way code reads the patterns it applies: the
  enabled `ReviewPattern` rows, compiled (case-insensitively where `ignore_case`).
- The configuration file seeds the rows: each of its `review.flag_patterns` and
  `review.fund_org_patterns` not yet a row (enabled or not) becomes one, with origin "config",
  when the patterns are read and after `migrate`. So the database wins: a pattern edited or
  disabled in the admin stays as the admin left it; a pattern deleted in the admin comes back
  from the file the next time it is read (disable it, or take it out of the file, to stop it).
- Every seeding is one audit event; admin edits are audited per row (billing/reference_audit.py).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Count

from accounts.services import audit_record

from ..config import BillingConfig
from ..models import Charge, ReviewPattern
from ..reference_audit import reference_audit_paused

Kind = ReviewPattern.Kind


def _config_patterns(config: BillingConfig) -> list[tuple[str, str, bool]]:
    """(kind, pattern text, ignore case) for each pattern the file lists."""
    found = []
    for kind, compiled in [(Kind.FLAG, p) for p in config.flag_patterns] + [
        (Kind.FUND_ORG, p) for p in config.fund_org_patterns
    ]:
        found.append((kind, compiled.pattern, bool(compiled.flags & re.IGNORECASE)))
    return found


def review_patterns_seed(*, config: BillingConfig, acting_user=None) -> int:
    """Add the file's patterns that are not rows yet; returns how many were added."""
    wanted = _config_patterns(config)
    if not wanted:
        return 0
    existing = set(ReviewPattern.objects.values_list("kind", "pattern"))
    missing = [w for w in wanted if (w[0], w[1]) not in existing]
    if not missing:
        return 0
    added = []
    with transaction.atomic(), reference_audit_paused():
        for kind, pattern, ignore_case in missing:
            try:
                with transaction.atomic():
                    ReviewPattern.objects.create(
                        kind=kind,
                        pattern=pattern,
                        ignore_case=ignore_case,
                        origin=ReviewPattern.Origin.CONFIG,
                    )
            except IntegrityError:  # seeded meanwhile by another process
                continue
            added.append({"kind": str(kind), "pattern": pattern, "ignore_case": ignore_case})
        if added:
            audit_record(
                action="reviewpattern.seed",
                acting_user=acting_user,
                details={"added": added},
                reason=f"from the configuration file {config.path or '(defaults)'}",
            )
    return len(added)


def compile_pattern(row: ReviewPattern) -> re.Pattern:
    return re.compile(row.pattern, re.IGNORECASE if row.ignore_case else 0)


def with_review_patterns(config: BillingConfig, *, seed: bool = True) -> BillingConfig:
    """`config` with the patterns the database holds, seeded from `config` first.

    `seed=False` (a dry run, which writes nothing) uses the file's unseeded patterns as they
    would be seeded, without writing them.
    """
    if seed:
        review_patterns_seed(config=config)
    flag, fund_org = [], []
    known = set()
    for row in ReviewPattern.objects.order_by("id"):
        known.add((row.kind, row.pattern))
        if row.enabled:
            (flag if row.kind == Kind.FLAG else fund_org).append(compile_pattern(row))
    for kind, pattern, ignore_case in _config_patterns(config):
        if (kind, pattern) not in known:
            compiled = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
            (flag if kind == Kind.FLAG else fund_org).append(compiled)
    return dataclasses.replace(config, flag_patterns=tuple(flag), fund_org_patterns=tuple(fund_org))


@dataclass
class PatternPreview:
    pattern: ReviewPattern
    # Flag pattern: charges it flags. Fund/org pattern: charges whose fund/org it matches.
    matches: int


@dataclass
class PeriodPreview:
    charges: int
    rows: list[PatternPreview]
    # Charges any enabled flag pattern flags; charges whose non-empty fund/org no enabled
    # fund/org pattern matches (0 when there are none: any value passes).
    flagged_by_flag_patterns: int
    flagged_by_fund_org_patterns: int


def review_patterns_preview(*, period, patterns=None) -> PeriodPreview:
    """What the patterns would flag among `period`'s charges, counted per pattern.

    Work is per distinct value (service, resource id, resource name; fund/org), not per charge,
    so a month of 100,000 charges with a few thousand resources is counted in seconds.
    """
    rows = list(patterns if patterns is not None else ReviewPattern.objects.order_by("kind", "id"))
    charges = Charge.objects.filter(period=period)
    total = charges.count()
    compiled = {id(row): compile_pattern(row) for row in rows}
    flag_rows = [r for r in rows if r.kind == Kind.FLAG]
    fund_rows = [r for r in rows if r.kind == Kind.FUND_ORG]
    counts = {id(row): 0 for row in rows}

    flagged_any = 0
    if flag_rows:
        for key, count in _counted(charges, "service_name", "resource_id", "resource_name"):
            hit_any = False
            for row in flag_rows:
                if any(value and compiled[id(row)].search(value) for value in key):
                    counts[id(row)] += count
                    hit_any = hit_any or row.enabled
            flagged_any += count if hit_any else 0

    failing = 0
    if fund_rows:
        enabled = [r for r in fund_rows if r.enabled]
        for (fund_org,), count in _counted(charges, "fund_org"):
            for row in fund_rows:
                if fund_org and compiled[id(row)].fullmatch(fund_org):
                    counts[id(row)] += count
            passes = any(compiled[id(r)].fullmatch(fund_org) for r in enabled)
            if enabled and fund_org and not passes:
                failing += count
    return PeriodPreview(
        charges=total,
        rows=[PatternPreview(pattern=row, matches=counts[id(row)]) for row in rows],
        flagged_by_flag_patterns=flagged_any,
        flagged_by_fund_org_patterns=failing,
    )


def _counted(charges, *names):
    """(values, how many charges have them) for each distinct combination of `names`."""
    grouped = charges.order_by().values(*names).annotate(_n=Count("id"))
    for row in grouped.values_list(*names, "_n"):
        yield row[:-1], row[-1]
