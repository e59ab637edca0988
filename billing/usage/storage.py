"""Storage usage reports → usage records in TB-months, by tier.

Invariants this module keeps:

- Every sample of every path is billed or reported: a path no map entry covers comes through with
  empty tags (the importer flags it for review), never dropped.
- TB means 10^12 bytes (the SI terabyte storage vendors sell), never TiB.
- A month's usage is the time-weighted average of its samples: each sample holds from its own time
  until the next sample of the same path; the first sample of the month also covers the time from
  the start of the month (or, when an earlier sample exists, the last one before the month does);
  the last holds to the end of the month. One record per sample interval, so a mid-month rate
  change prices each interval at the rate in force.
- The quantity (TB-months) is exact: byte-seconds over 10^12 × the month's seconds, a Fraction.
  Nothing is rounded here; money is rounded once, on the statement.

Input formats (`--format`, guessed from the file when not given):

- csv: a header with `path` or `project`, `bytes_used` (or `bytes`), `sampled_at` (ISO 8601 date or
  date-time; no zone means UTC) and optionally `tier`.
- json: a list of objects with the same keys, or {"samples": [...]}.
- isilon: `isi quota quotas list --format=json` (a list of quotas, or {"quotas": [...]}); directory
  quotas only, usage `logical` (then `fslogical`, `applogical`), as the earlier tool billed it.
- qumulo: `GET /v1/files/quotas/status/` ({"quotas": [{"path", "capacity_usage"}, ...]}).
  An isilon or qumulo file has no sample time of its own: give one report, or several as a list of
  {"sampled_at": ..., "quotas": [...]}; a single undated report stands for the whole month.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

from ..money import MONEY_CONTEXT
from . import Conversion, ConversionError, Converter, month_bounds, register
from .pricing import RateCard, RateSpec, price
from .records import UsageRecord
from .slurm import stored_accounts

SERVICE = "storage"
UNIT = "TB-month"
BYTES_PER_TB = 10**12  # TB, not TiB
TICK, SECOND = timedelta(microseconds=1), timedelta(seconds=1)  # time is weighted exactly
DEFAULT_TIER = "standard"
FORMATS = ("csv", "json", "isilon", "qumulo")

_KEY_COLUMNS = ("path", "project")
_BYTES_COLUMNS = ("bytes_used", "bytes", "used_bytes", "usage_bytes")
_TIME_COLUMNS = ("sampled_at", "sample_time", "timestamp", "time", "date")
_ISILON_USAGE = ("logical", "fslogical", "applogical")


@dataclass(frozen=True, slots=True)
class Sample:
    key: str  # a path (/ifs/research/lab) or a project id, as the report names it
    bytes_used: int
    sampled_at: datetime | None  # UTC; None: an undated snapshot standing for the whole month
    tier: str | None = None
    line: int = 0  # where it came from, for messages


@dataclass
class Owner:
    """What a map entry says about a path: the tags a charge carries, and optionally its tier."""

    tags: dict[str, str] = field(default_factory=dict)
    tier: str | None = None


@dataclass(frozen=True)
class Interval:
    key: str
    tier: str
    start: datetime
    end: datetime
    bytes_used: int

    def tb_months(self, month_seconds: int) -> Fraction:
        seconds = Fraction((self.end - self.start) // TICK, SECOND // TICK)
        return self.bytes_used * seconds / (BYTES_PER_TB * month_seconds)


# -- reading --------------------------------------------------------------------------------------


def read_text(path: Path) -> str:
    """A file's text, or a refusal naming it (missing, unreadable, not UTF-8)."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConversionError(f"{Path(path).name}: cannot be read ({exc})") from None


def read_json(path: Path):
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise ConversionError(f"{Path(path).name}: not valid JSON ({exc})") from None


@lru_cache(maxsize=4096)  # a nightly report repeats one time on every line
def _iso(value: str) -> datetime | None:
    try:
        if len(value) == 10:
            parsed = datetime.combine(date.fromisoformat(value), datetime.min.time())
        else:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_time(text: str, where: str) -> datetime:
    """ISO 8601 date or date-time; a naive one is UTC. Returns an aware UTC datetime."""
    parsed = _iso((text or "").strip())
    if parsed is None:
        raise ConversionError(f"{where}: not an ISO 8601 date or date-time: {text!r}")
    return parsed


def parse_bytes(value, where: str) -> int:
    text = str(value).strip() if value is not None else ""
    if not (text.isascii() and text.isdigit()):
        raise ConversionError(f"{where}: bytes used must be a whole number of bytes: {value!r}")
    return int(text)


def _pick(headers: list[str], names: Iterable[str]) -> int | None:
    return next((headers.index(n) for n in names if n in headers), None)


def read_rows(headers: list[str], rows: Iterable[tuple[int, list]], label: str) -> list[Sample]:
    """Samples from rows of values under lowercase `headers` (a CSV, or JSON objects)."""
    key_col, bytes_col = _pick(headers, _KEY_COLUMNS), _pick(headers, _BYTES_COLUMNS)
    time_col, tier_col = _pick(headers, _TIME_COLUMNS), _pick(headers, ("tier",))
    missing = [
        "/".join(names)
        for names, col in (
            (_KEY_COLUMNS, key_col),
            (_BYTES_COLUMNS, bytes_col),
            (_TIME_COLUMNS, time_col),
        )
        if col is None
    ]
    if missing:
        raise ConversionError(f"{label}: missing column(s) {', '.join(missing)}")
    samples = []
    width = len(headers)
    for line, row in rows:
        if len(row) < width:
            row = [*row, *[None] * (width - len(row))]
        key = str(row[key_col] or "").strip()
        if not key:
            raise ConversionError(f"{label} line {line}: no path or project")
        value = row[bytes_col]
        if isinstance(value, str) and value.isascii() and value.isdigit():
            used = int(value)
        else:
            used = parse_bytes(value, f"{label} line {line}")
        when = _iso(str(row[time_col] or "").strip())
        if when is None:
            when = parse_time(str(row[time_col] or ""), f"{label} line {line}")
        tier = str(row[tier_col] or "").strip() or None if tier_col is not None else None
        samples.append(Sample(key, used, when, tier, line))
    return samples


def _json_rows(items: list, label: str) -> tuple[list[str], Iterator[tuple[int, list]]]:
    headers: list[str] = []
    lowered = []
    for item in items:
        if not isinstance(item, dict):
            raise ConversionError(f"{label}: a sample is an object, got {item!r}")
        row = {str(k).strip().lower(): v for k, v in item.items()}
        headers += [k for k in row if k not in headers]
        lowered.append(row)
    return headers, ((i, [row.get(h) for h in headers]) for i, row in enumerate(lowered, 1))


def _quota_reports(data) -> list[tuple[datetime | None, list]]:
    if isinstance(data, dict):
        data = [data] if "quotas" in data else None
    elif isinstance(data, list) and data and isinstance(data[0], dict) and "quotas" in data[0]:
        pass
    elif isinstance(data, list):  # `isi quota quotas list --format=json` prints a bare list
        data = [{"quotas": data}]
    if not isinstance(data, list):
        raise ConversionError("not a quota report: expected a list of quotas or {'quotas': [...]}")
    reports = []
    for index, report in enumerate(data, start=1):
        at = report.get("sampled_at")
        when = parse_time(str(at), f"report {index} sampled_at") if at else None
        reports.append((when, report.get("quotas") or []))
    return reports


def read_isilon(data) -> tuple[list[Sample], list[str]]:
    samples, notes = [], []
    skipped = 0
    for when, quotas in _quota_reports(data):
        for index, quota in enumerate(quotas, start=1):
            if quota.get("type", "directory") != "directory":
                skipped += 1  # user/group quotas count bytes a directory quota already holds
                continue
            usage = quota.get("usage") or {}
            name = next((n for n in _ISILON_USAGE if usage.get(n) is not None), None)
            if not quota.get("path") or name is None:
                raise ConversionError(f"quota {index}: needs a path and usage.logical")
            samples.append(
                Sample(quota["path"], parse_bytes(usage[name], f"quota {index}"), when, line=index)
            )
    if skipped:
        notes.append(f"{skipped} user/group quota(s) not billed: their bytes are in a directory")
    return samples, notes


def read_qumulo(data) -> tuple[list[Sample], list[str]]:
    samples = []
    for when, quotas in _quota_reports(data):
        for index, quota in enumerate(quotas, start=1):
            if not quota.get("path") or quota.get("capacity_usage") is None:
                raise ConversionError(f"quota {index}: needs a path and capacity_usage")
            samples.append(
                Sample(
                    quota["path"].rstrip("/") or "/",
                    parse_bytes(quota["capacity_usage"], f"quota {index}"),
                    when,
                    line=index,
                )
            )
    return samples, []


def guess_format(path: Path) -> str:
    if path.suffix.lower() != ".json":
        return "csv"
    data = read_json(path)
    quotas = data.get("quotas") if isinstance(data, dict) else data
    first = quotas[0] if isinstance(quotas, list) and quotas else {}
    if isinstance(first, dict) and "quotas" in first:
        first = (first["quotas"] or [{}])[0]
    if isinstance(first, dict) and "capacity_usage" in first:
        return "qumulo"
    if isinstance(first, dict) and "usage" in first:
        return "isilon"
    return "json"


def read_samples(path: Path, fmt: str | None = None) -> tuple[list[Sample], list[str]]:
    """Read a report file. Returns (samples, notes for the summary)."""
    fmt = fmt or guess_format(Path(path))
    if fmt == "csv":
        try:
            with open(path, encoding="utf-8-sig", newline="") as handle:
                reader = csv.reader(handle)
                headers = [h.strip().lower() for h in next(reader, [])]
                return read_rows(headers, enumerate(reader, start=2), Path(path).name), []
        except UnicodeDecodeError as exc:
            raise ConversionError(f"{Path(path).name}: not UTF-8 text ({exc})") from None
    data = read_json(Path(path))
    if fmt == "json":
        items = data.get("samples") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ConversionError("a JSON report is a list of samples or {'samples': [...]}")
        return read_rows(*_json_rows(items, Path(path).name), Path(path).name), []
    if fmt == "isilon":
        return read_isilon(data)
    if fmt == "qumulo":
        return read_qumulo(data)
    raise ConversionError(f"unknown storage format {fmt!r}; choose one of {', '.join(FORMATS)}")


# -- the map: path or project → tags ---------------------------------------------------------

_TAG_NAMES = ("pi_email", "project_id", "fund_org", "cost_center", "reference_1", "reference_2")


def _owner(entry: dict) -> Owner:
    tags = {n: str(entry[n]).strip() for n in _TAG_NAMES if str(entry.get(n) or "").strip()}
    return Owner(tags=tags, tier=(str(entry.get("tier") or "").strip() or None))


def read_map(path: Path) -> dict[str, Owner]:
    """A path/project → owner map from CSV (path or project, pi_email, project_id, fund_org,
    optional tier), the earlier Isilon tool's projects.json ({"projects": {path: {...}}}), or a
    list of Qumulo `.openchargeback.json` dot files (matched by project_id as the folder name).
    Dot files with "active": false are left out, so their paths come through untagged."""
    owners: dict[str, Owner] = {}
    if Path(path).suffix.lower() == ".json":
        data = read_json(Path(path))
        if isinstance(data, dict) and isinstance(data.get("projects"), dict):
            for key, entry in data["projects"].items():
                owners[key.rstrip("/")] = _owner(entry)
        elif isinstance(data, list):
            for entry in data:
                if not isinstance(entry, dict):
                    raise ConversionError(f"{Path(path).name}: a dot file is an object")
                if entry.get("active", True) is False or not entry.get("project_id"):
                    continue
                key = str(entry.get("path") or entry["project_id"]).rstrip("/")
                owners[key] = _owner(entry)
        else:
            raise ConversionError(f"{Path(path).name}: not a storage map")
        return owners
    for line, row in enumerate(csv.DictReader(io.StringIO(read_text(path))), start=2):
        row = {str(k).strip().lower(): (v or "").strip() for k, v in row.items() if k}
        key = row.get("path") or row.get("project")
        if not key:
            raise ConversionError(f"{Path(path).name} line {line}: no path or project")
        owners[key.rstrip("/")] = _owner(row)
    return owners


def find_owner(key: str, owners: dict[str, Owner]) -> Owner | None:
    """The entry for the key itself, else its longest mapped parent directory, else one whose
    name is the key's last component (a dot file names its folder by project_id)."""
    candidate = key.rstrip("/")
    while candidate:
        if candidate in owners:
            return owners[candidate]
        if "/" not in candidate:
            break
        candidate = candidate.rsplit("/", 1)[0]
    return owners.get(key.rstrip("/").rsplit("/", 1)[-1])


# -- time weighting -------------------------------------------------------------------------------


def intervals(
    samples: list[Sample], period: str, owners: dict[str, Owner] | None = None, tier: str = ""
) -> list[Interval]:
    """Each path's samples as intervals covering the month (the rule in the module docstring).

    A path whose samples all fall after the month is not in it; samples after the month end are
    ignored, the last sample before the month start carries into it.
    """
    start, end = month_bounds(period)
    by_key: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_key[sample.key.rstrip("/") or sample.key].append(sample)
    out: list[Interval] = []
    for key, series in by_key.items():
        owner = find_owner(key, owners or {})
        undated = [s for s in series if s.sampled_at is None]
        dated = sorted((s for s in series if s.sampled_at is not None), key=lambda s: s.sampled_at)
        if undated and dated:
            raise ConversionError(f"{key}: dated and undated samples mixed")
        if undated:
            if len(undated) > 1:
                raise ConversionError(f"{key}: appears twice in one undated report")
            points = [(start, undated[0])]
        else:
            before = [s for s in dated if s.sampled_at <= start]
            inside = [s for s in dated if start < s.sampled_at < end]
            points = [(start, before[-1])] if before else []
            if inside and not points:
                points = [(start, inside[0])]
                inside = inside[1:]
            points += [(s.sampled_at, s) for s in inside]
        for i, (at, sample) in enumerate(points):
            until = points[i + 1][0] if i + 1 < len(points) else end
            if until <= at:
                continue  # two samples at the same instant: the later line wins
            chosen = sample.tier or (owner.tier if owner else None) or tier or DEFAULT_TIER
            out.append(Interval(key, chosen, at, until, sample.bytes_used))
    return out


# -- the earlier tool's rates.json ----------------------------------------------------------------

GIB = 2**30  # the earlier Isilon and Qumulo scripts counted GB and TB in powers of 1024


def legacy_rates(path: Path, *, tier: str, period: str) -> RateCard:
    """The earlier Isilon (`ratePerTBMonth`, `freeGBPerProject`) or Qumulo (`monthlyRatePerGB`,
    `defaultFreeGB`) rates.json as a one-rate card for `tier`, effective from the month's start.

    Those scripts divided bytes by 1024^4 (TiB) and 1024^3 (GiB); our unit is the SI TB-month, so
    the price per TB is theirs × 10^12 / 2^40 (or / 2^30 per GB) and the free allowance is their
    GB × 2^30 bytes. Both conversions are exact (the divisors are powers of two), so a centre keeps
    its bills to the cent."""
    data = read_json(Path(path))
    if not isinstance(data, dict):
        raise ConversionError(f"{Path(path).name}: not an Isilon or Qumulo rates.json")
    exact = MONEY_CONTEXT  # traps Inexact: these divisions by powers of two terminate
    if "ratePerTBMonth" in data:
        per_tb = exact.divide(Decimal(str(data["ratePerTBMonth"])) * BYTES_PER_TB, GIB * 1024)
        free_gb = data.get("freeGBPerProject", 0)
    elif "monthlyRatePerGB" in data:
        per_tb = exact.divide(Decimal(str(data["monthlyRatePerGB"])) * BYTES_PER_TB, GIB)
        free_gb = data.get("defaultFreeGB", 0)
    else:
        raise ConversionError(f"{Path(path).name}: no ratePerTBMonth or monthlyRatePerGB")
    allowance = exact.divide(Decimal(str(free_gb)) * GIB, BYTES_PER_TB)
    start, _ = month_bounds(period)
    return RateCard(
        [
            RateSpec(
                service=SERVICE,
                key=tier,
                unit=UNIT,
                effective_from=start.date(),
                list_price=per_tb,
                allowance_quantity=allowance,
                allowance_per="project" if allowance else "",
                description=data.get("serviceName", ""),
            )
        ],
        origin=Path(path).name,
    )


# -- the converter -------------------------------------------------------------------------------


def records(
    found: list[Interval],
    owners: dict[str, Owner],
    card: RateCard,
    period: str,
    stored: dict[str, dict] | None = None,
) -> list[UsageRecord]:
    """One record per path and tier for the month, cut where a rate changes, so each part is
    priced at its own rate with the bytes actually held then (not shared pro rata).

    A path the map doesn't cover takes the admin's account map (`stored`: account id → tags)
    for exactly that path, so an allowance per PI counts it with the PI's other usage."""
    start, end = month_bounds(period)
    month_ticks = (end - start) // TICK
    groups: dict[tuple[str, str], list[Interval]] = defaultdict(list)
    for interval in found:
        groups[(interval.key, interval.tier)].append(interval)
    out = []
    for (key, tier), series in groups.items():
        owner = find_owner(key, owners)
        if owner is None and key in (stored or {}):
            owner = Owner(tags=stored[key])
        edges = [start, *card.boundaries(SERVICE, tier, UNIT, start, end), end]
        for a, b in zip(edges, edges[1:], strict=False):
            held = [i for i in series if i.start < b and i.end > a]
            if not held:
                continue
            byte_time = sum(
                i.bytes_used * ((min(i.end, b) - max(i.start, a)) // TICK) for i in held
            )
            out.append(
                UsageRecord(
                    start=a,
                    end=b,
                    account=key,
                    service=SERVICE,
                    rate_key=tier,
                    quantity=Fraction(byte_time, BYTES_PER_TB * month_ticks),
                    unit=UNIT,
                    tags=dict(owner.tags) if owner else {},
                    description=f"{tier} storage, {key}: {len(series)} sample(s), time-weighted",
                    resource_id=key,
                    resource_name=key,
                    service_name=f"Storage ({tier})",
                    service_category="Storage",
                )
            )
    return out


def _stored(options: dict) -> dict[str, dict]:
    """The admin's account map for the source (a caller may give its own, as bench/ does)."""
    given = options.get("stored_accounts")
    return given if given is not None else stored_accounts(options.get("source"))


def convert(path: Path, *, period: str, options: dict) -> Conversion:
    fmt = options.get("format")
    if fmt and fmt not in FORMATS:
        raise ConversionError(f"unknown storage format {fmt!r}; choose one of {', '.join(FORMATS)}")
    fmt = fmt or guess_format(Path(path))
    samples, notes = read_samples(path, fmt)
    owners = read_map(Path(options["map"])) if options.get("map") else {}
    tier = options.get("tier") or DEFAULT_TIER
    card = options.get("card") or (  # a RateCard given by a caller (tests, bench/)
        legacy_rates(Path(options["rates"]), tier=tier, period=period)
        if options.get("rates")
        else RateCard.from_database()
    )
    found = intervals(samples, period, owners, tier=tier)
    usage = records(found, owners, card, period, _stored(options))
    start, end = month_bounds(period)
    priced = price(usage, card=card, period_start=start, period_end=end)
    unmapped = sorted({r.account for r in usage if not r.tags})
    warnings = list(notes)
    if unmapped:
        shown = ", ".join(unmapped[:5]) + (" …" if len(unmapped) > 5 else "")
        warnings.append(f"{len(unmapped)} path(s) on no map, untagged (flagged on import): {shown}")
    return Conversion(
        converter="storage",
        period=period,
        priced=priced,
        provider="Research Storage",
        billing_account=fmt,
        notes={
            "format": fmt,
            "samples": len(samples),
            "paths": len({r.account for r in usage}),
            "unmapped paths": len(unmapped),
            "unit": "TB-month (TB = 10^12 bytes)",
            "warnings": warnings,
        },
    )


def add_arguments(parser) -> None:
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="Input format (default: guessed: .json quota reports by their keys, else csv).",
    )
    parser.add_argument(
        "--map",
        metavar="FILE",
        help="Path or project → pi_email, project_id, fund_org[, tier]: CSV, the earlier tool's "
        "projects.json, or a JSON list of .openchargeback.json dot files.",
    )
    parser.add_argument(
        "--tier",
        metavar="TIER",
        help=f"Tier of paths the report and map don't tier ({DEFAULT_TIER}).",
    )
    parser.add_argument(
        "--rates",
        metavar="FILE",
        help="The earlier tool's Isilon or Qumulo rates.json instead of the rate card.",
    )


register(
    Converter(
        name="storage",
        help="Storage usage (CSV, JSON, Isilon quotas, Qumulo quotas) priced per TB-month by tier.",
        convert=convert,
        add_arguments=add_arguments,
    )
)
