"""Reads for journals: what a period's journal contains, computed from its billable charges.

The rounding rule (billing/rounding.py) is the statements' rule, so the journal ties to them:

- A statement group is (PI, project, fund/org, currency) within the period. Its amount due is
  the exact sum of its billable charges' BilledCost, rounded once to the cent (half up).
- A GL journal allocates each group's amount due over the group's parts (source, GL account)
  with `allocate_cents`, then adds the allocations up per (fund/org, account, source[, project])
  for the debits, and per source for the credits. Each fund/org's debits are therefore exactly
  the amounts due of that fund's statements, and debits equal credits by construction (the
  export still checks, and refuses if not).
- Detail rows allocate each group's amount due over its charges the same way; summary rows are
  the groups themselves.
- Once a period has statements on record, the journal is exported only when it ties to them:
  `statement_tie` compares every group's amount due and charge count with its current
  statement's `due_amount` and `charge_count` (same PI, project, fund/org, currency), and
  refuses when a group differs, has no statement, or a statement's group is gone (unless that
  statement shows 0.00 over no charge) - regenerate first. So each debit line adds up, per
  group, to the statement on record. Before any statement exists, the numbers are those
  `generate` would put on record.

The groups and their rounding are statements.groups (one home with statements and the portal):
one GROUP BY (pi, project, fund/org, currency, source, tags) with an exact SUM; only the few
thousand groups reach Python. Tags are in the key because a tag on a charge may name its GL
account.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Expression, JSONField

from billing.config import BillingConfig
from billing.models import BillingPeriod, Charge, Source
from billing.money import MONEY_CONTEXT, ZERO, exact_sum, money_text
from billing.rounding import allocate_cents
from statements.groups import GROUP_FIELDS, GroupFigures, PartSpec
from statements.groups import statement_groups as group_figures
from statements.models import Statement

from .models import JournalExport, JournalTemplate

BILLABLE = list(Charge.BILLABLE_STATUSES)


# -- small reads ------------------------------------------------------------------------------


def period_has_journal(period: BillingPeriod) -> bool:
    """True when a general-ledger journal was exported after the statements last changed.

    An export ties to the statements on record when it is made (build.py refuses otherwise), so
    the latest one still does unless a later generation changed a statement. For the finalize
    check: a journal exported before a revision is not the month's record.
    """
    from statements.models import StatementRun  # journals build on statements

    latest = (
        JournalExport.objects.filter(period=period, kind=JournalTemplate.Kind.GL)
        .order_by("-created_at", "-id")
        .first()
    )
    if latest is None:
        return False
    later_runs = StatementRun.objects.filter(
        period=period, kind=StatementRun.Kind.GENERATE, created_at__gte=latest.created_at
    ).values_list("summary", flat=True)
    return not any(
        any(n for kind, n in (summary or {}).get("changes", {}).items() if kind != "unchanged")
        for summary in later_runs
    )


def period_exports(period: BillingPeriod):
    return JournalExport.objects.filter(period=period).select_related("template")


def template_find(name: str) -> JournalTemplate | None:
    """A template by exact name; a kind (detail, summary, gl) names that kind's oldest template."""
    found = JournalTemplate.objects.filter(name=name).first()
    if found is None and name in JournalTemplate.Kind.values:
        found = JournalTemplate.objects.filter(kind=name).order_by("id").first()
    return found


def billable_charges(period: BillingPeriod):
    return Charge.objects.filter(period=period, review_status__in=BILLABLE)


def flagged_count(period: BillingPeriod) -> int:
    return Charge.objects.filter(period=period, review_status=Charge.ReviewStatus.FLAGGED).count()


# -- the source side ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceInfo:
    id: int
    name: str
    display_name: str
    credit_fund_org: str
    account_code: str


def source_infos(config: BillingConfig, ids=None) -> dict[int, SourceInfo]:
    """Sources with their journal settings: the configuration's entry wins over the database row
    (an import keeps the row in step with the configuration; staff may add others)."""
    rows = Source.objects.all() if ids is None else Source.objects.filter(id__in=ids)
    infos = {}
    for row in rows:
        configured = config.source(row.name)
        infos[row.id] = SourceInfo(
            id=row.id,
            name=row.name,
            display_name=(configured.display_name if configured else row.display_name) or row.name,
            credit_fund_org=configured.credit_fund_org if configured else row.credit_fund_org,
            account_code=configured.account_code if configured else row.account_code,
        )
    return infos


def tag_value(tags, key: str) -> str:
    """A tag's value, the key matched case-insensitively and trimmed (as the importer does)."""
    if not isinstance(tags, dict):
        return ""
    wanted = key.strip().lower()
    for name, value in tags.items():
        if str(name).strip().lower() != wanted:
            continue
        if value is None or isinstance(value, (dict, list)):
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value).strip()
    return ""


def account_for(tags, source: SourceInfo, config: BillingConfig) -> str:
    """GL account: the charge's tag, else the source's account code, else the default."""
    return (
        tag_value(tags, config.journal.account_tag)
        or source.account_code
        or config.journal.default_account
    )


# -- statement groups ---------------------------------------------------------------------------

# A statement group and its rounded figures live in statements.groups (one home for statements,
# the portal and journals); the journal splits each group into parts (source id, GL account).
StatementGroup = GroupFigures


def part_order(sources: dict[int, SourceInfo]):
    """The order a group's parts are allocated in (ties go by it): source name, then account."""
    return lambda part: (sources[part[0]].name, part[1])


class AccountTagCandidates(Expression):
    """The tags of a charge that may carry the account tag, else NULL; a GROUP BY key.

    PostgreSQL: the jsonb itself (hashing jsonb is cheaper than casting a million of them to
    text to search it). SQLite: the stored text when it mentions the key in any case (LIKE,
    done in C), else NULL, so most charges fall in one group per (PI, project, fund/org,
    currency, source). Either way the key is matched exactly in Python (`tag_value`).
    """

    def __init__(self, key: str):
        super().__init__(output_field=JSONField())
        self.key = key

    def as_sql(self, compiler, connection):
        table = compiler.quote_name_unless_alias(Charge._meta.db_table)
        column = f"{table}.{compiler.quote_name_unless_alias('tags')}"
        if connection.vendor == "postgresql":
            return column, []
        return f"CASE WHEN {column} LIKE %s THEN {column} END", [f"%{self.key.strip()}%"]

    def get_group_by_cols(self):
        return [self]


def statement_groups(
    period: BillingPeriod, config: BillingConfig, *, with_list: bool = True
) -> tuple[list[StatementGroup], dict[int, SourceInfo]]:
    """Every statement group of the period's billable charges, in the journal's order (currency,
    PI email, project, fund/org), with the sources; parts are (source id, GL account).

    The groups come from statements.groups (GROUP BY in the database, exact sums);
    `with_list=False` skips the list-price sum (the GL). How each database is asked:

    - PostgreSQL: one GROUP BY with the account-tag candidates (the jsonb) in its key, hashed
      in a parallel scan of the table (`_tags_in_key_parallel`).
    - SQLite (no hash aggregate: a GROUP BY sorts every row): the groups by source alone, read
      in order from the covering index of journals/dbindexes.py (no sort, no table access),
      then the charges whose tags mention the account tag, one by one, moved from their
      source's default account to the account their tag names (`_tags_apart`).

    The parts are the same exact sums either way (journals/tests/test_group_ways.py runs both
    on one month and compares the files byte for byte).
    """
    sources = source_infos(config)
    way = _tags_in_key_parallel if connection.vendor == "postgresql" else _tags_apart
    groups = way(period, config, sources, with_list=with_list)
    ordered = sorted(
        groups.values(), key=lambda g: (g.currency, g.pi_email, g.project_code, g.fund_org)
    )
    return ordered, sources


def _tags_in_key(period, config, sources, *, with_list: bool):
    """One GROUP BY with the account-tag candidates in its key; parts keyed by their account."""
    parts = PartSpec(
        values={
            "source_id": "source_id",
            "account_tags": AccountTagCandidates(config.journal.account_tag),
        },
        key=lambda row: (
            row["source_id"],
            account_for(row["account_tags"], sources[row["source_id"]], config),
        ),
    )
    return group_figures(period, parts=parts, with_list=with_list)


def _tags_in_key_parallel(period, config, sources, *, with_list: bool):
    """PostgreSQL: `_tags_in_key`, hashed, in a parallel scan.

    A few thousand groups: enough memory to hash them instead of sorting a million rows on disk
    (the default work_mem is 4 MB). The planner takes the groups for a tenth of the rows (it
    can't know that (PI, project, fund/org, currency, source, tags) repeat), so gathering the
    workers' partial sums looks dear to it and it scans alone (1.8 s of 2.8 s at a million
    charges); they are a few thousand rows per worker, so let it price them as such. JIT
    compiling the plan cost 0.10-0.14 s in each of the three processes (EXPLAIN ANALYZE) for
    little: the time goes to hashing the jsonb, which calls functions JIT doesn't inline. SET
    LOCAL ends with this transaction."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute("SET LOCAL parallel_tuple_cost = 0.01")
        cursor.execute("SET LOCAL jit = off")
        return _tags_in_key(period, config, sources, with_list=with_list)


def _tags_apart(period, config, sources, *, with_list: bool):
    """SQLite: groups by (source, its default account), read in order from the covering index
    (journals/dbindexes.py); then the account tag's candidates, one by one, moved to the
    account their tag names. The same parts, to the digit, as `_tags_in_key`."""
    parts = PartSpec(
        values={"source_id": "source_id"},
        key=lambda row: (row["source_id"], account_for(None, sources[row["source_id"]], config)),
    )
    groups = group_figures(period, parts=parts, with_list=with_list)
    for row in tagged_charges(period, config).iterator(chunk_size=5000):
        source = sources[row["source_id"]]
        account = account_for(row["account_tags"], source, config)
        default = account_for(None, source, config)
        if account == default:
            continue
        key = (row["pi_id"], row["project_id"], row["fund_org"], row["billing_currency"])
        _move_tagged(groups[key], row, (source.id, default), (source.id, account), with_list)
    return groups


def tagged_charges(period: BillingPeriod, config: BillingConfig):
    """The billable charges whose stored tags mention the account tag's key (its candidates),
    one row each: few, usually none. Not grouped: with a GROUP BY and the period given as a
    parameter, SQLite walks the covering index and looks each charge up in the table (1.2 s at
    a million charges); without, it scans the status index's range in table order (0.3 s).
    A test reads the plan."""
    return (
        billable_charges(period)
        .annotate(account_tags=AccountTagCandidates(config.journal.account_tag))
        .filter(account_tags__isnull=False)
        .values("account_tags", "source_id", *GROUP_FIELDS, "billed_cost", "list_cost")
        .order_by()
    )


def _move_tagged(group: StatementGroup, charge: dict, source_part, tag_part, with_list: bool):
    """Move a tagged charge's exact amounts from its source's default part to its tag's."""
    billed = charge["billed_cost"]
    moves = [(group.parts, billed)]
    if with_list:
        listed = charge["list_cost"]
        moves.append((group.list_parts, billed if listed is None else listed))
    for parts, amount in moves:
        parts[source_part] = MONEY_CONTEXT.subtract(parts[source_part], amount)
        parts[tag_part] = exact_sum((parts.get(tag_part, ZERO), amount))
    counts = group.part_counts
    counts[source_part] -= 1
    counts[tag_part] = counts.get(tag_part, 0) + 1
    if not counts[source_part]:  # every charge of that source carries the tag: no such part
        del counts[source_part], group.parts[source_part]
        if with_list:
            del group.list_parts[source_part]


# -- the statements on record ------------------------------------------------------------------


@dataclass(frozen=True)
class StatementOnRecord:
    """A period's current statement (not superseded), as the journal ties to it."""

    key: tuple[int, int, str, str]  # (PI id, project id, fund/org, currency)
    number: str
    due_amount: Decimal  # cents, as issued
    charge_count: int
    is_draft: bool
    pi_email: str
    project_code: str


def statements_on_record(period: BillingPeriod) -> dict[tuple, StatementOnRecord]:
    """The period's current statements by group key: the last ones generated (draft or final,
    sent or not); a revision replaces what it supersedes."""
    rows = (
        Statement.objects.filter(period=period, superseded_by__isnull=True)
        .values_list(
            "pi_id",
            "project_id",
            "fund_org",
            "currency",
            "number",
            "due_amount",
            "charge_count",
            "is_draft",
            "pi__email",
            "project__code",
        )
        .order_by()
    )
    return {
        (pi, project, fund_org, currency): StatementOnRecord(
            (pi, project, fund_org, currency), number, due, count, draft, email, code
        )
        for pi, project, fund_org, currency, number, due, count, draft, email, code in rows
    }


def statement_tie(
    period: BillingPeriod, groups: list[StatementGroup], records: dict[tuple, StatementOnRecord]
) -> list[str]:
    """Why the billable charges no longer make the statements on record (empty: they do).

    A group ties when its statement shows the same amount due (rounded the same way) over the
    same number of charges. A statement whose group has no billable charge left ties only when it
    shows 0.00 over none (a revision of a sent statement whose group vanished).
    """
    differ: list[str] = []
    seen = set()
    for group in groups:
        seen.add(group.key)
        record = records.get(group.key)
        now = f"{money_text(group.due_amount)} {group.currency} over {group.charge_count}"
        who = f"PI {group.pi_email}, project {group.project_code}, fund/org {group.fund_org!r}"
        if record is None:
            differ.append(f"{who}: no statement on record; the charges now make {now}")
        elif (record.due_amount, record.charge_count) != (
            group.due_amount,
            group.charge_count,
        ):
            differ.append(
                f"{record.number} ({who}) says {money_text(record.due_amount)} {group.currency} "
                f"over {record.charge_count} charge(s); the charges now make {now}"
            )
    for key, record in sorted(records.items(), key=lambda item: item[1].number):
        if key in seen or (not record.due_amount and not record.charge_count):
            continue
        differ.append(
            f"{record.number} (PI {record.pi_email}, project {record.project_code}, fund/org "
            f"{record.key[2]!r}) says {money_text(record.due_amount)} {record.key[3]} over "
            f"{record.charge_count} charge(s); no billable charge of that group is left"
        )
    if not differ:
        return []
    head = (
        f"period {period.key}: the billable charges changed since its statements were generated "
        f"({len(differ)} statement group(s) differ); run `openchargeback generate -p "
        f"{period.key}` and export again, so the journal equals the statements on record"
    )
    return [head, *differ]


# -- general-ledger lines -----------------------------------------------------------------------


@dataclass
class GLLine:
    side: str  # "D" or "C"
    amount: Decimal  # cents, never negative
    fund_org: str
    account: str
    source: SourceInfo
    project: str = ""
    charge_count: int = 0
    origin: str = "pi"  # "pi": a PI fund's line; "source": a source's credit line

    @property
    def signed_amount(self) -> Decimal:
        return self.amount if self.side == "D" else MONEY_CONTEXT.minus(self.amount)


def _sided(net: Decimal, usual: str) -> tuple[str, Decimal]:
    """A negative net (credits exceed charges) goes on the other side, as a positive amount."""
    if net < 0:
        return ("C" if usual == "D" else "D"), MONEY_CONTEXT.minus(net)
    return usual, net


def gl_lines(
    groups: list[StatementGroup],
    sources: dict[int, SourceInfo],
    config: BillingConfig,
    *,
    split_by_project: bool = False,
) -> dict[str, list[GLLine]]:
    """Per currency: the debit lines (fund/org, account, source[, project]) then one credit per
    source, allocated from the statements' rounded totals. Lines of 0.00 are left out."""
    debits: dict[str, dict[tuple, list]] = defaultdict(dict)
    credits: dict[str, dict[int, list]] = defaultdict(dict)
    for group in groups:
        for (source_id, account), cents in group.allocation(order=part_order(sources)).items():
            project = group.project_code if split_by_project else ""
            key = (group.fund_org, account, sources[source_id].name, project, source_id)
            count = group.part_counts[(source_id, account)]
            entry = debits[group.currency].setdefault(key, [ZERO, 0])
            entry[0] = MONEY_CONTEXT.add(entry[0], cents)
            entry[1] += count
            credit = credits[group.currency].setdefault(source_id, [ZERO, 0])
            credit[0] = MONEY_CONTEXT.add(credit[0], cents)
            credit[1] += count
    journals: dict[str, list[GLLine]] = {}
    for currency in sorted(set(debits) | set(credits)):
        lines = []
        for key in sorted(debits[currency]):
            fund_org, account, _, project, source_id = key
            net, count = debits[currency][key]
            side, amount = _sided(net, "D")
            if amount:
                lines.append(
                    GLLine(side, amount, fund_org, account, sources[source_id], project, count)
                )
        for source_id in sorted(credits[currency], key=lambda s: sources[s].name):
            net, count = credits[currency][source_id]
            side, amount = _sided(net, "C")
            if amount:
                source = sources[source_id]
                account = source.account_code or config.journal.default_account
                lines.append(
                    GLLine(
                        side, amount, source.credit_fund_org, account, source, "", count, "source"
                    )
                )
        journals[currency] = lines
    return journals


def side_totals(lines: list[GLLine]) -> tuple[Decimal, Decimal]:
    debit = exact_sum(line.amount for line in lines if line.side == "D")
    credit = exact_sum(line.amount for line in lines if line.side == "C")
    return debit, credit


def debits_per_fund(lines: list[GLLine]) -> dict[str, Decimal]:
    """Net debit per PI fund/org: its debit lines, less any swapped to the credit side."""
    totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for line in lines:
        if line.origin == "pi":
            totals[line.fund_org] = MONEY_CONTEXT.add(totals[line.fund_org], line.signed_amount)
    return dict(totals)


# -- detail rows ----------------------------------------------------------------------------------


DETAIL_FIELDS = (
    "id",
    "pi_id",
    "project_id",
    "fund_org",
    "billing_currency",
    "source_id",
    "line_number",
    "service_name",
    "service_category",
    "charge_category",
    "charge_description",
    "resource_id",
    "resource_name",
    "region_id",
    "sub_account_id",
    "charge_period_start",
    "charge_period_end",
    "consumed_quantity",
    "consumed_unit",
    "cost_center",
    "reference_1",
    "reference_2",
    "tags",
    "billed_cost",
    "list_cost",
    "review_status",
)


def detail_charges(
    period: BillingPeriod, groups: list[StatementGroup], currency: str
) -> Iterator[tuple[StatementGroup, dict, Decimal]]:
    """(group, charge values, allocated cents) for every billable charge of one currency, in the
    groups' order; each group's cents add up to its amount due. One streamed query; only one
    group's charges are in memory at a time."""
    by_key = {(g.pi_id, g.project_id, g.fund_org): g for g in groups if g.currency == currency}
    charges = (
        billable_charges(period)
        .filter(billing_currency=currency)
        .order_by(
            "pi__email",
            "project__code",
            "fund_org",
            "source__name",
            "import_file_id",
            "line_number",
            "id",
        )
        .values(*DETAIL_FIELDS)
        .iterator(chunk_size=5000)
    )
    batch: list[dict] = []
    key = None
    for charge in charges:
        this = (charge["pi_id"], charge["project_id"], charge["fund_org"])
        if this != key and batch:
            yield from _allocated(by_key[key], batch)
            batch = []
        key = this
        batch.append(charge)
    if batch:
        yield from _allocated(by_key[key], batch)


def _allocated(group: StatementGroup, charges: list[dict]):
    cents = allocate_cents({c["id"]: c["billed_cost"] for c in charges}, total=group.due_amount)
    for charge in charges:
        yield group, charge, cents[charge["id"]]


# -- dates --------------------------------------------------------------------------------------


def period_dates(period: BillingPeriod) -> tuple[date, date]:
    year, month = (int(x) for x in period.key.split("-"))
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])
