"""Exact sums of a column of decimal texts, vectorised.

A million `Decimal` objects take longer to build than the rest of a batch's totals. Instead each
plain decimal text (at most 15 digits before the point and 30 after: billing/money.py) is cut into
six integer chunks of at most 10 digits; masked sums of the chunks are exact in int64 for any
batch under 900 million rows, and recombine into the exact Decimal sum in Python integers. The
result has the exponent `money.exact_sum` would give (the most decimal places of any value
summed), so receipts read the same. Texts of any other shape (rare: parse_money's canonical
forms such as ".5") are summed as Decimals.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..money import MAX_DECIMAL_PLACES, MAX_INTEGER_DIGITS, MONEY_CONTEXT, ZERO

_PARTS = r"^(?P<sign>[+-]?)(?P<whole>[0-9]{1,15})(?:\.(?P<fraction>[0-9]{0,30}))?$"
_WHOLE_CHUNKS = ((0, 5), (5, 10), (10, 15))  # of the whole part, left-padded to 15 digits
_FRACTION_CHUNKS = ((0, 10), (10, 20), (20, 30))  # of the fraction, right-padded to 30 digits
assert MAX_INTEGER_DIGITS == 15 and MAX_DECIMAL_PLACES == 30  # the chunking above relies on it


class ExactColumn:
    """A column of decimal texts (nulls allowed) ready for exact sums over any row mask."""

    def __init__(self, texts: pa.Array):
        self.count = len(texts)
        self.valid = np.asarray(texts.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        parts = pc.extract_regex(pc.fill_null(texts, "x"), _PARTS)
        plain = np.asarray(parts.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        self.others = {
            offset: Decimal(text)
            for offset, text in zip(
                np.flatnonzero(self.valid & ~plain).tolist(),
                texts.filter(pa.array(self.valid & ~plain)).to_pylist(),
                strict=True,
            )
        }
        self.plain = plain
        parts = parts.fill_null({"sign": "", "whole": "0", "fraction": ""})
        whole = pc.utf8_lpad(parts.field("whole"), 15, "0")
        fraction = parts.field("fraction")
        self.places = pc.utf8_length(fraction).to_numpy(zero_copy_only=False)
        fraction = pc.utf8_rpad(fraction, 30, "0")
        sign = np.where(
            pc.equal(parts.field("sign"), "-").to_numpy(zero_copy_only=False), -1, 1
        ).astype(np.int64)
        self.chunks = []  # (weight as a power of ten, signed int64 chunk per row)
        for start, stop in _WHOLE_CHUNKS:
            digits = pc.utf8_slice_codeunits(whole, start, stop)
            self.chunks.append((45 - stop, sign * _int64(digits)))
        for start, stop in _FRACTION_CHUNKS:
            digits = pc.utf8_slice_codeunits(fraction, start, stop)
            self.chunks.append((30 - stop, sign * _int64(digits)))

    def sum(self, mask: np.ndarray | None = None) -> Decimal:
        """The exact sum of the non-null values where `mask` is true (all rows by default)."""
        rows = self.valid & self.plain if mask is None else self.valid & self.plain & mask
        total = ZERO
        if rows.any():
            units = 0  # in 1e-30
            for weight, chunk in self.chunks:
                units += int(chunk[rows].sum()) * 10**weight
            places = int(self.places[rows].max())
            units //= 10 ** (30 - places)  # exact: no value has more places than that
            total = Decimal(f"{units}E-{places}")
        for offset, value in self.others.items():
            if mask is None or mask[offset]:
                total = MONEY_CONTEXT.add(total, value)
        return total


def _int64(digits: pa.Array) -> np.ndarray:
    return pc.cast(digits, pa.int64()).to_numpy(zero_copy_only=False)
