"""The one rounding rule that statements and journals share, so they tie to the cent.

Amounts stay exact (Decimal) until a statement is made. A statement is one group of billable
charges: (period, PI, project, fund/org, currency). Its amount due is the exact sum of its
charges' BilledCost, rounded once to the cent, half up (`money.round_cents`); the same for its
list price. Every breakdown of a statement (by service, by resource, by source and GL account)
is then *allocated* from that rounded total with `allocate_cents`, never rounded line by line,
so its lines always add up to its total.

The journal debits each PI fund/org with the allocation of its statements' rounded totals, so
the debits of a fund equal the amounts due on that fund's statements, to the cent.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from decimal import Decimal
from typing import TypeVar

from .money import CENT, MONEY_CONTEXT, exact_sum, round_cents

K = TypeVar("K", bound=Hashable)


def allocate_cents(parts: Mapping[K, Decimal], total: Decimal | None = None) -> dict[K, Decimal]:
    """Round exact parts to cents so that they add up to `total` exactly.

    `total` defaults to the rounded exact sum of the parts. Each part gets its value truncated
    toward minus infinity to the cent; the cents left over go one by one to the parts with the
    largest remainders (ties: the order of `parts`). Largest-remainder allocation moves every
    part by less than one cent from its exact value when `total` is the rounded sum.

    >>> allocate_cents({"a": Decimal("0.335"), "b": Decimal("0.335"), "c": Decimal("0.33")})
    {'a': Decimal('0.34'), 'b': Decimal('0.33'), 'c': Decimal('0.33')}
    """
    if not parts:
        if total not in (None, 0):
            raise ValueError(f"cannot allocate {total} over no parts")
        return {}
    if total is None:
        total = round_cents(exact_sum(parts.values()))
    floors = {key: value.quantize(CENT, rounding="ROUND_FLOOR") for key, value in parts.items()}
    leftover_cents = int(MONEY_CONTEXT.subtract(total, exact_sum(floors.values())) / CENT)
    keys = list(parts)
    if leftover_cents:
        # Largest remainder first; for a negative leftover, take from the smallest remainders.
        order = sorted(
            range(len(keys)),
            key=lambda i: parts[keys[i]] - floors[keys[i]],
            reverse=leftover_cents > 0,
        )
        step = CENT if leftover_cents > 0 else -CENT
        for n in range(abs(leftover_cents)):
            key = keys[order[n % len(keys)]]
            floors[key] += step
    return floors
