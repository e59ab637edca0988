"""Slurm: `sacct --parsable2` output → priced usage, one row per account, partition and resource
(or per job with --per-job) for one month.

Input: the pipe-separated output of (docs/sources.md gives the exact command)

    TZ=UTC sacct --allusers --allocations --parsable2 --starttime 2026-11-01T00:00:00 \
        --endtime 2026-12-01T00:00:00 \
        --format=JobID,Account,User,Partition,State,Start,End,AllocCPUS,AllocTRES

with its header line. Columns are found by name; JobID, Account, Partition, State, Start, End
and AllocCPUS are required, AllocTRES is needed for GPUs.

The rules:
- States billed: COMPLETED, TIMEOUT, OUT_OF_MEMORY, FAILED, and CANCELLED when the job started
  (Start is a time). PENDING and any job that never started are never billed. `--states`
  chooses others (a job still RUNNING, NODE_FAIL, PREEMPTED, …).
- Time: only the part of [Start, End) inside the month, so a job crossing the month end is split
  by time; the part is cut again where a rate changes (pricing.py).
- CPU: AllocCPUS × seconds → core-hours, rate hpc-cpu/<partition>. GPU: each
  `gres/gpu:<type>=N` of AllocTRES × seconds → GPU-hours, rate hpc-gpu/<type> (`gres/gpu=N`
  with no type: rate hpc-gpu/gpu). Memory, only where the rate card has any hpc-mem rate (a
  centre that bills it): AllocTRES `mem=` (Slurm's K, M, G, T are powers of 1024) × seconds →
  GiB-hours, rate hpc-mem/<partition>.
- Attribution: the account map (--accounts accounts.json, else the admin's account map for the
  source, else one for every source). An account with no entry keeps no tags: its rows are
  flagged on import, never dropped.
- The earlier tool's tiers.json (--rates) is its rate card: service units = CPU-hours × the
  partition's suMultiplier; list = SU × suRate; billed = list less the partition's
  subsidyPercent. It bills CPUs only (a GPU partition's multiplier prices its GPUs) and, unless
  --states is given, the file's billableStates and excludeAccounts.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path

from . import Conversion, ConversionError, Converter, month_bounds, register
from .pricing import RateCard, RateSpec, price
from .records import UsageRecord

DEFAULT_STATES = ("COMPLETED", "TIMEOUT", "OUT_OF_MEMORY", "FAILED", "CANCELLED")
REQUIRED = ("JobID", "Account", "Partition", "State", "Start", "End", "AllocCPUS")
CPU, GPU, MEM = "hpc-cpu", "hpc-gpu", "hpc-mem"
UNITS = {CPU: "core-hour", GPU: "gpu-hour", MEM: "gib-hour"}
# What one unit-second of each is counted in: CPUs, GPUs, MiB of memory (1024 to the GiB).
PER_UNIT = {CPU: 1, GPU: 1, MEM: 1024}
MIB = {"K": Fraction(1, 1024), "M": 1, "G": 1024, "T": 1024 * 1024}
SECOND = timedelta(seconds=1)
NOT_A_TIME = {"", "Unknown", "None", "N/A"}
EPOCH = date(1970, 1, 1)


def add_arguments(parser) -> None:
    parser.add_argument(
        "--per-job", action="store_true", help="One row per job and resource, not per account."
    )
    parser.add_argument(
        "--rates",
        metavar="FILE",
        help="The earlier tool's tiers.json as the rate card (default: the stored rates).",
    )
    parser.add_argument(
        "--accounts",
        metavar="FILE",
        help="The earlier tool's accounts.json as the account map (default: the stored map).",
    )
    parser.add_argument(
        "--states",
        metavar="LIST",
        help=f"Comma-separated job states to bill (default: {','.join(DEFAULT_STATES)}).",
    )
    parser.add_argument(
        "--cluster", default="", help="The cluster's name, as BillingAccountId (default: HPC)."
    )


def tiers_card(path: Path) -> tuple[RateCard, dict]:
    """The earlier tool's tiers.json as a rate card (CPU core-hours priced in service units)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
        partitions = data["partitions"]
        su_rate = Decimal(str(data["rates"]["suRate"]))
    except (OSError, ValueError, KeyError, TypeError, InvalidOperation) as exc:
        raise ConversionError(f"{path}: not a tiers.json rate file ({exc})") from None
    rates = []
    for name, tier in partitions.items():
        try:
            multiplier = Decimal(str(tier.get("suMultiplier", 1)))
            subsidy = Decimal(str(tier.get("subsidyPercent", 0)))
        except (InvalidOperation, AttributeError):
            raise ConversionError(f"{path}: partition {name}: not a number") from None
        if not 0 <= subsidy <= 100 or multiplier <= 0:
            raise ConversionError(f"{path}: partition {name}: subsidy 0–100, multiplier > 0")
        rates.append(
            RateSpec(
                service=CPU,
                key=name,
                unit="core-hour",
                effective_from=EPOCH,
                list_price=su_rate,
                subsidy_percent=subsidy,
                multiplier=multiplier,
                pricing_unit="SU",
                description=str(tier.get("description", "")),
            )
        )
    rules = {
        "service_name": str(data.get("serviceName", "")),
        "states": [str(s).upper() for s in data.get("billableStates", [])],
        "exclude": [str(a) for a in data.get("excludeAccounts", [])],
    }
    return RateCard(rates, origin=f"tiers.json {path.name}"), rules


def accounts_map(path: Path) -> dict[str, dict]:
    """The earlier tool's accounts.json: Slurm account → tags."""
    try:
        accounts = json.loads(path.read_text(encoding="utf-8"))["accounts"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConversionError(f"{path}: not an accounts.json file ({exc})") from None
    names = {"piEmail": "pi_email", "projectId": "project_id", "fundOrg": "fund_org",
             "costCenter": "cost_center"}  # fmt: skip
    return {
        account: {names[k]: str(v) for k, v in entry.items() if k in names and v}
        for account, entry in accounts.items()
    }


def stored_accounts(source: str | None) -> dict[str, dict]:
    """The admin's account map: entries for the source win over those for every source."""
    from billing.models import AccountMapping

    found: dict[str, dict] = {}
    rows = AccountMapping.objects.filter(source__isnull=True)
    if source:
        rows = rows | AccountMapping.objects.filter(source__name=source)
    for m in rows.order_by("source_id"):  # NULL first, so a source's own entry overwrites
        if m.source_id is None and m.account_id in found:
            continue
        tags = {
            "pi_email": m.pi_email,
            "project_id": m.project_id,
            "fund_org": m.fund_org,
            "cost_center": m.cost_center,
        }
        found[m.account_id] = {k: v for k, v in tags.items() if v}
    return found


def _gpus(tres: str) -> list[tuple[str, int]]:
    """[(type, count)] from AllocTRES: gres/gpu:a100=2 → ("a100", 2); untyped gres/gpu=N only
    when no typed entry is given (sacct lists both for the same GPUs)."""
    typed, untyped = [], 0
    for item in tres.split(","):
        name, _, count = item.partition("=")
        if name.startswith("gres/gpu:"):
            typed.append((name[9:], int(count)))
        elif name == "gres/gpu":
            untyped = int(count)
    if typed:
        return typed
    return [("gpu", untyped)] if untyped else []


def _memory_mib(tres: str) -> Fraction | None:
    """MiB of AllocTRES's mem= (4000M, 64G, 1T, 512K; a bare number is MiB), else None."""
    for item in tres.split(","):
        name, _, amount = item.partition("=")
        if name == "mem":
            if amount[-1:].upper() in MIB:
                return Fraction(amount[:-1]) * MIB[amount[-1].upper()]
            return Fraction(amount)
    return None


def convert(path: Path, *, period: str, options: dict) -> Conversion:
    month_start, month_end = month_bounds(period)
    rules = {"states": [], "exclude": [], "service_name": ""}
    if options.get("rates"):
        card, rules = tiers_card(Path(options["rates"]))
        gpus_priced = False
    else:
        card, gpus_priced = RateCard.from_database(), True
    memory_priced = gpus_priced and any(r.service == MEM for r in card.rates)
    if options.get("accounts"):
        accounts = accounts_map(Path(options["accounts"]))
    else:
        accounts = stored_accounts(options.get("source"))
    if options.get("states"):
        states = {s.strip().upper() for s in options["states"].split(",") if s.strip()}
    else:
        states = set(rules["states"] or DEFAULT_STATES)
    exclude = set(rules["exclude"])
    per_job = bool(options.get("per_job"))

    # Naive UTC datetimes inside the loop (sacct's texts, read with TZ=UTC): about twice as
    # fast as aware ones; records get their tzinfo when they are made.
    start_n, end_n = month_start.replace(tzinfo=None), month_end.replace(tzinfo=None)
    # Where a rate changes inside the month, per (service, key): parts are cut there.
    cuts_cache: dict[tuple[str, str], list[datetime]] = {}

    def cuts(service: str, key: str) -> list[datetime]:
        found = cuts_cache.get((service, key))
        if found is None:
            unit = UNITS[service]
            found = [
                m.replace(tzinfo=None)
                for m in card.boundaries(service, key, unit, month_start, month_end)
            ]
            cuts_cache[(service, key)] = found
        return found

    # (account, partition, service, key, rate period start) -> unit-seconds
    totals: dict[tuple, int | Fraction] = defaultdict(int)
    jobs: list[UsageRecord] = []
    counts: dict[str, int] = defaultdict(int)
    skipped_states: dict[str, int] = defaultdict(int)
    excluded: dict[str, int] = defaultdict(int)
    accounts_seen: set[str] = set()

    def add(job, account, partition, service, key, count, lo, hi):
        """Usage of `count` CPUs or GPUs over [lo, hi), cut where a rate changes."""
        rate_cuts = cuts(service, key)
        edges = [lo, *(m for m in rate_cuts if lo < m < hi), hi]
        for a, b in zip(edges, edges[1:], strict=False):
            unit_seconds = count * ((b - a) // SECOND)
            if per_job:
                jobs.append(
                    _record(account, partition, service, key, a.replace(tzinfo=UTC),
                            b.replace(tzinfo=UTC), _hours(unit_seconds, service), accounts,
                            job=job, service_name=rules["service_name"])
                )  # fmt: skip
            else:
                part = max([start_n, *(m for m in rate_cuts if m <= a)])
                totals[(account, partition, service, key, part)] += unit_seconds

    parse = datetime.fromisoformat
    with open(path, encoding="utf-8", newline="") as handle:
        header = handle.readline().rstrip("\r\n").split("|")
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ConversionError(
                f"{path.name}: not sacct --parsable2 output with a header: missing "
                f"{', '.join(missing)} (docs/sources.md gives the command)"
            )
        i_job, i_acc, i_part, i_state, i_start, i_end, i_cpus = (header.index(c) for c in REQUIRED)
        i_tres = header.index("AllocTRES") if "AllocTRES" in header else None
        width = len(header)
        read = billed = split = outside = 0
        for number, line in enumerate(handle, start=2):
            fields = line.rstrip("\r\n").split("|")
            if len(fields) != width:
                if not line.strip():
                    continue
                raise ConversionError(
                    f"{path.name} line {number}: {len(fields)} fields, the header has {width}"
                )
            read += 1
            state = fields[i_state]
            if state not in states:
                state = state.split(" ", 1)[0]  # "CANCELLED by 1234"
                if state not in states:
                    skipped_states[state] += 1
                    continue
            start_text, end_text = fields[i_start], fields[i_end]
            if start_text in NOT_A_TIME:  # never started (pending, cancelled while waiting)
                skipped_states[f"{state} (never started)"] += 1
                continue
            if end_text in NOT_A_TIME:
                raise ConversionError(
                    f"{path.name} line {number}: job {fields[i_job]} ({state}) has no End; "
                    "export after the month has ended or leave RUNNING out of --states"
                )
            account = fields[i_acc]
            if account in exclude:
                excluded[account] += 1
                continue
            try:
                start, end = parse(start_text), parse(end_text)
                cpus = int(fields[i_cpus])
            except ValueError:
                raise ConversionError(
                    f"{path.name} line {number}: Start, End or AllocCPUS unreadable: "
                    f"{start_text!r}, {end_text!r}, {fields[i_cpus]!r}"
                ) from None
            # The part inside the month.
            lo = start if start > start_n else start_n
            hi = end if end < end_n else end_n
            if hi <= lo:
                outside += 1
                continue
            if lo is not start or hi is not end:
                split += 1
            partition = fields[i_part]
            billed += 1
            accounts_seen.add(account)
            if cpus:
                if per_job or cuts(CPU, partition):
                    add(fields[i_job], account, partition, CPU, partition, cpus, lo, hi)
                else:  # the common case, kept short: no rate change this month
                    totals[(account, partition, CPU, partition, start_n)] += cpus * (
                        (hi - lo) // SECOND
                    )
            if gpus_priced and i_tres is not None and "gres/gpu" in fields[i_tres]:
                try:
                    gpus = _gpus(fields[i_tres])
                except ValueError:
                    raise ConversionError(
                        f"{path.name} line {number}: AllocTRES has a GPU count that is not a "
                        f"number: {fields[i_tres]!r}"
                    ) from None
                for kind, count in gpus:
                    if count:
                        add(fields[i_job], account, partition, GPU, kind, count, lo, hi)
            if memory_priced and i_tres is not None and "mem=" in fields[i_tres]:
                try:
                    mib = _memory_mib(fields[i_tres])
                except (ValueError, ZeroDivisionError):
                    raise ConversionError(
                        f"{path.name} line {number}: AllocTRES has a memory size that is not "
                        f"a number: {fields[i_tres]!r}"
                    ) from None
                if mib:
                    add(fields[i_job], account, partition, MEM, partition, mib, lo, hi)
    counts.update(
        jobs_read=read, jobs_billed=billed, jobs_split_at_month_end=split,
        jobs_outside_month=outside,
    )  # fmt: skip
    if per_job:
        records = jobs
    else:
        records = []
        for (account, partition, service, key, part), unit_seconds in sorted(totals.items()):
            part_end = min([end_n, *(m for m in cuts(service, key) if m > part)])
            records.append(
                _record(account, partition, service, key, part.replace(tzinfo=UTC),
                        part_end.replace(tzinfo=UTC), _hours(unit_seconds, service), accounts,
                        service_name=rules["service_name"])
            )  # fmt: skip
    priced = price(records, card=card, period_start=month_start, period_end=month_end)
    unknown = sorted(a for a in accounts_seen if not accounts.get(a))
    warnings = []
    if unknown:
        warnings.append(
            f"{len(unknown)} account(s) with no entry in the account map, flagged on import: "
            + ", ".join(unknown[:20])
            + (" …" if len(unknown) > 20 else "")
        )
    notes = dict(counts) | {
        "rows": len(priced.lines),
        "not_billed_by_state": dict(sorted(skipped_states.items())),
        "excluded_accounts": dict(sorted(excluded.items())),
        "unknown_accounts": unknown,
        "states_billed": sorted(states),
        "warnings": warnings,
    }
    return Conversion(
        converter="slurm",
        period=period,
        priced=priced,
        provider="HPC",
        billing_account=options.get("cluster") or "HPC",
        notes=notes,
    )


def _hours(unit_seconds: int | Fraction, service: str) -> Fraction:
    """Unit-seconds as unit-hours of the service (MiB-seconds as GiB-hours), exactly."""
    return Fraction(unit_seconds) / (3600 * PER_UNIT[service])


KINDS = {CPU: "CPU", GPU: "GPU", MEM: "memory"}


def _record(account, partition, service, key, start, end, quantity, accounts, *, job="",
            service_name=""):  # fmt: skip
    unit = UNITS[service]
    kind = f"GPU {key}" if service == GPU else KINDS[service]
    if job:
        resource_id = f"slurm/job/{job}/{service}/{key}"
        name = f"job {job} ({partition}, {kind})"
    else:
        resource_id = f"slurm/{account}/{partition}/{service}/{key}"
        name = f"{account} ({partition}, {kind})"
    return UsageRecord(
        start=start,
        end=end,
        account=account,
        service=service,
        rate_key=key,
        quantity=quantity,
        unit=unit,
        tags=dict(accounts.get(account, {})),
        description=f"Slurm {kind} time on partition {partition}" + (f", job {job}" if job else ""),
        resource_id=resource_id,
        resource_name=name,
        service_name=f"{service_name or 'HPC'} - {KINDS[service]}",
    )


register(
    Converter(
        name="slurm",
        help="Slurm accounting (sacct --parsable2 output) → FOCUS, priced by partition, GPU "
        "type and, where a centre bills it, memory.",
        convert=convert,
        add_arguments=add_arguments,
    )
)

__all__ = ["accounts_map", "convert", "tiers_card"]
