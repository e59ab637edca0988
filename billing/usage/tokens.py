"""AI token usage → usage records: ChatGPT Edu credits, or tokens per model in million tokens.

Invariants this module keeps:

- Every line is billed or refused with its line number; a user or workspace no map entry covers
  comes through with empty tags (the importer flags it), never dropped.
- Quantities are exact: credits as the Decimal text OpenAI wrote, tokens as whole numbers turned
  into million tokens by moving the point (no division that could round).
- Each line is use on its UTC day (or at its time-stamp). Uses are summed per account (the user,
  else the workspace) and rate key for the month, and cut where a rate changes, so each day's
  use is priced at the rate in force that day; a line outside the month is refused.

Formats (guessed from the header):

- edu: the ChatGPT Edu usage export (Admin console → Billing → Export usage): date_partition
  (M/D/YYYY), account_id, account_user_id, email, name, public_id, usage_type, usage_credits,
  usage_quantity, usage_units. Priced per credit; the rate key is the usage type when the rate card
  has a rate for it (so codex and chat can be subsidised differently), else `credits`.
- generic: date (or timestamp), user (or email), model, tokens, optional workspace; or
  input_tokens and output_tokens instead of tokens, priced as `<model>:input` and `<model>:output`.
"""

from __future__ import annotations

import csv
import io
import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path

from ..money import MONEY_CONTEXT
from . import Conversion, ConversionError, Converter, month_bounds, register
from .pricing import RateCard, RateSpec, price
from .records import UsageRecord
from .slurm import stored_accounts
from .storage import Owner, _owner, parse_time, read_json, read_text

SERVICE = "tokens"
CREDIT_UNIT = "credit"
TOKEN_UNIT = "million tokens"
CREDITS_KEY = "credits"  # the Edu rate key for a usage type without a rate of its own
EDU_COLUMNS = ("date_partition", "email", "usage_type", "usage_credits")


@dataclass(frozen=True, slots=True)
class TokenUse:
    line: int
    start: datetime
    end: datetime
    user: str  # email, lowercase; "" when the line names none
    workspace: str
    key: str  # usage type (edu) or model, or model:input / model:output
    quantity: Decimal  # credits (edu) or million tokens
    unit: str


def _decimal(text: str, where: str) -> Decimal:
    text = (text or "").strip()
    if not text.isascii() or "_" in text:  # Decimal reads other scripts' digits and 1_000
        raise ConversionError(f"{where}: not a plain number: {text!r}")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ConversionError(f"{where}: not a number: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise ConversionError(f"{where}: not a non-negative number: {text!r}")
    return value


def _tokens(text: str, where: str) -> int:
    value = (text or "").strip()
    if not re.fullmatch(r"\d+", value):
        raise ConversionError(f"{where}: tokens must be a whole number: {text!r}")
    return int(value)


@lru_cache(maxsize=4096)  # a month has 31 dates on thousands of lines
def _edu_date(value: str) -> datetime | None:
    match = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", value)
    if not match:
        return None
    month, day, year = (int(g) for g in match.groups())
    try:
        return datetime(year, month, day, tzinfo=UTC)
    except ValueError:
        return None


def _edu_day(text: str, where: str) -> datetime:
    """ChatGPT Edu writes dates as M/D/YYYY; ISO dates are accepted too."""
    value = (text or "").strip()
    return _edu_date(value) or parse_time(value, where)


def _span(at: datetime, text: str) -> tuple[datetime, datetime]:
    if len(text.strip()) <= 10:  # a date: the whole UTC day
        return at, at + timedelta(days=1)
    return at, at + timedelta(seconds=1)


def read_uses(path: Path) -> tuple[str, list[TokenUse]]:
    """Read a usage file. Returns (format name, uses)."""
    fmt, uses = stream_uses(path)
    return fmt, list(uses)


def stream_uses(path: Path) -> tuple[str, Iterator[TokenUse]]:
    """(format name, the file's uses one by one): the file is read as it is consumed."""
    name = Path(path).name
    try:
        handle = open(path, encoding="utf-8-sig", newline="")  # closed by _closing
    except OSError as exc:
        raise ConversionError(f"{name}: cannot be read ({exc})") from None
    try:
        headers = [h.strip().lower() for h in next(csv.reader(handle), [])]
    except UnicodeDecodeError as exc:
        handle.close()
        raise ConversionError(f"{name}: not UTF-8 text ({exc})") from None
    if all(c in headers for c in EDU_COLUMNS):
        return "edu", _closing(handle, _read_edu(csv.reader(handle), headers, name), name)
    reader = csv.DictReader(handle, fieldnames=headers)
    return "generic", _closing(handle, _read_generic(reader, headers, name), name)


def _closing(handle, uses: Iterator[TokenUse], name: str) -> Iterator[TokenUse]:
    with handle:
        try:
            yield from uses
        except UnicodeDecodeError as exc:
            raise ConversionError(f"{name}: not UTF-8 text ({exc})") from None


def _read_edu(reader, headers: list[str], name: str) -> Iterator[TokenUse]:
    at, email, kind_at, credit_at = (headers.index(c) for c in EDU_COLUMNS)
    workspace_at = headers.index("account_id") if "account_id" in headers else None
    width = len(headers)
    one_day = timedelta(days=1)
    for line, row in enumerate(reader, start=2):
        if len(row) < width:
            raise ConversionError(f"{name} line {line}: {len(row)} fields, the header has {width}")
        day = _edu_date(row[at].strip()) or _edu_day(row[at], f"{name} line {line}")
        kind = row[kind_at].strip()
        if not kind:
            raise ConversionError(f"{name} line {line}: no usage_type")
        yield TokenUse(
            line=line,
            start=day,
            end=day + one_day,
            user=row[email].strip().lower(),
            workspace=row[workspace_at].strip() if workspace_at is not None else "",
            key=kind,
            quantity=_decimal(row[credit_at], f"{name} line {line}"),
            unit=CREDIT_UNIT,
        )


def _first(headers: list[str], *names: str) -> str | None:
    return next((n for n in names if n in headers), None)


def _read_generic(reader, headers: list[str], name: str) -> Iterator[TokenUse]:
    time_col = _first(headers, "date", "timestamp", "time", "day")
    user_col = _first(headers, "user", "email", "user_email")
    split = "input_tokens" in headers and "output_tokens" in headers
    missing = [
        label
        for label, ok in (
            ("date or timestamp", time_col),
            ("model", "model" in headers),
            ("tokens (or input_tokens and output_tokens)", split or "tokens" in headers),
            ("user or workspace", user_col or "workspace" in headers),
        )
        if not ok
    ]
    if missing:
        raise ConversionError(f"{name}: not a token usage file; missing {', '.join(missing)}")
    for line, row in enumerate(reader, start=2):
        where = f"{name} line {line}"
        when_text = row.get(time_col) or ""
        start, end = _span(parse_time(when_text, where), when_text)
        model = (row.get("model") or "").strip()
        if not model:
            raise ConversionError(f"{where}: no model")
        parts = (
            [(f"{model}:input", "input_tokens"), (f"{model}:output", "output_tokens")]
            if split
            else [(model, "tokens")]
        )
        for key, column in parts:
            count = _tokens(row.get(column), where)
            yield TokenUse(
                line=line,
                start=start,
                end=end,
                user=(row.get(user_col) or "").strip().lower() if user_col else "",
                workspace=(row.get("workspace") or "").strip(),
                key=key,
                quantity=Decimal(count).scaleb(-6),
                unit=TOKEN_UNIT,
            )


@dataclass
class TokenMap:
    users: dict[str, Owner]
    workspaces: dict[str, Owner]

    def owner(self, use: TokenUse) -> Owner | None:
        """By user first, then by workspace."""
        return self.users.get(use.user) or self.workspaces.get(use.workspace)


def read_map(path: Path | None) -> TokenMap:
    """User/workspace → tags from CSV (a `user` or `email` column, or a `workspace` column, then
    pi_email, project_id, fund_org …), or the earlier tool's projects.json
    ({"projects": [{"project_id", "pi_email", "fund_org", "users": [{"email"}]}]})."""
    users: dict[str, Owner] = {}
    workspaces: dict[str, Owner] = {}
    if path is None:
        return TokenMap(users, workspaces)
    name = Path(path).name
    text = read_text(Path(path))
    if Path(path).suffix.lower() == ".json":
        data = read_json(Path(path))
        projects = data.get("projects") if isinstance(data, dict) else None
        if not isinstance(projects, list):
            raise ConversionError(f"{name}: expected {{'projects': [...]}}")
        for project in projects:
            owner = _owner(project)
            for user in project.get("users") or []:
                email = str(user.get("email") if isinstance(user, dict) else user).strip().lower()
                if email in users and users[email].tags != owner.tags:
                    raise ConversionError(f"{name}: {email} is in two projects")
                users[email] = owner
            for workspace in project.get("workspaces") or []:
                workspaces[str(workspace).strip()] = owner
        return TokenMap(users, workspaces)
    for line, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        row = {str(k).strip().lower(): (v or "").strip() for k, v in row.items() if k}
        user = (row.get("user") or row.get("email") or "").lower()
        workspace = row.get("workspace") or ""
        if not user and not workspace:
            raise ConversionError(f"{name} line {line}: no user, email or workspace")
        if user:
            users[user] = _owner(row)
        else:
            workspaces[workspace] = _owner(row)
    return TokenMap(users, workspaces)


# -- the converter --------------------------------------------------------------------------------


def rate_key(use: TokenUse, priced_keys: set[str]) -> str:
    """An Edu usage type is priced by its own rate when the card has one, else as `credits`."""
    if use.unit != CREDIT_UNIT or use.key in priced_keys:
        return use.key
    return CREDITS_KEY


def records(
    uses: Iterable[TokenUse],
    owners: TokenMap,
    card: RateCard,
    period: str,
    stored: dict[str, dict] | None = None,
    name: str = "",
) -> list[UsageRecord]:
    """One record per account (user, else workspace) and rate key for the month, cut where a rate
    changes; the records are in order of first use, so an allowance goes to the earliest users.
    An account the map doesn't cover takes the admin's account map (`stored`) entry for it.

    Uses are summed as they are read (a month's export can be millions of lines); a line outside
    the month is refused, naming the file (`name`) and line. Sums are exact (MONEY_CONTEXT traps
    any rounding)."""
    start, end = month_bounds(period)
    priced_keys = {r.key for r in card.rates if r.service == SERVICE}
    # (account, key, unit) -> [first use, its use, rate cuts, {part index: [sum, lines, kinds]}]
    groups: dict[tuple, list] = {}
    add = MONEY_CONTEXT.add
    for use in uses:
        if use.start < start or use.start >= end:
            raise ConversionError(
                f"{name} line {use.line}: {use.start:%Y-%m-%d} is not in {period}".lstrip()
            )
        account = use.user or use.workspace or "(no user)"
        ident = (account, rate_key(use, priced_keys), use.unit)
        group = groups.get(ident)
        if group is None:
            cuts = card.boundaries(SERVICE, ident[1], use.unit, start, end)
            group = groups[ident] = [use.start, use, cuts, {}]
        elif use.start < group[0]:
            group[0], group[1] = use.start, use
        index = bisect_right(group[2], use.start) if group[2] else 0
        part = group[3].get(index)
        if part is None:
            part = group[3][index] = [Decimal(0), 0, set()]
        part[0] = add(part[0], use.quantity)
        part[1] += 1
        part[2].add(use.key)
    out = []
    for (account, key, unit), (_, first, cuts, parts) in sorted(
        groups.items(), key=lambda item: (item[1][0], item[0])
    ):
        owner = owners.owner(first)
        if owner is None and account in (stored or {}):
            owner = Owner(tags=stored[account])
        edges = [start, *cuts, end]
        for index, (quantity, lines, kinds) in sorted(parts.items()):
            out.append(
                UsageRecord(
                    start=edges[index],
                    end=edges[index + 1],
                    account=account,
                    service=SERVICE,
                    rate_key=key,
                    quantity=quantity,
                    unit=unit,
                    tags=dict(owner.tags) if owner else {},
                    description=f"{', '.join(sorted(kinds))} by {account}: {lines} line(s) of use",
                    resource_id=f"{account}/{key}",
                    resource_name=f"{key} ({account})",
                    service_name="ChatGPT Edu" if unit == CREDIT_UNIT else "AI tokens",
                    service_category="AI and Machine Learning",
                )
            )
    return out


def _stored(options: dict) -> dict[str, dict]:
    """The admin's account map for the source (a caller may give its own, as bench/ does)."""
    given = options.get("stored_accounts")
    return given if given is not None else stored_accounts(options.get("source"))


# -- the earlier tool's pricing.json and subsidies.json ------------------------------------------


def legacy_card(pricing: Path, subsidies: Path | None) -> RateCard:
    """The earlier tool's credit pools (pricing.json) as `credits` rates, one per pool from its
    effective date: price = purchase_amount / credits_purchased, which must be an exact decimal.
    Its subsidies.json may add a monthly cap per project, as an allowance in credits (cap / price);
    the other subsidy kinds are refused with the reason (docs/sources.md, "Rates and subsidies")."""
    data = read_json(pricing)
    pools = data.get("credit_pools") if isinstance(data, dict) else None
    if not isinstance(pools, list) or not pools:
        raise ConversionError(f"{pricing.name}: no credit_pools")
    cap = _monthly_cap(subsidies) if subsidies else None
    rates = []
    for number, pool in enumerate(pools, start=1):
        where = f"{pricing.name} pool {number}"
        try:
            amount = Decimal(str(pool["purchase_amount"]))
            credits = Decimal(str(pool["credits_purchased"]))
            effective = date.fromisoformat(str(pool["effective_date"]))
            per_credit = MONEY_CONTEXT.divide(amount, credits)
            allowance = MONEY_CONTEXT.divide(cap, per_credit) if cap else Decimal(0)
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise ConversionError(
                f"{where}: needs purchase_amount, credits_purchased and effective_date, with a "
                f"price per credit (and cap in credits) that is an exact decimal ({exc!r})"
            ) from None
        rates.append(
            RateSpec(
                service=SERVICE,
                key=CREDITS_KEY,
                unit=CREDIT_UNIT,
                effective_from=effective,
                list_price=per_credit,
                currency=str(data.get("currency", "USD")),
                allowance_quantity=allowance,
                allowance_per="project" if allowance else "",
                description=str(pool.get("pool_id", "")),
            )
        )
    return RateCard(rates, origin=pricing.name)


def _monthly_cap(path: Path) -> Decimal | None:
    data = read_json(path)
    rules = data.get("subsidies") if isinstance(data, dict) else None
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise ConversionError(f"{path.name}: expected {{'subsidies': [...]}}")
    rules = [r for r in rules if r.get("enabled", True)]
    if len(rules) > 1:
        raise ConversionError(f"{path.name}: one subsidy rule at a time, found {len(rules)}")
    if not rules:
        return None
    rule = rules[0]
    kind, period = rule.get("type"), rule.get("period")
    if kind != "per_project_cap" or period != "month":
        raise ConversionError(
            f"{path.name}: subsidy {rule.get('name', '')!r} ({kind}, per {period}) is not "
            "supported: only a monthly cap per project fits a monthly rate card (a yearly or "
            "weekly cap depends on other months' usage; see docs/sources.md)"
        )
    return Decimal(str(rule["cap_amount"]))


def convert(path: Path, *, period: str, options: dict) -> Conversion:
    owners = read_map(Path(options["map"]) if options.get("map") else None)
    card = options.get("card")  # a caller's (tests, bench/)
    if card is None and options.get("rates"):
        subsidies = Path(options["subsidies"]) if options.get("subsidies") else None
        card = legacy_card(Path(options["rates"]), subsidies)
    elif card is None:
        card = RateCard.from_database()
    fmt, uses = stream_uses(path)
    counted = _Counter(uses)
    usage = records(counted, owners, card, period, _stored(options), name=path.name)
    start, end = month_bounds(period)
    priced = price(usage, card=card, period_start=start, period_end=end)
    unmapped = sorted({r.account for r in usage if not r.tags})
    warnings = []
    if unmapped:
        shown = ", ".join(unmapped[:5]) + (" …" if len(unmapped) > 5 else "")
        warnings.append(f"{len(unmapped)} user(s) on no map, untagged (flagged on import): {shown}")
    return Conversion(
        converter="tokens",
        period=period,
        priced=priced,
        provider="OpenAI" if fmt == "edu" else "AI tokens",
        billing_account=counted.workspace or fmt,
        notes={
            "format": fmt,
            "lines": counted.lines,
            "accounts": len({r.account for r in usage}),
            "unmapped accounts": len(unmapped),
            "warnings": warnings,
        },
    )


class _Counter:
    """Passes uses through, counting lines and keeping the first workspace named."""

    def __init__(self, uses: Iterator[TokenUse]):
        self.uses, self.lines, self.workspace, self._last = uses, 0, "", -1

    def __iter__(self):
        for use in self.uses:
            if use.line != self._last:  # a generic line with input and output is two uses
                self.lines, self._last = self.lines + 1, use.line
            if not self.workspace and use.workspace:
                self.workspace = use.workspace
            yield use


def add_arguments(parser) -> None:
    parser.add_argument(
        "--map",
        metavar="FILE",
        help="User or workspace → pi_email, project_id, fund_org: CSV (user or workspace column) "
        "or the earlier tool's projects.json.",
    )
    parser.add_argument(
        "--rates",
        metavar="FILE",
        help="The earlier tool's pricing.json (credit pools) instead of the rate card.",
    )
    parser.add_argument(
        "--subsidies",
        metavar="FILE",
        help="With --rates: the earlier tool's subsidies.json (a monthly cap per project only).",
    )


register(
    Converter(
        name="tokens",
        help="AI token usage (ChatGPT Edu export or model/tokens/user CSV) priced per model.",
        convert=convert,
        add_arguments=add_arguments,
    )
)
