"""Price usage records against effective-dated rates, then allowances, then subsidies.

The rule, in one place (docs/sources.md repeats it for finance staff):

1. A record is priced by the rate for its (service, key, unit) in effect at the time of use. A
   record that crosses a rate's effective date is split at 00:00 UTC of that date, its quantity
   shared pro rata by time.
2. list = quantity × multiplier × list price (the multiplier turns core-hours into service
   units; it is 1 where the price is per consumed unit).
3. The allowance first: each PI or project (per the rate) has `allowance_quantity` consumed
   units free each month, used by the earliest usage first. allowance = covered quantity ×
   multiplier × list price. Usage of a holder with no pi_email / project_id tag (an unknown
   account) draws on an allowance of its own account, so it is never merged into someone else's.
4. Then the percentage, on what the allowance left: subsidy = (list − allowance) × percent / 100.
5. billed = list − allowance − subsidy.

Nothing is rounded here: quantities and amounts are exact Fractions; focus.py writes them as
decimal text (see `decimal_text`), and the statement rounds to the cent once.

A record with no rate, or whose unit differs from its rate's, is refused with the reason; no
record is priced at zero by default.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from .records import UsageRecord

MICROSECOND = timedelta(microseconds=1)


class PricingError(ValueError):
    """Usage that cannot be priced; str() names what is missing, fit for a user."""


@dataclass(frozen=True, slots=True)
class RateSpec:
    """One rate, from the database (Rate) or from a rate file (tiers.json, YAML)."""

    service: str
    key: str
    unit: str
    effective_from: date
    list_price: Decimal
    subsidy_percent: Decimal = Decimal(0)
    allowance_quantity: Decimal = Decimal(0)
    allowance_per: str = ""  # "pi" | "project" | "" (no allowance)
    multiplier: Decimal = Decimal(1)
    pricing_unit: str = ""
    currency: str = "USD"
    description: str = ""
    rate_id: int | None = None  # the Rate's primary key, when it came from the database

    @property
    def starts(self) -> datetime:
        return datetime(
            self.effective_from.year, self.effective_from.month, self.effective_from.day, tzinfo=UTC
        )

    def as_dict(self) -> dict:
        return {
            "id": self.rate_id,
            "service": self.service,
            "key": self.key,
            "unit": self.unit,
            "effective_from": self.effective_from.isoformat(),
            "list_price": str(self.list_price),
            "multiplier": str(self.multiplier),
            "pricing_unit": self.pricing_unit or self.unit,
            "subsidy_percent": str(self.subsidy_percent),
            "allowance_quantity": str(self.allowance_quantity),
            "allowance_per": self.allowance_per,
            "currency": self.currency,
        }


class RateCard:
    """The rates a conversion prices with, grouped by (service, key, unit) and sorted by date."""

    def __init__(self, rates, *, origin: str = "database"):
        self.origin = origin
        self.rates: list[RateSpec] = sorted(
            rates, key=lambda r: (r.service, r.key, r.unit, r.effective_from)
        )
        self._by_thing: dict[tuple[str, str, str], list[RateSpec]] = defaultdict(list)
        self._units: dict[tuple[str, str], set[str]] = defaultdict(set)
        seen: dict[tuple, RateSpec] = {}
        for rate in self.rates:
            ident = (rate.service, rate.key, rate.unit, rate.effective_from)
            if ident in seen:
                raise PricingError(
                    f"two rates for {rate.service}/{rate.key} per {rate.unit} from "
                    f"{rate.effective_from}: {_name(seen[ident])} and {_name(rate)}"
                )
            seen[ident] = rate
            self._by_thing[(rate.service, rate.key, rate.unit)].append(rate)
            self._units[(rate.service, rate.key)].add(rate.unit)
        self._starts = {thing: [r.starts for r in rs] for thing, rs in self._by_thing.items()}

    @classmethod
    def from_database(cls) -> RateCard:
        from billing.models import Rate

        return cls([rate_spec(r) for r in Rate.objects.filter(active=True)], origin="database")

    @property
    def version(self) -> str:
        """A short hash of every rate's terms: the same version prices alike."""
        text = json.dumps([r.as_dict() | {"id": None} for r in self.rates], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def versions(self, service: str, key: str, unit: str) -> list[RateSpec]:
        rates = self._by_thing.get((service, key, unit))
        if rates:
            return rates
        units = self._units.get((service, key))
        if units:
            raise PricingError(
                f"unit mismatch: usage of {service}/{key} is in {unit}, its rate is per "
                f"{' or '.join(sorted(units))}"
            )
        raise PricingError(f"no rate for {service}/{key} (per {unit}); add one to the rate card")

    def boundaries(self, service: str, key: str, unit: str, start: datetime, end: datetime):
        """Effective dates of this thing's rates strictly inside (start, end), in order."""
        starts = self._starts.get((service, key, unit), [])
        return [s for s in starts if start < s < end]

    def rate_at(self, service: str, key: str, unit: str, moment: datetime) -> RateSpec:
        rates = self.versions(service, key, unit)
        index = bisect_right(self._starts[(service, key, unit)], moment) - 1
        if index < 0:
            raise PricingError(
                f"no rate for {service}/{key} (per {unit}) on {moment:%Y-%m-%d}: the first "
                f"applies from {rates[0].effective_from}"
            )
        return rates[index]


def rate_spec(rate) -> RateSpec:
    """A database Rate as a RateSpec."""
    return RateSpec(
        service=rate.service,
        key=rate.key,
        unit=rate.unit,
        effective_from=rate.effective_from,
        list_price=Decimal(rate.list_price),
        subsidy_percent=Decimal(rate.subsidy_percent),
        allowance_quantity=Decimal(rate.allowance_quantity),
        allowance_per=rate.allowance_per,
        multiplier=Decimal(rate.multiplier),
        pricing_unit=rate.pricing_unit,
        currency=rate.currency,
        description=rate.description,
        rate_id=rate.pk,
    )


def _name(rate: RateSpec) -> str:
    return f"rate #{rate.rate_id}" if rate.rate_id else f"{rate.list_price} {rate.currency}"


@dataclass(slots=True)
class PricedLine:
    """A record (or the part of it under one rate) with its exact amounts."""

    record: UsageRecord
    rate: RateSpec
    quantity: Fraction  # consumed, in rate.unit
    list_cost: Fraction
    allowance_quantity: Fraction  # consumed units the allowance covered
    allowance_amount: Fraction
    subsidy_amount: Fraction
    billed_cost: Fraction

    @property
    def pricing_quantity(self) -> Fraction:
        return self.quantity * Fraction(self.rate.multiplier)


@dataclass
class Priced:
    """The result of pricing: the lines and what a statement needs to explain them later."""

    lines: list[PricedLine]
    card: RateCard
    allowances: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        used = sorted({id(line.rate): line.rate for line in self.lines}.values(), key=_order)
        return {
            "rate_card": {
                "origin": self.card.origin,
                "version": self.card.version,
                "rate_ids": [r.rate_id for r in used if r.rate_id is not None],
                "rates": [r.as_dict() for r in used],
            },
            "allowances": self.allowances,
        }


def _order(rate: RateSpec):
    return (rate.service, rate.key, rate.unit, rate.effective_from)


def split_at(record: UsageRecord, moments: list[datetime]) -> list[UsageRecord]:
    """The record cut at each moment, its quantity shared pro rata by time (exact)."""
    if not moments:
        return [record]
    total = (record.end - record.start) // MICROSECOND
    quantity = Fraction(record.quantity)
    parts, start = [], record.start
    for moment in [*moments, record.end]:
        share = Fraction((moment - start) // MICROSECOND, total)
        parts.append(replace(record, start=start, end=moment, quantity=quantity * share))
        start = moment
    return parts


def price(records, *, card: RateCard, period_start: datetime, period_end: datetime) -> Priced:
    """Price the records of one month [period_start, period_end).

    Raises PricingError for usage outside the month, with no rate, or in the wrong unit.
    """
    pieces: list[tuple[datetime, int, UsageRecord, RateSpec]] = []
    for index, record in enumerate(records):
        if record.end <= record.start:
            raise PricingError(f"{record.account}: usage ends before it starts ({record.start})")
        if record.start < period_start or record.end > period_end:
            raise PricingError(
                f"{record.account}: usage {record.start:%Y-%m-%d %H:%M} – "
                f"{record.end:%Y-%m-%d %H:%M} is outside {period_start:%Y-%m}; "
                "split it by month first"
            )
        cuts = card.boundaries(
            record.service, record.rate_key, record.unit, record.start, record.end
        )
        for part in split_at(record, cuts):
            rate = card.rate_at(part.service, part.rate_key, part.unit, part.start)
            pieces.append((part.start, index, part, rate))
    pieces.sort(key=lambda p: (p[0], p[1]))

    used: dict[tuple, Fraction] = defaultdict(Fraction)
    lines: list[PricedLine] = []
    for _, _, part, rate in pieces:
        quantity = Fraction(part.quantity)
        unit_price = Fraction(rate.multiplier) * Fraction(rate.list_price)
        list_cost = quantity * unit_price
        covered = Fraction(0)
        if rate.allowance_quantity and rate.allowance_per:
            pool = (rate.service, rate.key, rate.unit, part.allowance_holder(rate.allowance_per))
            left = max(Fraction(rate.allowance_quantity) - used[pool], Fraction(0))
            covered = min(quantity, left)
            used[pool] += covered
        allowance_amount = covered * unit_price
        subsidy = (list_cost - allowance_amount) * Fraction(rate.subsidy_percent) / 100
        lines.append(
            PricedLine(
                record=part,
                rate=rate,
                quantity=quantity,
                list_cost=list_cost,
                allowance_quantity=covered,
                allowance_amount=allowance_amount,
                subsidy_amount=subsidy,
                billed_cost=list_cost - allowance_amount - subsidy,
            )
        )
    allowances = [
        {
            "service": service,
            "key": key,
            "unit": unit,
            "holder": holder,
            "quantity_included": decimal_text(quantity),
        }
        for (service, key, unit, holder), quantity in sorted(used.items())
        if quantity
    ]
    return Priced(lines=lines, card=card, allowances=allowances)


# Where a value is not a terminating decimal (a third of a core-hour), its text carries this many
# places, rounded half-even: 1e-20 of a dollar, far below any cent the statement rounds to.
TEXT_PLACES = 20


def decimal_text(value: Fraction | Decimal | int) -> str:
    """Exact decimal text of a value; a non-terminating Fraction to TEXT_PLACES places."""
    if not isinstance(value, Fraction):
        value = Fraction(value)
    numerator, denominator = value.numerator, value.denominator
    if denominator == 1:
        return str(numerator)
    sign = "-" if numerator < 0 else ""
    whole, rest = divmod(abs(numerator) * _SCALE, denominator)
    if 2 * rest > denominator or (2 * rest == denominator and whole % 2):  # half to even
        whole += 1
    if not whole:
        return "0"
    digits = str(whole).rjust(TEXT_PLACES + 1, "0")
    return f"{sign}{digits[:-TEXT_PLACES]}.{digits[-TEXT_PLACES:]}".rstrip("0").rstrip(".")


_SCALE = 10**TEXT_PLACES
