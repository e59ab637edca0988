"""Turn a batch of text columns into charge rows: parse, attribute, flag, fingerprint.

Work is done column by column, and everything that repeats across the rows of a month (dates,
tags, attribution, flag decisions, often costs) is computed once and cached: an hourly export
repeats each resource's tags hundreds of times.

Invariants:
- Amounts are parsed from the text into Decimal (billing/money.py); totals are exact sums.
- A value that doesn't parse is a problem with file, line and column; the import is refused.
- Every row becomes a charge; a row that can't be billed as it is carries every reason (Flag).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from hashlib import blake2b
from json.encoder import encode_basestring

import pyarrow as pa
import pyarrow.compute as pc

from ..config import BillingConfig
from ..models import PI, Flag, Project
from ..money import MAX_DECIMAL_PLACES, MAX_INTEGER_DIGITS, ZERO, MoneyParseError, parse_money
from .columns import DATETIME_FIELDS, FOCUS_NAMES, MONEY_FIELDS, QUANTITY_FIELDS

TEXT_FIELDS = (
    "charge_category",
    "charge_class",
    "charge_description",
    "service_name",
    "service_category",
    "resource_id",
    "resource_name",
    "region_id",
    "sku_id",
    "sub_account_id",
    "sub_account_name",
    "billing_account_id",
    "billing_account_name",
    "invoice_id",
    "provider_name",
    "consumed_unit",
    "pricing_unit",
)
CACHE_LIMIT = 200_000  # entries per cache before it is cleared: bounds memory on random data
_FRACTION = re.compile(r"(\.\d{6})\d+")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
# A plain decimal within the stored range (billing/money.py); anything else takes the slow path.
_PLAIN_NUMBER = rf"^[+-]?[0-9]{{1,{MAX_INTEGER_DIGITS}}}(\.[0-9]{{0,{MAX_DECIMAL_PLACES}}})?$"


@dataclass
class Attribution:
    pi_id: int | None
    project_id: int | None
    fund_org: str
    cost_center: str
    reference_1: str
    reference_2: str
    flags: int


@dataclass
class BuiltBatch:
    """Charge column values for one batch, each a list with one value per row."""

    count: int
    first_line: int
    columns: dict[str, list] = field(default_factory=dict)
    period_keys: list[str] = field(default_factory=list)
    content_hashes: list[str] = field(default_factory=list)
    billed: list[Decimal] = field(default_factory=list)
    listed: list[Decimal | None] = field(default_factory=list)
    currencies: list[str] = field(default_factory=list)
    flags: list[int] = field(default_factory=list)


class RowBuilder:
    """Builds charge rows for one import; holds the caches shared by all its batches."""

    def __init__(
        self,
        *,
        config: BillingConfig,
        source_id: int,
        requested_period: str | None,
        adapt_datetime: Callable[[datetime], object],
        account_map: dict[str, dict[str, str]],
        before_write: Callable[[], None] = lambda: None,
    ):
        self.config = config
        self.source_id = source_id
        self.requested_period = requested_period
        self.adapt_datetime = adapt_datetime
        self.account_map = account_map
        self.before_write = before_write  # called before this builder writes to the database
        self.problems: list[str] = []
        self.problem_count = 0
        self._datetimes: dict = {}
        self._tags: dict = {}
        self._attribution: dict = {}
        self._patterns: dict = {}
        self._pis: dict[str, int] = dict(PI.objects.values_list("email", "id"))
        self._projects: dict[str, int] = dict(Project.objects.values_list("code", "id"))
        mapping = config.tag_mapping
        self._tag_keys = [
            mapping[name].strip().lower()
            for name in (
                "pi_email",
                "project_id",
                "fund_org",
                "cost_center",
                "reference_1",
                "reference_2",
            )
        ]

    # -- problems -------------------------------------------------------------------------

    def problem(self, where: str, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < 20:
            self.problems.append(f"{where}: {message}")

    # -- the batch --------------------------------------------------------------------------

    def build(
        self, batch, *, file_name: str, fields: dict[str, int], extra: dict[str, int]
    ) -> BuiltBatch:
        n = batch.count
        out = BuiltBatch(count=n, first_line=batch.first_line)
        columns = out.columns
        nulls = [None] * n
        blanks = [""] * n

        def text(name):
            index = fields.get(name)
            return batch.column(index) if index is not None else nulls

        where = f"{file_name} line {{line}}, column {{column}}"

        # Costs and quantities: exact Decimals for totals, canonical text for storage.
        for name in MONEY_FIELDS + QUANTITY_FIELDS:
            if name not in fields:
                columns[name] = nulls
                if name == "billed_cost":
                    out.billed = [ZERO] * n
                continue
            values, stored = self._money_column(
                batch.arrays[fields[name]],
                where,
                FOCUS_NAMES[name],
                batch.first_line,
                required=name == "billed_cost",
                want_values=name in ("billed_cost", "list_cost"),
            )
            columns[name] = stored
            if name == "billed_cost":
                out.billed = values
            elif name == "list_cost":
                out.listed = values
        if not out.listed:
            out.listed = nulls

        # Dates: few distinct values per month, each parsed once.
        parsed_start = None
        for name in DATETIME_FIELDS:
            if name not in fields:
                columns[name] = nulls
                continue
            parsed, stored = self._datetime_column(
                text(name),
                where,
                FOCUS_NAMES[name],
                batch.first_line,
                required=name == "billing_period_start",
            )
            columns[name] = stored
            if name == "billing_period_start":
                parsed_start = parsed
        out.period_keys = [
            "" if dt is None else f"{dt.year:04d}-{dt.month:02d}" for dt in parsed_start
        ]

        for name in TEXT_FIELDS:
            columns[name] = [v or "" for v in text(name)] if name in fields else blanks

        # Currency: the column, or the configured currency when the file has none.
        currency = self.config.currency
        if "billing_currency" in fields:
            raw = text("billing_currency")
            currencies = [currency if v is None else v.strip().upper() for v in raw]
            for offset, code in enumerate(currencies):
                if not _CURRENCY.match(code):
                    self.problem(
                        where.format(line=batch.first_line + offset, column="BillingCurrency"),
                        f"not a currency code: {raw[offset]!r}",
                    )
        else:
            currencies = [currency] * n
        columns["billing_currency"] = currencies
        out.currencies = currencies

        # Tags, attribution and flags.
        tags_text = text("tags")
        sub_accounts = columns["sub_account_id"]
        billing_accounts = columns["billing_account_id"]
        services = columns["service_name"]
        resource_ids = columns["resource_id"]
        resource_names = columns["resource_name"]
        stored_tags = []
        pi_ids, project_ids, funds, centers, refs1, refs2, flag_list = [], [], [], [], [], [], []
        requested = self.requested_period
        patterns = self.config.flag_patterns
        invalid_tags_raw: dict[int, str] = {}
        for i in range(n):
            tags = tags_text[i]
            key = (tags, sub_accounts[i], billing_accounts[i])
            attribution = self._attribution.get(key)
            if attribution is None:
                attribution = self._attribute(*key)
            tag_info = self._tags.get(tags) or self._tag_info(tags)
            stored_tags.append(tag_info[0])
            if tag_info[2]:
                invalid_tags_raw[i] = tags
            flags = attribution.flags
            if currencies[i] != currency:
                flags |= Flag.CURRENCY
            if requested and out.period_keys[i] != requested:
                flags |= Flag.OTHER_PERIOD
            if patterns and self._pattern_hit(services[i], resource_ids[i], resource_names[i]):
                flags |= Flag.PATTERN_MATCH
            pi_ids.append(attribution.pi_id)
            project_ids.append(attribution.project_id)
            funds.append(attribution.fund_org)
            centers.append(attribution.cost_center)
            refs1.append(attribution.reference_1)
            refs2.append(attribution.reference_2)
            flag_list.append(int(flags))
        columns.update(
            tags=stored_tags,
            pi_id=pi_ids,
            project_id=project_ids,
            fund_org=funds,
            cost_center=centers,
            reference_1=refs1,
            reference_2=refs2,
            flags=flag_list,
        )
        columns["review_status"] = ["flagged" if f else "clean" for f in flag_list]
        out.flags = flag_list
        columns["extra"] = self._extra_column(batch, extra, n, invalid_tags_raw)
        columns["line_number"] = list(range(batch.first_line, batch.first_line + n))
        out.content_hashes = self._content_hashes(batch, fields, extra)
        return out

    # -- columns ------------------------------------------------------------------------

    def _money_column(self, array, where, column, first_line, *, required, want_values):
        """(Decimals or None, stored text) for one cost or quantity column.

        Plain decimals within range are recognised by a vectorised regex; only the other values
        (E notation, junk, NaN, empty where required) take the slow path that explains them.
        Decimal objects are built only where a total needs them (`want_values`).
        """
        stored = pc.utf8_trim_whitespace(array)
        plain = pc.match_substring_regex(stored, _PLAIN_NUMBER)
        ok = pc.fill_null(plain, not required)
        texts = stored.to_pylist()
        if not pc.all(ok).as_py():
            for offset in pc.indices_nonzero(pc.invert(ok)).to_pylist():
                raw = texts[offset]
                if raw is None:
                    self.problem(where.format(line=first_line + offset, column=column), "empty")
                    texts[offset] = "0"
                    continue
                try:
                    _, texts[offset] = parse_money(raw)
                except MoneyParseError as exc:
                    self.problem(where.format(line=first_line + offset, column=column), str(exc))
                    texts[offset] = "0"
        if not want_values:
            return None, texts
        return [None if t is None else Decimal(t) for t in texts], texts

    def _datetime_column(self, texts, where, column, first_line, *, required):
        cache = self._datetimes
        parsed, stored = [], []
        for offset, raw in enumerate(texts):
            hit = cache.get(raw)
            if hit is None:
                if raw is None:
                    hit = (None, None)
                else:
                    value = parse_datetime(raw)
                    if value is None:
                        self.problem(
                            where.format(line=first_line + offset, column=column),
                            f"not a date-time in 2000-2099: {raw!r}",
                        )
                        hit = (None, None)
                        parsed.append(None)
                        stored.append(None)
                        continue
                    hit = (value, self.adapt_datetime(value))
                cache[raw] = hit
            if required and hit[0] is None and raw is None:
                self.problem(where.format(line=first_line + offset, column=column), "empty")
            parsed.append(hit[0])
            stored.append(hit[1])
        return parsed, stored

    def _extra_column(self, batch, extra, n, invalid_tags_raw):
        """Every column we don't model, as JSON text by header; nulls left out."""
        if not extra and not invalid_tags_raw:
            return ["{}"] * n
        keys = [(encode_basestring(header), batch.column(index)) for header, index in extra.items()]
        out = []
        for i in range(n):
            parts = [f"{k}:{encode_basestring(col[i])}" for k, col in keys if col[i] is not None]
            if i in invalid_tags_raw:
                parts.append(f'"Tags":{encode_basestring(invalid_tags_raw[i])}')
            out.append("{" + ",".join(parts) + "}")
        return out

    def _content_hashes(self, batch, fields, extra):
        """A 128-bit hash of each row's full content, independent of column order."""
        indexes = sorted(
            [(name, index) for name, index in fields.items()]
            + [(f"x:{header.lower()}", index) for header, index in extra.items()]
        )
        arrays = [batch.arrays[index] for _, index in indexes]
        joined = pc.binary_join_element_wise(
            *arrays, pa.scalar("\x1f"), null_handling="replace", null_replacement="\x00"
        )
        return [blake2b(row.encode(), digest_size=16).hexdigest() for row in joined.to_pylist()]

    # -- attribution and flags ------------------------------------------------------------

    def _tag_info(self, tags: str | None):
        """(stored JSON text or None, attribution values by tag key, tags invalid?)."""
        info = self._tags.get(tags)
        if info is not None:
            return info
        if tags is None:
            info = (None, {}, False)
        else:
            try:
                parsed = json.loads(tags)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                values = {}
                for key, value in parsed.items():
                    if value is None or isinstance(value, (dict, list)):
                        continue
                    if isinstance(value, bool):
                        value = "true" if value else "false"
                    value = str(value).strip()
                    if value:
                        values[str(key).strip().lower()] = value
                info = (tags, values, False)
            else:
                info = (None, {}, True)
        if len(self._tags) >= CACHE_LIMIT:
            self._tags.clear()
            self._attribution.clear()
        self._tags[tags] = info
        return info

    def _attribute(self, tags, sub_account, billing_account) -> Attribution:
        _, values, invalid = self._tag_info(tags)
        found = [values.get(key, "") for key in self._tag_keys]
        # The account map fills only what the tags leave empty: sub-account first.
        for account in (sub_account, billing_account):
            mapped = self.account_map.get(account) if account else None
            if mapped:
                for i, name in enumerate(("pi_email", "project_id", "fund_org", "cost_center")):
                    if not found[i]:
                        found[i] = mapped.get(name, "")
        pi_email, project_code, fund_org, cost_center, ref1, ref2 = found
        flags = Flag(0)
        if invalid:
            flags |= Flag.TAGS_INVALID
        pi_email = pi_email.lower()
        pi_id = self._pi_id(pi_email) if _EMAIL.match(pi_email) and len(pi_email) <= 254 else None
        if pi_id is None:
            flags |= Flag.NO_PI
        project_id = self._project_id(project_code) if 0 < len(project_code) <= 200 else None
        if project_id is None:
            flags |= Flag.NO_PROJECT
        if not fund_org:
            flags |= Flag.NO_FUND_ORG
        elif self.config.fund_org_patterns and not any(
            p.fullmatch(fund_org) for p in self.config.fund_org_patterns
        ):
            flags |= Flag.FUND_ORG_PATTERN
        attribution = Attribution(pi_id, project_id, fund_org, cost_center, ref1, ref2, int(flags))
        if len(self._attribution) >= CACHE_LIMIT:
            self._attribution.clear()
        self._attribution[(tags, sub_account, billing_account)] = attribution
        return attribution

    def _pi_id(self, email: str) -> int | None:
        pi_id = self._pis.get(email)
        if pi_id is None:
            self.before_write()
            pi_id = PI.objects.create(email=email).pk
            self._pis[email] = pi_id
        return pi_id

    def _project_id(self, code: str) -> int | None:
        project_id = self._projects.get(code)
        if project_id is None:
            self.before_write()
            project_id = Project.objects.create(code=code).pk
            self._projects[code] = project_id
        return project_id

    def _pattern_hit(self, service, resource_id, resource_name) -> bool:
        key = (service, resource_id, resource_name)
        hit = self._patterns.get(key)
        if hit is None:
            hit = any(p.search(value) for p in self.config.flag_patterns for value in key if value)
            if len(self._patterns) >= CACHE_LIMIT:
                self._patterns.clear()
            self._patterns[key] = hit
        return hit


def parse_datetime(text: str) -> datetime | None:
    """Lenient FOCUS date-time parsing to an aware UTC datetime; None if it isn't one."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    value = _FRACTION.sub(r"\1", value)  # more than microseconds: keep microseconds
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    else:
        parsed = parsed.astimezone(UTC)
    if not 2000 <= parsed.year <= 2099:
        return None
    return parsed


__all__ = ["RowBuilder", "BuiltBatch", "parse_datetime", "MAX_DECIMAL_PLACES", "MAX_INTEGER_DIGITS"]
