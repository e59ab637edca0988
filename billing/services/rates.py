"""Rate cards: effective-dated prices of usage services, saved from the admin or a YAML file.

Invariants protected here (the database holds them too, see Rate.Meta.constraints):
- At most one rate per (service, key, unit, effective_from); a second is refused, naming both.
- subsidy_percent is 0–100; an allowance names its holder (per PI or per project).
- Every change is audited (billing/reference_audit.py: one event per create, change or delete,
  in the same transaction).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from pathlib import Path

import yaml
from django.core.exceptions import ValidationError
from django.db import transaction

from ..models import Rate
from ..money import MoneyParseError, parse_money
from ..reference_audit import acting_as

FIELDS = (
    "list_price",
    "currency",
    "subsidy_percent",
    "allowance_quantity",
    "allowance_per",
    "multiplier",
    "pricing_unit",
    "description",
    "active",
)


PERCENT_PLACES = Decimal("0.01")  # subsidy_percent's column: 0–100 to the hundredth


class RateError(ValueError):
    """A rate that cannot be saved; str() is fit for a user."""


def rate_clash(rate: Rate) -> Rate | None:
    """The other rate for the same thing on the same date, if any."""
    return (
        Rate.objects.filter(
            service=rate.service, key=rate.key, unit=rate.unit, effective_from=rate.effective_from
        )
        .exclude(pk=rate.pk)
        .first()
    )


def clash_message(rate: Rate, other: Rate, label: str = "this rate") -> str:
    return (
        f"two rates for {rate.service}/{rate.key} per {rate.unit} from {rate.effective_from}: "
        f"rate #{other.pk} ({other.list_price} {other.currency}) and {label} "
        f"({rate.list_price} {rate.currency})"
    )


# A rate file's key for each field, where they differ (docs/sources.md, "Rate cards").
YAML_KEYS = {"allowance_quantity": "allowance"}


def _shown(name: str, value) -> str:
    """A term as `rates list` prints it: the price as written, quantities without padding."""
    if isinstance(value, Decimal) and value.is_finite():
        if name == "list_price" or not value:
            return format(value, "f") if value else "0"
        return format(value.normalize(), "f")
    return repr(value) if isinstance(value, str) else str(value)


def differences(stored: Rate, rate: Rate) -> list[str]:
    """The terms in which `rate` differs from `stored`, named as a rate file writes them:
    "allowance 10000 → 20000"."""
    return [
        f"{YAML_KEYS.get(name, name)} {_shown(name, getattr(stored, name))} → "
        f"{_shown(name, getattr(rate, name))}"
        for name in FIELDS
        if not _same(getattr(stored, name), getattr(rate, name))
    ]


@transaction.atomic
def rate_save(*, rate: Rate, acting_user=None) -> Rate:
    other = rate_clash(rate)
    if other is not None:
        raise RateError(clash_message(rate, other))
    try:
        rate.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        reasons = (f"{YAML_KEYS.get(k, k)}: {' '.join(v)}" for k, v in exc.message_dict.items())
        raise RateError("; ".join(reasons)) from None
    check_terms(rate)
    with acting_as(acting_user):
        rate.save()
    return rate


def check_terms(rate: Rate) -> None:
    """Refuse terms the database would, and those it can't see (RateError, fit for a user)."""
    for name in ("list_price", "multiplier", "allowance_quantity"):
        try:  # exact decimals, in the range every stored amount keeps (billing/money.py)
            parse_money(format(Decimal(getattr(rate, name)), "f"))
        except MoneyParseError as exc:
            raise RateError(f"{YAML_KEYS.get(name, name)}: {exc}") from None
    subsidy = Decimal(rate.subsidy_percent)
    if subsidy != subsidy.quantize(PERCENT_PLACES, rounding=ROUND_DOWN):
        raise RateError(
            f"subsidy_percent has at most 2 decimal places (a hundredth of a percent), "
            f"got {rate.subsidy_percent}"
        )
    if not 0 <= Decimal(rate.subsidy_percent) <= 100:
        raise RateError(f"subsidy percent must be 0–100, got {rate.subsidy_percent}")
    if Decimal(rate.allowance_quantity) < 0:
        raise RateError("an allowance cannot be negative")
    if Decimal(rate.allowance_quantity) and rate.allowance_per not in ("pi", "project"):
        raise RateError("an allowance needs allowance_per: pi or project")
    if rate.allowance_per and rate.allowance_per not in ("pi", "project"):
        raise RateError(f"allowance_per must be pi or project, got {rate.allowance_per!r}")
    if Decimal(rate.multiplier) <= 0:
        raise RateError("the multiplier must be more than 0")
    if Decimal(rate.list_price) < 0:
        raise RateError("a list price cannot be negative")


@dataclass
class RatesLoaded:
    created: list[Rate] = field(default_factory=list)
    updated: list[Rate] = field(default_factory=list)
    unchanged: list[Rate] = field(default_factory=list)


class _DecimalLoader(yaml.SafeLoader):
    """YAML whose numbers with a point stay exact (0.01 is Decimal('0.01'), never a float)."""


_DecimalLoader.add_constructor(
    "tag:yaml.org,2002:float", lambda loader, node: Decimal(loader.construct_scalar(node))
)


def _decimal(entry: dict, name: str, where: str, default="0") -> Decimal:
    value = entry.get(name, default)
    try:
        return Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise RateError(f"{where}: {name} is not a number: {value!r}") from None


def _exact(entry: dict, name: str, where: str, default="0") -> Decimal:
    """A quantity kept exactly as written (multiplier, allowance), in the stored range."""
    try:
        value, _ = parse_money(str(entry.get(name, default)).strip())
    except MoneyParseError as exc:
        raise RateError(f"{where}: {name} {exc}") from None
    return value


_KEYS = {
    "service", "key", "unit", "effective_from", "list_price", "currency", "subsidy_percent",
    "allowance", "allowance_per", "multiplier", "pricing_unit", "description", "active",
}  # fmt: skip


def parse_rate_file(path: str | Path) -> list[Rate]:
    """The rates of a YAML rate card, unsaved. Format: docs/sources.md ("Rate cards")."""
    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_DecimalLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise RateError(f"{path}: {exc}") from None
    entries = data.get("rates") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise RateError(f"{path}: expected a mapping with a 'rates' list")
    currency = str(data.get("currency", "USD"))
    rates: list[Rate] = []
    seen: dict[tuple, int] = {}
    for number, entry in enumerate(entries, start=1):
        where = f"{path} rate {number}"
        if not isinstance(entry, dict):
            raise RateError(f"{where}: expected a mapping")
        unknown = sorted(set(entry) - _KEYS)
        if unknown:  # a misspelt term would silently price without it
            raise RateError(
                f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}"
            )
        missing = [
            k for k in ("service", "key", "unit", "effective_from", "list_price") if k not in entry
        ]
        if missing:
            raise RateError(f"{where}: missing {', '.join(missing)}")
        effective = entry["effective_from"]
        if not isinstance(effective, dt.date):
            try:
                effective = dt.date.fromisoformat(str(effective))
            except ValueError:
                raise RateError(f"{where}: effective_from must be YYYY-MM-DD") from None
        try:
            list_price, _ = parse_money(str(entry["list_price"]))
        except MoneyParseError as exc:
            raise RateError(f"{where}: list_price {exc}") from None
        rate = Rate(
            service=str(entry["service"]),
            key=str(entry["key"]),
            unit=str(entry["unit"]),
            effective_from=effective,
            list_price=list_price,
            currency=str(entry.get("currency", currency)),
            subsidy_percent=_decimal(entry, "subsidy_percent", where),
            allowance_quantity=_exact(entry, "allowance", where),
            allowance_per=str(entry.get("allowance_per", "")),
            multiplier=_exact(entry, "multiplier", where, default="1"),
            pricing_unit=str(entry.get("pricing_unit", "")),
            description=str(entry.get("description", "")),
            active=bool(entry.get("active", True)),
        )
        ident = (rate.service, rate.key, rate.unit, rate.effective_from)
        if ident in seen:
            raise RateError(
                f"{path}: two rates for {rate.service}/{rate.key} per {rate.unit} from "
                f"{rate.effective_from}: rate {seen[ident]} and rate {number}"
            )
        seen[ident] = number
        try:
            check_terms(rate)
        except RateError as exc:
            raise RateError(f"{where}: {exc}") from None
        rates.append(rate)
    return rates


@transaction.atomic
def rates_load(*, path: str | Path, update: bool = False, acting_user=None) -> RatesLoaded:
    """Load a YAML rate card, all or nothing. A rate already stored with other terms is refused,
    naming both and the terms that differ, unless `update` (then it is changed, audited like an
    admin edit)."""
    loaded = RatesLoaded()
    for number, rate in enumerate(parse_rate_file(path), start=1):
        stored = rate_clash(rate)
        if stored is not None and not differences(stored, rate):
            loaded.unchanged.append(stored)
            continue
        if stored is not None and not update:
            raise RateError(
                clash_message(rate, stored, label=f"rate {number} in {path}")
                + f"; they differ in {', '.join(differences(stored, rate))}"
                + "; use --update to change the stored rate"
            )
        if stored is not None:
            for name in FIELDS:
                setattr(stored, name, getattr(rate, name))
        try:
            saved = rate_save(rate=stored or rate, acting_user=acting_user)
        except RateError as exc:
            raise RateError(f"{path} rate {number}: {exc}") from None
        (loaded.updated if stored is not None else loaded.created).append(saved)
    return loaded


def _same(a, b) -> bool:
    if isinstance(a, (Decimal, int)) and not isinstance(a, bool):
        return Decimal(a) == Decimal(b)
    return a == b
