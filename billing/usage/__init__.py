"""Usage sources that export no FOCUS themselves (HPC, storage, AI tokens): converters.

A converter reads a source's own export and returns a `Conversion`: priced lines (pricing.py)
that focus.py writes as FOCUS rows, and a summary recorded on the Import (rate card version,
allowances applied) so a statement can be explained later. `convert <name>`, `ingest --from
<name>` and the admin upload's format choice all look converters up in `CONVERTERS`.

Register one with `register(Converter(...))` in its module and import the module at the end of
this file.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .pricing import Priced, PricingError, RateCard
from .records import UsageRecord


class ConversionError(ValueError):
    """The input cannot be converted; str() says why, fit for a user."""


@dataclass
class Conversion:
    converter: str
    period: str  # "YYYY-MM"
    priced: Priced
    provider: str  # ProviderName / BillingAccountName of the rows, e.g. "HPC"
    billing_account: str = ""  # BillingAccountId, e.g. the cluster's name
    notes: dict = field(default_factory=dict)  # the converter's own counts and warnings

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        return month_bounds(self.period)

    def write(self, out) -> int:
        from .focus import write_focus

        start, end = self.bounds
        return write_focus(
            self.priced,
            out,
            period_start=start,
            period_end=end,
            converter=self.converter,
            provider=self.provider,
            billing_account=self.billing_account or self.provider,
        )

    def text(self) -> str:
        buffer = io.StringIO()
        self.write(buffer)
        return buffer.getvalue()

    def record(self) -> dict:
        """What Import.conversion keeps."""
        return (
            {"converter": self.converter, "period": self.period}
            | self.priced.summary()
            | {"notes": self.notes}
        )


@dataclass(frozen=True)
class Converter:
    """name: as typed on the command line; convert(path, period=, options=) -> Conversion;
    add_arguments(parser) adds the converter's own options to `convert <name>`."""

    name: str
    help: str
    convert: Callable[..., Conversion]
    add_arguments: Callable | None = None


CONVERTERS: dict[str, Converter] = {}


def register(converter: Converter) -> Converter:
    if converter.name in CONVERTERS or converter.name == "focus":
        raise ValueError(f"converter {converter.name!r} is registered twice")
    CONVERTERS[converter.name] = converter
    return converter


def convert_file(name: str, path: str | Path, *, period: str, options: dict | None = None):
    """Run a registered converter; ConversionError (or PricingError) names the problem."""
    converter = CONVERTERS.get(name)
    if converter is None:
        known = ", ".join(sorted(CONVERTERS)) or "none"
        raise ConversionError(f"no converter {name!r} (known: {known})")
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    month_bounds(period)
    try:
        return converter.convert(path, period=period, options=dict(options or {}))
    except PricingError as exc:
        raise ConversionError(f"{path.name}: {exc}") from None


def month_bounds(period: str) -> tuple[datetime, datetime]:
    """[first instant, first instant of the next month) of "YYYY-MM", in UTC."""
    try:
        year, month = (int(p) for p in period.split("-"))
        start = datetime(year, month, 1, tzinfo=UTC)
    except (ValueError, TypeError):
        raise ConversionError(f"period must be YYYY-MM, got {period!r}") from None
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


__all__ = [
    "CONVERTERS",
    "Conversion",
    "ConversionError",
    "Converter",
    "PricingError",
    "RateCard",
    "UsageRecord",
    "convert_file",
    "month_bounds",
    "register",
]

# Converters register themselves on import.
from . import slurm, storage, tokens  # noqa: E402, F401
