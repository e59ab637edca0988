"""Assembling a journal from a period and a template: the refusals, then the rendered rows.

Used by the export service (which writes files) and by the admin preview (which writes
nothing), so what the preview shows is what the export writes.

Refusals, each with a message naming the cause (`JournalRefused.problems`):
- the template does not compile, or uses a segment the fund/org regex doesn't define;
- the period has no billable charges;
- the period has statements on record and its billable charges no longer make them (a group's
  amount due or charge count changed, a group has no statement, a statement's group is gone):
  regenerate first, so the journal equals the statements on record;
- a fund/org fails `review.fund_org_patterns` or `journal.fund_org_regex`;
- general ledger: a source without a credit fund/org, or a line without a GL account;
- general ledger: debits would not equal credits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from django.utils import timezone

from billing.config import BillingConfig
from billing.models import BillingPeriod
from billing.money import ZERO, cents_text, exact_sum, money_text
from billing.services.patterns import with_review_patterns
from openchargeback.csvsafe import clean_cell

from . import selectors
from .models import JournalTemplate
from .render import (
    DEFAULT_DESCRIPTIONS,
    DEFAULT_FILE_NAME,
    TemplateCheckError,
    check_template,
    compile_cell,
    compile_cells,
    segments_used,
)

MAX_LISTED = 20  # problems listed in a refusal; the rest are counted


class JournalRefused(Exception):
    """The journal can't be exported as it is; `problems` says why, one cause per line."""

    def __init__(self, problems: list[str], total: int | None = None):
        self.problems = problems[:MAX_LISTED]
        total = len(problems) if total is None else total
        more = total - len(self.problems)
        text = "\n".join(f"  - {p}" for p in self.problems)
        if more > 0:
            text += f"\n  - … and {more} more"
        super().__init__(f"journal refused, nothing written:\n{text}")


@dataclass
class Journal:
    """One currency's journal, ready to write: header cells, a row iterator, totals."""

    currency: str
    file_name: str
    line_count: int
    debit_total: Decimal
    credit_total: Decimal
    header: list[str]
    rows: Callable[[], Iterator[list[str]]]
    per_fund: dict[str, Decimal] = field(default_factory=dict)  # GL: net debit per PI fund


def _fmt_date(value, date_format: str) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(UTC).date()
    return value.strftime(date_format)


class _Segments:
    """fund/org -> {segment name: text}, cached."""

    def __init__(self, regex: re.Pattern):
        self.regex = regex
        self.cache: dict[str, dict[str, str] | None] = {}

    def __call__(self, fund_org: str) -> dict[str, str] | None:
        if fund_org not in self.cache:
            match = self.regex.fullmatch(fund_org)
            self.cache[fund_org] = (
                None if match is None else {k: v or "" for k, v in match.groupdict().items()}
            )
        return self.cache[fund_org]


def _describe(template: JournalTemplate, config: BillingConfig) -> Callable[[dict], str]:
    text = (
        template.description_template
        or config.journal.description_template
        or DEFAULT_DESCRIPTIONS[template.kind]
    )
    limit = template.description_limit
    if limit is None:
        limit = config.journal.description_limit
    render = compile_cell(text)
    if not limit:
        return lambda context: " ".join(render(context).split())
    return lambda context: " ".join(render(context).split())[:limit].rstrip()


def _safe_file_name(name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")
    return name[:200] or "journal.csv"


def _check_funds(groups, segments, config, problems: list[str]) -> None:
    patterns = config.fund_org_patterns
    seen = {}
    for group in groups:
        entry = seen.setdefault(group.fund_org, [0, ZERO, group])
        entry[0] += group.charge_count
        entry[1] = exact_sum((entry[1], group.exact_billed))
    for fund_org, (count, billed, group) in sorted(seen.items()):
        where = (
            f"{count} charge(s), {money_text(billed)} {group.currency}, e.g. PI "
            f"{group.pi_email}, project {group.project_code}"
        )
        if patterns and not any(p.fullmatch(fund_org) for p in patterns):
            problems.append(
                f"fund/org {fund_org!r} fails review.fund_org_patterns ({where}); correct the "
                "charges' fund/org in the review queue"
            )
        elif segments(fund_org) is None:
            problems.append(
                f"fund/org {fund_org!r} does not match journal.fund_org_regex "
                f"{config.journal.fund_org_regex.pattern!r} ({where})"
            )


def _check_gl(journals: dict, segments, config, problems: list[str]) -> None:
    sources = {}
    no_account = set()
    for lines in journals.values():
        for line in lines:
            sources[line.source.name] = line.source
            if not line.account:
                no_account.add((line.source.name, line.origin))
    for name, source in sorted(sources.items()):
        if not source.credit_fund_org:
            problems.append(
                f"source {name!r} has no credit fund/org: set credit_fund_org for it in the "
                "configuration's sources (or on the source in the admin)"
            )
        elif segments(source.credit_fund_org) is None:
            problems.append(
                f"credit fund/org {source.credit_fund_org!r} of source {name!r} does not match "
                f"journal.fund_org_regex {config.journal.fund_org_regex.pattern!r}"
            )
    for name, origin in sorted(no_account):
        which = "its credit line" if origin == "source" else "its charges"
        problems.append(
            f"no GL account for {which} of source {name!r}: give the source an account_code "
            "or set journal.default_account"
        )
    for currency, lines in journals.items():
        debit, credit = selectors.side_totals(lines)
        if debit != credit:
            problems.append(
                f"{currency} debits {money_text(debit)} do not equal credits {money_text(credit)}"
            )


def journal_build(
    *,
    period: BillingPeriod,
    template: JournalTemplate,
    config: BillingConfig,
    created_at: datetime | None = None,
) -> list[Journal]:
    """The period's journals for `template`, one per currency; raises JournalRefused."""
    try:
        check_template(template)
    except TemplateCheckError as exc:
        raise JournalRefused(
            [f"template {template.name!r}, {k}: {' '.join(v)}" for k, v in exc.errors.items()]
        ) from None
    config = with_review_patterns(config)
    regex = config.journal.fund_org_regex
    missing = sorted(segments_used(template) - set(regex.groupindex))
    if missing:
        raise JournalRefused(
            [
                f"template {template.name!r} uses segment {name!r}, but journal.fund_org_regex "
                f"{regex.pattern!r} has no group named {name!r}"
                for name in missing
            ]
        )
    groups, sources = selectors.statement_groups(
        period, config, with_list=template.kind == JournalTemplate.Kind.SUMMARY
    )
    records = selectors.statements_on_record(period)
    # An open period's journal is a draft and may come before its statements; a closed or
    # finalized period's journal is the accounting record and ties to the statements on record.
    untied = (
        selectors.statement_tie(period, groups, records) if records or not period.is_open() else []
    )
    if untied:
        raise JournalRefused(untied)
    if not groups:
        raise JournalRefused([f"period {period.key} has no billable charges; nothing to export"])
    segments = _Segments(regex)
    problems: list[str] = []
    _check_funds(groups, segments, config, problems)
    gl = None
    if template.kind == JournalTemplate.Kind.GL:
        gl = selectors.gl_lines(groups, sources, config, split_by_project=template.split_by_project)
        _check_gl(gl, segments, config, problems)
    if problems:
        raise JournalRefused(problems)

    created_at = created_at or timezone.now()
    start, end = selectors.period_dates(period)
    fmt = template.date_format
    base = {
        "period": period.key,
        "period_start": _fmt_date(start, fmt),
        "period_end": _fmt_date(end, fmt),
        "journal_date": _fmt_date(end, fmt),
        "journal_id": "RC" + period.key.replace("-", ""),
        "institution": config.institution_name,
        "template": template.name,
        "created_at": created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "created_date": _fmt_date(created_at, fmt),
    }
    describe = _describe(template, config)
    row_cells = compile_cells(template.row_cells)
    header_cells = compile_cells(template.header_cells)
    file_name = compile_cell(template.file_name or DEFAULT_FILE_NAME)

    journals = []
    for currency in sorted({g.currency for g in groups}):
        if gl is not None:
            lines = gl[currency]
            debit, credit = selectors.side_totals(lines)
            count = len(lines)
            make_rows = _gl_rows(lines, segments)
            per_fund = selectors.debits_per_fund(lines)
        else:
            mine = [g for g in groups if g.currency == currency]
            debit = credit = exact_sum(g.due_amount for g in mine)
            per_fund = {}
            if template.kind == JournalTemplate.Kind.SUMMARY:
                count = len(mine)
                make_rows = _summary_rows(mine, sources, segments)
            else:
                count = sum(g.charge_count for g in mine)
                make_rows = _detail_rows(period, groups, currency, sources, segments, config, fmt)
        common = {
            **base,
            "currency": currency,
            "line_count": count,
            "debit_total": money_text(debit),
            "credit_total": money_text(credit),
        }

        def rows(make_rows=make_rows, common=common):
            for number, values in enumerate(make_rows(), start=1):
                context = {**common, **values, "line_number": number}
                context["description"] = describe(context)
                yield row_cells(context)

        journals.append(
            Journal(
                currency=currency,
                file_name=_safe_file_name(file_name(common)),
                line_count=count,
                debit_total=debit,
                credit_total=credit,
                header=header_cells(common) if template.header_cells else [],
                rows=rows,
                per_fund=per_fund,
            )
        )
    return journals


def _gl_rows(lines, segments):
    def make():
        for line in lines:
            debit = line.side == "D"
            amount = money_text(line.amount)
            yield {
                "side": line.side,
                "side_name": "debit" if debit else "credit",
                "is_debit": debit,
                "amount": amount,
                "debit_amount": amount if debit else "",
                "credit_amount": "" if debit else amount,
                "signed_amount": money_text(line.signed_amount),
                "fund_org": line.fund_org,
                "segment": segments(line.fund_org) or {},
                "account": line.account,
                "source": line.source.name,
                "source_name": line.source.display_name,
                "project": line.project,
                "charge_count": line.charge_count,
            }

    return make


def _summary_rows(groups, sources, segments):
    def make():
        for group in groups:
            names = sorted({sources[source_id].name for source_id, _ in group.parts})
            amount, listed = group.due_amount, group.list_amount
            yield {
                "pi_email": group.pi_email,
                "pi_name": group.pi_name,
                "project": group.project_code,
                "project_name": group.project_name,
                "fund_org": group.fund_org,
                "segment": segments(group.fund_org) or {},
                "sources": ", ".join(names),
                "list_amount": money_text(listed),
                "discount_amount": money_text(listed - amount),
                "amount": money_text(amount),
                "charge_count": group.charge_count,
            }

    return make


def _detail_rows(period, groups, currency, sources, segments, config, fmt):
    def make():
        for group, c, cents in selectors.detail_charges(period, groups, currency):
            source = sources[c["source_id"]]
            tags = c["tags"] if isinstance(c["tags"], dict) else {}
            yield {
                "charge_id": c["id"],
                "source": source.name,
                "source_name": source.display_name,
                "file_line": c["line_number"],
                "service_name": c["service_name"],
                "service_category": c["service_category"],
                "charge_category": c["charge_category"],
                "charge_description": c["charge_description"],
                "resource_id": c["resource_id"],
                "resource_name": c["resource_name"],
                "region_id": c["region_id"],
                "sub_account_id": c["sub_account_id"],
                "charge_start": _fmt_date(c["charge_period_start"], fmt),
                "charge_end": _fmt_date(c["charge_period_end"], fmt),
                "consumed_quantity": money_text(c["consumed_quantity"]) or "",
                "consumed_unit": c["consumed_unit"],
                "pi_email": group.pi_email,
                "pi_name": group.pi_name,
                "project": group.project_code,
                "project_name": group.project_name,
                "fund_org": group.fund_org,
                "segment": segments(group.fund_org) or {},
                "account": selectors.account_for(tags, source, config),
                "cost_center": c["cost_center"],
                "reference_1": c["reference_1"],
                "reference_2": c["reference_2"],
                "tag": _tag_dict(tags),
                "billed_cost": money_text(c["billed_cost"]),
                "list_cost": money_text(c["list_cost"]) or "",
                "amount": money_text(cents),
                "review_status": c["review_status"],
            }

    return make


def _tag_dict(tags: dict) -> dict[str, str]:
    out = {}
    for key, value in tags.items():
        if value is None or isinstance(value, (dict, list)):
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        out.setdefault(str(key).strip().lower(), str(value).strip())
    return out


def journal_preview(
    *, period: BillingPeriod, template: JournalTemplate, config: BillingConfig, limit: int = 20
) -> list[dict]:
    """The first `limit` rows of each currency's journal, as the file will hold them (cells
    neutralised); writes nothing. Raises JournalRefused as an export would."""
    terminator = template.lineterminator
    out = []
    for journal in journal_build(period=period, template=template, config=config):
        rows = []
        for cells in journal.rows():
            rows.append([clean_cell(c, terminator) for c in cells])
            if len(rows) >= limit:
                break
        out.append(
            {
                "currency": journal.currency,
                "file_name": journal.file_name,
                "header": [clean_cell(c, terminator) for c in journal.header],
                "rows": rows,
                "line_count": journal.line_count,
                "debit_total": money_text(journal.debit_total),
                "credit_total": money_text(journal.credit_total),
                # As pages print amounts: to the cent, with thousands separators.
                "debit_text": cents_text(journal.debit_total),
                "credit_text": cents_text(journal.credit_total),
            }
        )
    return out
