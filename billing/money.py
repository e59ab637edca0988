"""Money: exact decimals from the file's text to the database and back.

This module owns the representation of amounts, and is the only place that knows it:

- Amounts are `decimal.Decimal`, never float. They are parsed straight from the file's text.
- In the database a `MoneyField` is `numeric` with no fixed scale on PostgreSQL (exact, any number
  of decimal places), and `text` on SQLite, because SQLite's NUMERIC affinity would store a
  10-decimal cost as a binary float and its SUM() adds floats. Sums go through `ExactSum`, which
  is SQL SUM on PostgreSQL and an exact decimal aggregate registered on every SQLite connection.
- Stored amounts are limited to 15 digits before the point and 30 after, so every sum of them is
  exact in `MONEY_CONTEXT` (Inexact is trapped: an inexact sum raises instead of rounding).
- Rounding to the cent happens once, at the statement or journal boundary, with `round_cents`
  (half up, the rule finance staff expect on paper).
"""

from __future__ import annotations

import decimal
from decimal import ROUND_HALF_UP, Decimal
from functools import reduce

from django import forms
from django.db import models
from django.db.backends.signals import connection_created
from django.db.models import Aggregate, Func, Lookup

MONEY_CONTEXT = decimal.Context(
    prec=80,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.InvalidOperation, decimal.Inexact, decimal.Overflow, decimal.DivisionByZero],
)
MAX_INTEGER_DIGITS = 15
MAX_DECIMAL_PLACES = 30
CENT = Decimal("0.01")
ZERO = Decimal(0)


class MoneyParseError(ValueError):
    """The text is not an amount we accept; str() is a reason fit for a user."""


def parse_money(text: str) -> tuple[Decimal, str]:
    """Parse an amount's text into (Decimal, canonical text for storage).

    Accepts plain decimals and E notation (`3.52E-6`) in ASCII digits; refuses NaN, infinities,
    thousands separators, currency symbols, other scripts' digits (`１０.５０`, `١٢٣`: Decimal
    reads them, PostgreSQL does not) and values outside the stored range.
    """
    if isinstance(text, str) and not text.isascii():
        raise MoneyParseError(f"not a number in ASCII digits 0-9: {text!r}")
    try:
        value = Decimal(text)
    except (decimal.InvalidOperation, TypeError, ValueError):
        raise MoneyParseError(f"not a number: {text!r}") from None
    if not value.is_finite():
        raise MoneyParseError(f"not a finite number: {text!r}")
    if "_" in text:
        raise MoneyParseError(f"not a plain number: {text!r}")
    if value and value.adjusted() >= MAX_INTEGER_DIGITS:
        raise MoneyParseError(f"out of range (15 digits before the point at most): {text!r}")
    # Plain text is stored as it is; E notation is written out in full.
    canonical = text.strip() if "e" not in text and "E" not in text else format(value, "f")
    point = canonical.find(".")
    if point >= 0 and len(canonical) - point - 1 > MAX_DECIMAL_PLACES:
        raise MoneyParseError(f"out of range (30 decimal places at most): {text!r}")
    return value, canonical


def exact_sum(values) -> Decimal:
    """Sum Decimals exactly; raises decimal.Inexact rather than round."""
    total = ZERO
    add = MONEY_CONTEXT.add
    for value in values:
        total = add(total, value)
    return total


def round_cents(value: Decimal) -> Decimal:
    """The one rounding rule: to the cent, half up. A value that rounds to zero is 0.00, never
    -0.00 (Decimal keeps the sign of -0.004 through quantize; paper must not show it)."""
    rounded = value.quantize(CENT, rounding=ROUND_HALF_UP)
    return rounded.copy_abs() if not rounded else rounded


def cents_text(value: Decimal, *, grouped: bool = True) -> str:
    """An amount as printed on a statement, a page or a receipt: to the cent, half up, with
    thousands separators unless `grouped` is false; never "-0.00"."""
    return format(round_cents(value), ",f" if grouped else "f")


def money_text(value: Decimal | None) -> str | None:
    """Exact text for JSON and CSV: plain notation, never exponents, never a negative zero."""
    if value is None:
        return None
    return format(value.copy_abs() if not value else value, "f")


def _to_decimal(value) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        # Refuse silently-inexact floats: callers must pass Decimal, int or text.
        raise TypeError("money must not be a float; pass Decimal or text")
    return Decimal(str(value))


class MoneyField(models.Field):
    """An exact decimal amount of any scale (see the module docstring for the storage rule)."""

    description = "Exact decimal amount"

    def db_type(self, connection):
        return "numeric" if connection.vendor == "postgresql" else "text"

    def get_internal_type(self):
        return "MoneyField"

    def from_db_value(self, value, expression, connection):
        if value is None or isinstance(value, Decimal):
            return value
        return Decimal(value)

    def to_python(self, value):
        try:
            return _to_decimal(value)
        except (decimal.InvalidOperation, TypeError, ValueError):
            from django.core.exceptions import ValidationError

            raise ValidationError(f"{value!r} is not a decimal amount") from None

    def get_prep_value(self, value):
        return _to_decimal(super().get_prep_value(value))

    def get_db_prep_value(self, value, connection, prepared=False):
        if not prepared:
            value = self.get_prep_value(value)
        if value is None:
            return None
        if connection.vendor == "postgresql":
            return value
        return format(value, "f")

    def formfield(self, **kwargs):
        return super().formfield(**{"form_class": forms.DecimalField, **kwargs})


class ExactSum(Aggregate):
    """SUM that stays exact on every database (see module docstring)."""

    function = "SUM"
    name = "ExactSum"
    allow_distinct = False

    def __init__(self, expression, **extra):
        super().__init__(expression, output_field=MoneyField(), **extra)

    def as_sqlite(self, compiler, connection, **extra_context):
        # group_concat gathers the group's text in C; EXACT_SUM_TEXT then adds it as Decimals in
        # one Python call. A per-row Python aggregate costs ~4x more on a million rows.
        sql, params = self.as_sql(compiler, connection, function="group_concat", **extra_context)
        return f"EXACT_SUM_TEXT({sql})", params


class AsNumber(Func):
    """An amount as a number for ordering and comparisons (SQLite stores text)."""

    template = "%(expressions)s"

    def as_sqlite(self, compiler, connection, **extra_context):
        return self.as_sql(compiler, connection, template="CAST(%(expressions)s AS REAL)")


class _NumericComparison(Lookup):
    """On SQLite compare numerically: the stored text would compare as text."""

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        if connection.vendor == "sqlite":
            lhs, rhs = f"CAST({lhs} AS REAL)", f"CAST({rhs} AS REAL)"
        return f"{lhs} {self.operator} {rhs}", lhs_params + rhs_params

    def get_db_prep_lookup(self, value, connection):
        field = self.lhs.output_field
        return "%s", [field.get_db_prep_value(value, connection)]


@MoneyField.register_lookup
class MoneyLessThan(_NumericComparison):
    lookup_name, operator = "lt", "<"


@MoneyField.register_lookup
class MoneyLessThanOrEqual(_NumericComparison):
    lookup_name, operator = "lte", "<="


@MoneyField.register_lookup
class MoneyGreaterThan(_NumericComparison):
    lookup_name, operator = "gt", ">"


@MoneyField.register_lookup
class MoneyGreaterThanOrEqual(_NumericComparison):
    lookup_name, operator = "gte", ">="


class _SqliteExactSum:
    """The EXACT_SUM aggregate for SQLite: adds the stored text as Decimals, returns text."""

    def __init__(self):
        self.total = None

    def step(self, value):
        if value is not None:
            value = Decimal(value) if not isinstance(value, (int, float)) else Decimal(str(value))
            self.total = value if self.total is None else MONEY_CONTEXT.add(self.total, value)

    def finalize(self):
        return None if self.total is None else format(self.total, "f")


def _sqlite_exact_sum_text(values: str | None) -> str | None:
    """EXACT_SUM_TEXT: the exact sum of a comma-separated list of decimal texts."""
    if values is None:
        return None
    total = reduce(MONEY_CONTEXT.add, map(Decimal, values.split(",")))
    return format(total, "f")


def _register_sqlite_functions(sender, connection, **kwargs):
    if connection.vendor == "sqlite":
        connection.connection.create_aggregate("EXACT_SUM", 1, _SqliteExactSum)
        connection.connection.create_function(
            "EXACT_SUM_TEXT", 1, _sqlite_exact_sum_text, deterministic=True
        )


connection_created.connect(_register_sqlite_functions, dispatch_uid="billing.money.exact_sum")
