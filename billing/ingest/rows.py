"""Turn a batch of text columns into charge rows: parse, attribute, flag, fingerprint.

Work is done column by column with pyarrow and numpy, never row by row in Python. Whatever depends
only on a value (dates, currencies, tags, attribution and flag decisions, JSON quoting) is
computed once per distinct value and spread over the rows with a vectorised take, and cached
across batches: an hourly export repeats each resource's tags hundreds of times.

Invariants:
- Amounts are validated from the text (billing/money.py) and stored as that text; totals are
  exact sums of it (ingest/exact.py).
- A value that doesn't parse is a problem with file, line and column; the import is refused.
- Every row becomes a charge; a row that can't be billed as it is carries every reason (Flag).
- Nothing either database can't store gets through: NUL characters anywhere, Tags nested deeper
  than MAX_TAG_DEPTH, lone surrogates or \u0000 in Tags, digits of other scripts in amounts are
  each a problem (refused); so every file ends in an import or a refusal, never a traceback.
- Every timestamp is given its month in UTC; a period that ends before it starts is flagged
  (Flag.DATES), not refused: the provider billed it, and finance decides.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import blake2b
from json.encoder import encode_basestring

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from django.db import connection
from django.utils import timezone

from ..config import BillingConfig
from ..models import PI, Flag, Project
from ..money import MAX_DECIMAL_PLACES, MAX_INTEGER_DIGITS, MoneyParseError, parse_money
from .columns import DATETIME_FIELDS, FIELD_HEADERS, FOCUS_NAMES, MONEY_FIELDS, QUANTITY_FIELDS
from .exact import ExactColumn

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
MAX_TAG_DEPTH = 32  # objects and lists inside Tags; real tags are flat
CACHE_LIMIT = 200_000  # entries per cache before it is cleared: bounds memory on random data
# A column's name in messages: its FOCUS name ("service_name" -> "ServiceName").
FOCUS_HEADER = {
    name: FOCUS_NAMES.get(name, name.title().replace("_", "")) for name in FIELD_HEADERS
}
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


def distinct(array: pa.Array) -> tuple[list, np.ndarray]:
    """(the column's distinct values, None last; each row's index into them).

    Work that depends only on a value (parsing, attribution, JSON quoting) is then done once per
    distinct value and spread back over the rows with a vectorised take.
    """
    encoded = pc.dictionary_encode(array)
    values = encoded.dictionary.to_pylist()
    values.append(None)
    codes = pc.fill_null(encoded.indices, len(values) - 1).to_numpy(zero_copy_only=False)
    return values, codes.astype(np.int64, copy=False)


def spread(per_value: list, codes: np.ndarray, kind: pa.DataType | None = None) -> pa.Array:
    """One value per row from one value per distinct code."""
    return pa.array(per_value, type=kind).take(pa.array(codes))


def combine_codes(*parts: tuple[list, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct combinations of several columns: (first row of each combination, row codes)."""
    key = np.zeros(len(parts[0][1]), dtype=np.int64)
    for values, codes in parts:
        key = key * len(values) + codes
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


@dataclass
class BuiltBatch:
    """Charge columns for one batch as Arrow arrays, and what placing and totalling need."""

    count: int
    first_line: int
    columns: dict[str, pa.Array] = field(default_factory=dict)
    period_keys: list[str] = field(default_factory=list)  # distinct months, "" for none
    period_codes: np.ndarray | None = None  # each row's index into period_keys
    # Each row's 128-bit content hash (blake2b), 16 bytes a row laid end to end.
    content_hashes: bytes = b""
    billed: ExactColumn | None = None
    listed: ExactColumn | None = None
    currencies: list[str] = field(default_factory=list)  # distinct currency codes
    currency_codes: np.ndarray | None = None  # each row's index into currencies
    flags: np.ndarray | None = None


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
        # Every PI and project a built row points at, for the import to hold before commit.
        self.used_pis: set[int] = set()
        self.used_projects: set[int] = set()
        # PI id -> the first display name a row (its tags, else its account map) gave; it fills
        # only PIs whose name is still empty (pipeline.fill_pi_names).
        self.pi_names: dict[int, str] = {}
        mapping = config.tag_mapping
        self._name_key = mapping.get("pi_name", "pi_name").strip().lower()
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

    def problems_mark(self) -> tuple[int, int]:
        return len(self.problems), self.problem_count

    def problems_reset(self, mark: tuple[int, int]) -> None:
        """Forget the problems recorded since `mark` (a file about to be read again)."""
        listed, count = mark
        del self.problems[listed:]
        self.problem_count = count

    # -- the batch --------------------------------------------------------------------------

    def build(
        self, batch, *, file_name: str, fields: dict[str, int], extra: dict[str, int]
    ) -> BuiltBatch:
        n = batch.count
        out = BuiltBatch(count=n, first_line=batch.first_line)
        columns = out.columns
        nulls = pa.nulls(n, pa.string())
        blanks = pa.repeat("", n)
        where = f"{file_name} line {{line}}, column {{column}}"

        def array(name):
            index = fields.get(name)
            return batch.arrays[index] if index is not None else nulls

        # NUL characters: PostgreSQL text can't hold them. A scan of each column's bytes first
        # (numpy, ~15x cheaper than a substring search), the search only where one is found.
        headers = {index: FOCUS_HEADER.get(name, name) for name, index in fields.items()}
        headers.update({index: header for header, index in extra.items()})
        for index, column in sorted(headers.items()):
            if not _may_hold_nul(batch.arrays[index]):
                continue
            has_nul = pc.match_substring(batch.arrays[index], "\x00")
            if pc.any(has_nul).as_py():
                for offset in pc.indices_nonzero(pc.fill_null(has_nul, False)).to_pylist():
                    self.problem(
                        where.format(line=batch.line(offset), column=column),
                        "contains a NUL character (\\x00), which is not text",
                    )

        # Costs and quantities: canonical text for storage; exact integer parts for totals.
        for name in MONEY_FIELDS + QUANTITY_FIELDS:
            if name not in fields:
                columns[name] = pa.repeat("0", n) if name == "billed_cost" else nulls
                continue
            columns[name] = self._money_column(
                array(name),
                where,
                FOCUS_NAMES[name],
                batch.line,
                required=name == "billed_cost",
            )
        out.billed = ExactColumn(columns["billed_cost"])
        out.listed = ExactColumn(columns["list_cost"])

        # Dates: few distinct values per month, each parsed once.
        dates: dict[str, tuple[list, np.ndarray]] = {}
        for name in DATETIME_FIELDS:
            if name not in fields:
                columns[name] = nulls
                continue
            parsed, codes, stored = self._datetime_column(
                array(name),
                where,
                FOCUS_NAMES[name],
                batch.line,
                required=name == "billing_period_start",
            )
            columns[name] = stored
            dates[name] = (parsed, codes)
            if name == "billing_period_start":
                keys = ["" if dt is None else f"{dt.year:04d}-{dt.month:02d}" for dt in parsed]
                out.period_keys = sorted(set(keys))
                index = {key: i for i, key in enumerate(out.period_keys)}
                out.period_codes = np.array([index[k] for k in keys], dtype=np.int64)[codes]

        for name in TEXT_FIELDS:
            columns[name] = pc.fill_null(array(name), "") if name in fields else blanks

        # Currency: the column, or the configured currency when the file has none.
        currency = self.config.currency
        if "billing_currency" in fields:
            raw, codes = distinct(array("billing_currency"))
            cleaned = [currency if v is None else v.strip().upper() for v in raw]
            bad = [i for i, code in enumerate(cleaned) if not _CURRENCY.match(code)]
            for offset in _rows_with(codes, bad):
                self.problem(
                    where.format(line=batch.line(offset), column="BillingCurrency"),
                    f"not a currency code: {raw[codes[offset]]!r}",
                )
            out.currencies = sorted(set(cleaned))
            index = {code: i for i, code in enumerate(out.currencies)}
            out.currency_codes = np.array([index[c] for c in cleaned], dtype=np.int64)[codes]
            columns["billing_currency"] = spread(cleaned, codes, pa.string())
        else:
            out.currencies = [currency]
            out.currency_codes = np.zeros(n, dtype=np.int64)
            columns["billing_currency"] = pa.repeat(currency, n)

        # Tags and attribution: once per distinct (tags, sub-account, billing account).
        tags = distinct(array("tags"))
        subs = distinct(columns["sub_account_id"])
        accounts = distinct(columns["billing_account_id"])
        first, codes = combine_codes(tags, subs, accounts)
        found = []
        for row in first.tolist():
            key = (tags[0][tags[1][row]], subs[0][subs[1][row]], accounts[0][accounts[1][row]])
            attribution = self._attribution.get(key)
            found.append(attribution if attribution is not None else self._attribute(*key))
        columns["pi_id"] = spread([a.pi_id for a in found], codes, pa.int64())
        columns["project_id"] = spread([a.project_id for a in found], codes, pa.int64())
        for name in ("fund_org", "cost_center", "reference_1", "reference_2"):
            columns[name] = spread([getattr(a, name) for a in found], codes, pa.string())
        flags = np.array([a.flags for a in found], dtype=np.int64)[codes]
        tag_infos = [self._tag_info(value) for value in tags[0]]
        columns["tags"] = spread([info[0] for info in tag_infos], tags[1], pa.string())
        refused = [i for i, info in enumerate(tag_infos) if info[3]]
        for offset in _rows_with(tags[1], refused):
            self.problem(
                where.format(line=batch.line(offset), column="Tags"), tag_infos[tags[1][offset]][3]
            )

        if self.config.flag_patterns:
            services = distinct(columns["service_name"])
            resource_ids = distinct(columns["resource_id"])
            resource_names = distinct(columns["resource_name"])
            first, codes = combine_codes(services, resource_ids, resource_names)
            hits = [
                self._pattern_hit(
                    services[0][services[1][row]],
                    resource_ids[0][resource_ids[1][row]],
                    resource_names[0][resource_names[1][row]],
                )
                for row in first.tolist()
            ]
            flags |= np.where(np.array(hits, dtype=bool)[codes], int(Flag.PATTERN_MATCH), 0)
        if currency in out.currencies:
            other_currency = out.currency_codes != out.currencies.index(currency)
            flags |= np.where(other_currency, int(Flag.CURRENCY), 0)
        else:
            flags |= int(Flag.CURRENCY)
        for start, end in (
            ("billing_period_start", "billing_period_end"),
            ("charge_period_start", "charge_period_end"),
        ):
            if start in dates and end in dates:
                flags |= _ends_before_start(dates[start], dates[end])
        requested = self.requested_period
        if requested:
            other = [int(Flag.OTHER_PERIOD) * (key != requested) for key in out.period_keys]
            flags |= np.array(other, dtype=np.int64)[out.period_codes]
            # A delivery for a requested month is billed in that month, whatever month a row
            # names: a late credit for a finalized month lands, flagged, in the month delivered.
            out.period_keys = [requested]
            out.period_codes = np.zeros(n, dtype=np.int64)
        out.flags = flags
        columns["flags"] = pa.array(flags)
        columns["review_status"] = pc.if_else(pa.array(flags != 0), "flagged", "clean")

        invalid_tags = [
            f'"Tags":{encode_basestring(raw)},' if info[2] else None
            for raw, info in zip(tags[0], tag_infos, strict=True)
        ]
        columns["extra"] = self._extra_column(batch, extra, n, invalid_tags, tags[1])
        columns["line_number"] = pa.array(batch.line_numbers())
        out.content_hashes = self._content_hashes(batch, fields, extra)
        return out

    # -- columns ------------------------------------------------------------------------

    def _money_column(self, array, where, column, line, *, required) -> pa.Array:
        """Stored text for one cost or quantity column.

        Plain decimals within range are recognised by a vectorised regex; only the other values
        (E notation, junk, NaN, empty where required) take the slow path that explains them.
        """
        stored = pc.utf8_trim_whitespace(array)
        plain = pc.match_substring_regex(stored, _PLAIN_NUMBER)
        ok = pc.fill_null(plain, not required)
        if pc.all(ok).as_py():
            return stored
        texts = stored.to_pylist()
        for offset in pc.indices_nonzero(pc.invert(ok)).to_pylist():
            raw = texts[offset]
            if raw is None:
                self.problem(where.format(line=line(offset), column=column), "empty")
                texts[offset] = "0"
                continue
            try:
                _, texts[offset] = parse_money(raw)
            except MoneyParseError as exc:
                self.problem(where.format(line=line(offset), column=column), str(exc))
                texts[offset] = "0"
        return pa.array(texts, pa.string())

    def _datetime_column(self, array, where, column, line, *, required):
        """(parsed value per distinct text, each row's code, stored values as an array)."""
        cache = self._datetimes
        raw, codes = distinct(array)
        parsed, stored, bad = [], [], []
        for i, text in enumerate(raw):
            hit = cache.get(text)
            if hit is None:
                value = None if text is None else parse_datetime(text)
                if value is None:
                    hit = (None, None)
                    if text is not None:
                        bad.append(i)
                else:
                    hit = (value, self.adapt_datetime(value))
                    if len(cache) >= CACHE_LIMIT:
                        cache.clear()
                    cache[text] = hit
            parsed.append(hit[0])
            stored.append(hit[1])
        if required:
            bad.append(len(raw) - 1)  # the null code: an empty required value
        for offset in _rows_with(codes, bad):
            text = raw[codes[offset]]
            self.problem(
                where.format(line=line(offset), column=column),
                "empty" if text is None else f"not a date-time in 2000-2099: {text!r}",
            )
        kind = pa.string() if all(v is None or isinstance(v, str) for v in stored) else None
        return parsed, codes, spread(stored, codes, kind)

    def _extra_column(self, batch, extra, n, invalid_tags, tag_codes):
        """Every column we don't model, as JSON text by header; nulls left out."""
        parts = []
        for header, index in extra.items():
            values, codes = distinct(batch.arrays[index])
            key = encode_basestring(header)
            encoded = [None if v is None else f"{key}:{encode_basestring(v)}," for v in values]
            parts.append(spread(encoded, codes, pa.string()))
        if any(invalid_tags):
            parts.append(spread(invalid_tags, tag_codes, pa.string()))
        if not parts:
            return pa.repeat("{}", n)
        # Each part ends in a comma; the last one is trimmed. (A join that skips nulls would be
        # simpler, but pyarrow drops the rows where every part is null.)
        joined = pc.binary_join_element_wise(*[pc.fill_null(p, "") for p in parts], "")
        joined = pc.utf8_rtrim(joined, characters=",")
        return pc.binary_join_element_wise("{", joined, "}", "")

    def _content_hashes(self, batch, fields, extra):
        """A 128-bit hash of each row's full content, independent of column order: 16 bytes a
        row, laid end to end (a fingerprint is its 32 hex digits)."""
        indexes = sorted(
            [(name, index) for name, index in fields.items()]
            + [(f"x:{header.lower()}", index) for header, index in extra.items()]
        )
        arrays = [batch.arrays[index] for _, index in indexes]
        joined = pc.binary_join_element_wise(
            *arrays, pa.scalar("\x1f"), null_handling="replace", null_replacement="\x00"
        )
        rows = joined.cast(pa.binary()).to_pylist()
        return b"".join([blake2b(row, digest_size=16).digest() for row in rows])

    # -- attribution and flags ------------------------------------------------------------

    def _tag_info(self, tags: str | None):
        """(stored JSON text or None, attribution values by tag key, tags invalid?)."""
        info = self._tags.get(tags)
        if info is not None:
            return info
        if tags is None:
            info = (None, {}, False, "")
        else:
            refusal = ""
            try:
                # Strict JSON (no NaN or Infinity), as the databases' JSON columns require.
                parsed = json.loads(tags, parse_constant=_not_json)
            except ValueError:
                parsed = None
            except RecursionError:
                parsed, refusal = None, f"Tags nested more than {MAX_TAG_DEPTH} levels deep"
            if isinstance(parsed, (dict, list)) and (
                tags.count("{") + tags.count("[") > MAX_TAG_DEPTH or "\\u" in tags
            ):
                refusal = _unstorable(parsed)
            if refusal:
                info = (None, {}, False, refusal)
            elif isinstance(parsed, dict):
                values = {}
                for key, value in parsed.items():
                    if value is None or isinstance(value, (dict, list)):
                        continue
                    if isinstance(value, bool):
                        value = "true" if value else "false"
                    value = str(value).strip()
                    if value:
                        values[str(key).strip().lower()] = value
                info = (tags, values, False, "")
            else:
                info = (None, {}, True, "")
        if len(self._tags) >= CACHE_LIMIT:
            self._tags.clear()
            self._attribution.clear()
        self._tags[tags] = info
        return info

    def _attribute(self, tags, sub_account, billing_account) -> Attribution:
        _, values, invalid, _ = self._tag_info(tags)
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
        if pi_id is not None:
            self.used_pis.add(pi_id)
            if pi_id not in self.pi_names:
                name = values.get(self._name_key, "")
                for account in (sub_account, billing_account):
                    mapped = self.account_map.get(account) if account else None
                    if not name and mapped:
                        name = mapped.get("pi_name", "")
                name = " ".join(name.split())[:200]
                if name:
                    self.pi_names[pi_id] = name
        if project_id is not None:
            self.used_projects.add(project_id)
        if len(self._attribution) >= CACHE_LIMIT:
            self._attribution.clear()
        self._attribution[(tags, sub_account, billing_account)] = attribution
        return attribution

    def _pi_id(self, email: str) -> int | None:
        pi_id = self._pis.get(email)
        if pi_id is None:
            self.before_write()
            pi_id = _get_or_insert(PI, "email", email)
            self._pis[email] = pi_id
        return pi_id

    def _project_id(self, code: str) -> int | None:
        project_id = self._projects.get(code)
        if project_id is None:
            self.before_write()
            project_id = _get_or_insert(Project, "code", code)
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


NEW_REFERENCE_LOCK_CLASS = 0x0CB3  # pg_advisory_xact_lock(class, 0) while creating PIs/projects


def _get_or_insert(model, key: str, value: str) -> int:
    """The id of the PI or project with this unique key (email, code), inserting it if absent.

    INSERT … ON CONFLICT DO NOTHING, then a read: an import of another source creating the same
    PI or project at the same time never makes this import fail (on PostgreSQL the insert waits
    for the other transaction and, once it commits, the read finds its row). Raw SQL, one
    statement in the common case: a fresh database meets a PI or project per few hundred rows,
    and the ORM's bulk_create plus get cost twice the old create. Both models have only these
    columns without a database default: the key, `name` ('') and `created_at`.
    """
    table = connection.ops.quote_name(model._meta.db_table)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Imports that create new PIs or projects take turns (until commit): two imports
            # inserting x then y and y then x would otherwise wait on each other's uncommitted
            # row, a deadlock. Only an import that meets a PI or project it can't find pays.
            cursor.execute(f"SELECT id FROM {table} WHERE {key} = %s", [value])
            row = cursor.fetchone()
            if row is not None:
                return row[0]
            cursor.execute("SELECT pg_advisory_xact_lock(%s, 0)", [NEW_REFERENCE_LOCK_CLASS])
        cursor.execute(
            f"INSERT INTO {table} ({key}, name, created_at) VALUES (%s, '', %s) "
            f"ON CONFLICT ({key}) DO NOTHING RETURNING id",
            [value, now],
        )
        row = cursor.fetchone()
        if row is None:
            cursor.execute(f"SELECT id FROM {table} WHERE {key} = %s", [value])
            row = cursor.fetchone()
    return row[0]


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


def _may_hold_nul(array: pa.Array) -> bool:
    """False when no byte of the column's text is zero (a sliced array's buffer may hold bytes of
    other rows: true then only means "search")."""
    if not pa.types.is_string(array.type):
        return True
    data = array.buffers()[2]
    return data is not None and not np.frombuffer(data, np.uint8).all()


def _unstorable(parsed) -> str:
    """Why parsed Tags can't be stored as JSON by both databases, or "" (walked without
    recursion: the nesting is what may be wrong)."""
    stack = [(parsed, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_TAG_DEPTH:
                return f"Tags nested more than {MAX_TAG_DEPTH} levels deep"
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    stack.append((key, depth))
                stack.append((item, depth + 1))
        elif isinstance(value, str):
            if "\x00" in value:
                return "Tags contain \\u0000 (a NUL character), which is not text"
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                return (
                    f"Tags contain \\u{ord(value[exc.start]):04x}, half of a surrogate pair "
                    "that is not a character"
                )
    return ""


def _ends_before_start(start: tuple[list, np.ndarray], end: tuple[list, np.ndarray]) -> np.ndarray:
    """Flag.DATES where a row's end is before its start, decided once per distinct pair."""
    (starts, start_codes), (ends, end_codes) = start, end
    first, codes = combine_codes((starts, start_codes), (ends, end_codes))
    before = [
        int(Flag.DATES)
        if starts[start_codes[row]] is not None
        and ends[end_codes[row]] is not None
        and ends[end_codes[row]] < starts[start_codes[row]]
        else 0
        for row in first.tolist()
    ]
    return np.array(before, dtype=np.int64)[codes]


def _rows_with(codes: np.ndarray, bad: list[int]) -> list[int]:
    """The rows (offsets in the batch, in order) whose code is one of `bad`."""
    if not bad:
        return []
    return np.flatnonzero(np.isin(codes, bad)).tolist()


def parse_datetime(text: str) -> datetime | None:
    """Lenient FOCUS date-time parsing to an aware UTC datetime; None if it isn't one."""
    value = text.strip()
    if not value.isascii():  # other scripts' digits: not a FOCUS date-time
        return None
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
