"""The import service: FOCUS files in, charges and a receipt out, all or nothing.

Invariants:
- One transaction: a refusal, an error or a dry run leaves the database exactly as it was.
- Every row of every file becomes a charge (flagged when it can't be billed as it is), or the
  whole import is refused with the file, line and column of each problem.
- Replacement (the default) makes a source's charges for each month the files contain equal to
  the files' rows: rows that come back identical (same fingerprint) are kept with their review
  decisions, rows no longer delivered are removed, new rows are added. The same files twice
  change nothing and report `unchanged`. `append` adds the files' rows instead; a file already
  appended for the source (same content hash, its charges still present) is skipped; the
  content of a gzip-compressed file is what it decompresses to (`content_sha256`).
- With a requested month (`-p`), the files are that month's delivery: every row is billed in
  it, rows that name another month are flagged `other_period` for review (a late credit for a
  closed or finalized month lands here, never there), and only that month of the source is
  replaced. Nothing in any other month is touched.
- Closed and finalized periods refuse imports, and never take one: every month the import writes
  is locked FOR SHARE (PostgreSQL) when first touched and its status read under that lock, so a
  close or finalize waits for the import's commit, and an import that waited for a close is
  refused. On SQLite the import's transaction is IMMEDIATE: it holds the one writer lock from its
  start, so the same holds.
- Imports of one source run one at a time (a transaction-scoped advisory lock on the source on
  PostgreSQL, the writer lock on SQLite), whichever way the source was created; the database's
  unique (period, source, fingerprint) constraint stands behind it, so no path double-bills.
- The receipt's totals are exact sums of the files' own text; its `changes` are per month.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
from django.db import OperationalError, connection, transaction

from accounts.services import actor_name, audit_record

from ..config import BillingConfig, load_config
from ..locking import hold_referenced
from ..models import (
    PERIOD_RE,
    PI,
    AccountMapping,
    BillingPeriod,
    Charge,
    Flag,
    Import,
    ImportFile,
    Project,
    Source,
)
from ..money import ZERO, ExactSum, exact_sum, money_text
from ..services.figures import figures_changed
from . import loader
from .columns import map_headers
from .errors import FileRefused, ImportRefused
from .fingerprints import MonthCharges, Occurrences, hex_array, keys_from_digests
from .reader import RereadForLines, file_format, read_batches, read_headers
from .rows import RowBuilder

SOURCE_LOCK_CLASS = 0x0CB2  # pg_advisory_xact_lock(class, source id) while an import writes

# Test hook: called inside the import's transaction just before it commits (tests make an import
# wait there to interleave other work with it). None in production.
before_commit_hook: Callable[[], None] | None = None


@dataclass
class ImportResult:
    status: str  # imported, replaced, unchanged or dry-run
    source: str
    periods: list[str]
    rows_read: int
    rows_imported: int
    rows_flagged: int
    rows_added: int
    rows_removed: int
    rows_unchanged: int
    totals: dict[str, dict[str, str]]
    billed_change: dict[str, str]
    files: list[dict]
    # Per month: rows added/removed/unchanged and the billed change per currency, never netted.
    changes: dict[str, dict] = field(default_factory=dict)
    import_id: int | None = None
    would_be: str = ""  # for a dry run: the status the real import would have
    skipped_files: list[str] = field(default_factory=list)
    # Flagged rows per reason, as the delivered content gives them (a row counts under each).
    flagged_by_reason: dict[str, int] = field(default_factory=dict)
    # How a usage converter made the rows (Import.conversion); empty for a FOCUS file.
    conversion: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _File:
    path: Path
    name: str
    sha256: str
    size: int
    headers: list[str]
    fields: dict[str, int]
    extra: dict[str, int]
    # SHA-256 of the bytes as delivered: differs from `sha256` (the content's) when compressed
    raw_sha256: str = ""
    rows: int = 0
    record: ImportFile | None = None


@dataclass
class _PeriodState:
    """One month of the source, as this import meets it. Nothing here grows with the rows but
    the fingerprints, 16 bytes each (ingest/fingerprints.py)."""

    period: BillingPeriod
    # The source's charges already in the month: matched by fingerprint (replace), or their
    # fingerprints skipped when numbering (append keeps earlier parts').
    charges: MonthCharges
    append: bool
    occurrences: Occurrences = field(default_factory=Occurrences)
    # False for another month's rows under `-p`: they are matched, never replaced.
    replace: bool = True
    added: int = 0
    unchanged: int = 0
    added_billed: dict[str, Decimal] = field(default_factory=dict)  # running exact sums


def _add(sums: dict[str, Decimal], currency: str, value: Decimal) -> None:
    """A running exact sum per currency (money.exact_sum's context: Inexact raises)."""
    sums[currency] = exact_sum([sums.get(currency, ZERO), value])


@dataclass
class _Totals:
    """The receipt's totals, as running exact sums per currency."""

    billed: dict[str, Decimal] = field(default_factory=dict)
    listed: dict[str, Decimal] = field(default_factory=dict)
    flagged: dict[str, Decimal] = field(default_factory=dict)
    added: dict[str, Decimal] = field(default_factory=dict)  # billed of new rows

    def result(self) -> dict[str, dict[str, str]]:
        out = {}
        for currency in sorted(self.billed):
            out[currency] = {
                "billed": money_text(self.billed[currency]),
                "list": money_text(self.listed.get(currency, ZERO)),
                "flagged_billed": money_text(self.flagged.get(currency, ZERO)),
            }
        return out


def sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class _Counted:
    """A binary file that hashes and counts the bytes read through it (the file as delivered)."""

    def __init__(self, handle):
        self.handle, self.digest, self.size = handle, hashlib.sha256(), 0

    def read(self, n=-1):
        data = self.handle.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data


def content_sha256(path: Path) -> tuple[str, str, int]:
    """(SHA-256 of the content, SHA-256 of the bytes as delivered, size in bytes).

    The content of a gzip-compressed file is what it decompresses to, so the same export
    delivered as .csv and as .csv.gz (or under another name) has one content hash: `--append`
    recognises it. Other files are their own content. One pass over the file either way."""
    if file_format(path) != "csv.gz":
        digest, size = sha256_file(path)
        return digest, digest, size
    content = hashlib.sha256()
    with open(path, "rb") as handle:
        raw = _Counted(handle)
        with gzip.GzipFile(fileobj=raw, mode="rb") as inflated:
            while chunk := inflated.read(1 << 20):
                content.update(chunk)
    return content.hexdigest(), raw.digest.hexdigest(), raw.size


def source_for_import(name: str, config: BillingConfig) -> Source:
    """The Source named `name`, kept in step with the configuration's entry for it."""
    configured = config.source(name)
    if configured is not None:
        source, _ = Source.objects.update_or_create(
            name=name,
            defaults={
                "display_name": configured.display_name or name,
                "filename_pattern": configured.pattern,
                "credit_fund_org": configured.credit_fund_org,
                "account_code": configured.account_code,
            },
        )
        return source
    source = Source.objects.filter(name=name).first()
    if source is None:
        known = sorted(
            {s.name for s in config.sources} | set(Source.objects.values_list("name", flat=True))
        )
        hint = f"known sources: {', '.join(known)}" if known else "no sources are configured yet"
        raise ImportRefused(
            f"unknown source {name!r} ({hint}); add it to the configuration's `sources` "
            "or in the admin"
        )
    return source


def _account_map(source: Source) -> dict[str, dict[str, str]]:
    """account id -> attribution; a source's own entries win over any-source entries."""
    mapping: dict[str, dict[str, str]] = {}
    rows = AccountMapping.objects.filter(source__isnull=True).values()
    own = AccountMapping.objects.filter(source=source).values()
    for row in list(rows) + list(own):
        mapping[row["account_id"]] = {
            "pi_email": row["pi_email"],
            "project_id": row["project_id"],
            "fund_org": row["fund_org"],
            "cost_center": row["cost_center"],
            "pi_name": row["pi_name"],
        }
    return mapping


def fill_pi_names(names: dict[int, str]) -> dict[str, str]:
    """Give each PI that has no name yet the name its rows carried (tag `pi_name` or the account
    map); a name set in the admin or by the PI in the portal is never overwritten. Returns
    {email: name} of the PIs named, for the import's audit event (one UPDATE per PI named, so no
    per-PI audit event: the import's records them)."""
    named: dict[str, str] = {}
    if not names:
        return named
    empty = dict(PI.objects.filter(pk__in=names, name="").values_list("pk", "email"))
    for pk, email in sorted(empty.items()):
        if PI.objects.filter(pk=pk, name="").update(name=names[pk]):
            named[email] = names[pk]
    return named


def _occurrence(content: bytes, n: int) -> bytes:
    """The fingerprint (as its 16 bytes) of the n-th repeat of a content hash in a month."""
    if n == 0:
        return content
    return hashlib.blake2b(f"{content.hex()}#{n}".encode(), digest_size=16).digest()


def import_files(
    *,
    paths: Sequence[str | Path],
    source: str,
    period: str | None = None,
    append: bool = False,
    dry_run: bool = False,
    acting_user=None,
    actor: str = "",
    config: BillingConfig | None = None,
    progress: Callable[[int], None] | None = None,
    display_names: Sequence[str] | None = None,
    conversion: dict | None = None,
) -> ImportResult:
    """Import FOCUS files for one source. Raises ImportRefused with the reasons.

    `conversion`: how a usage converter made the files (billing/usage), kept on the Import.
    """
    config = config or load_config()
    if period is not None and not PERIOD_RE.match(period):
        raise ImportRefused(f"period must be YYYY-MM, got {period!r}")
    if not paths:
        raise ImportRefused("no files to import")

    files: list[_File] = []
    for index, raw_path in enumerate(paths):
        path = Path(raw_path)
        name = display_names[index] if display_names else str(raw_path)
        if not path.is_file():
            raise ImportRefused(f"{name}: no such file")
        try:
            headers = read_headers(path)
        except FileRefused as exc:
            raise ImportRefused(f"{name}: {exc}") from None
        fields, extra, problems = map_headers(headers)
        if problems:
            raise ImportRefused(f"{name}: not a FOCUS file we can import", problems)
        try:
            digest, raw_digest, size = content_sha256(path)
        except (OSError, EOFError, zlib.error) as exc:
            raise ImportRefused(f"{name}: cannot read the file ({exc})") from None
        files.append(_File(path, name, digest, size, headers, fields, extra, raw_digest))

    actor = actor or actor_name(acting_user)
    try:
        return _import_atomic(
            files=files,
            source=source,
            period=period,
            append=append,
            dry_run=dry_run,
            acting_user=acting_user,
            actor=actor,
            config=config,
            progress=progress,
            conversion=conversion or {},
        )
    except OperationalError as exc:
        if connection.vendor != "sqlite" or "locked" not in str(exc):
            raise
        # SQLite's busy timeout ran out: another import or a period change held the writer lock.
        raise ImportRefused(
            "the database is busy with another import or a period change; nothing was "
            "imported. Run the import again."
        ) from None


def _import_atomic(
    *, files, source, period, append, dry_run, acting_user, actor, config, progress, conversion
):
    from ..services.patterns import with_review_patterns  # services import this module

    with transaction.atomic():
        # The review patterns are read (and the file's new ones seeded) in the import's own
        # transaction: a busy database refuses both together, as one.
        config = with_review_patterns(config, seed=not dry_run)
        result = _import(
            conversion=conversion,
            files=files,
            source_name=source,
            period=period,
            append=append,
            dry_run=dry_run,
            acting_user=acting_user,
            actor=actor,
            config=config,
            progress=progress,
        )
        if dry_run:
            transaction.set_rollback(True)
        elif result.status != Import.Outcome.UNCHANGED:
            _refresh_statistics(result)
            figures_changed(
                BillingPeriod.objects.filter(key__in=result.periods).values_list("pk", flat=True),
                warm_in_process=True,
            )
        if before_commit_hook is not None:
            before_commit_hook()
    return result


# PostgreSQL plans from table statistics that autovacuum refreshes only some time after a big
# change: until then a month imported into an empty table looks like a few thousand rows, and
# the admin's and portal's queries scan it (1.1 s instead of 0.06 s for the charge list at a
# million rows; docs/benchmarks.md). An import that changed this many rows refreshes them itself,
# before commit, so the figures computed after commit are planned right too.
ANALYZE_AFTER_ROWS = 20_000


def _refresh_statistics(result: ImportResult) -> None:
    if connection.vendor != "postgresql":
        return  # SQLite plans without statistics unless ANALYZE was ever run; none is kept
    if result.rows_added + result.rows_removed < ANALYZE_AFTER_ROWS:
        return
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Charge._meta.db_table}")


def _lock_source(source: Source) -> None:
    """Imports of one source, one at a time, until commit (SQLite: the writer lock already is)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [SOURCE_LOCK_CLASS, source.pk])


def _lock_open_period(period: BillingPeriod) -> BillingPeriod:
    """Hold the period row FOR SHARE until commit and re-read its status under the lock.

    A close or finalize (FOR UPDATE) waits for this import to commit; if one committed first,
    the status read here is the new one and the import is refused naming the month. Shared, so
    imports of different sources into one month don't wait for each other.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT status FROM {BillingPeriod._meta.db_table} WHERE id = %s FOR SHARE",
                [period.pk],
            )
            (period.status,) = cursor.fetchone()
    else:
        period.refresh_from_db(fields=["status"])
    if not period.is_open():
        raise ImportRefused(
            f"the files contain rows for {period.key}, which is {period.status}: "
            "nothing was imported"
        )
    return period


def _import(
    *, files, source_name, period, append, dry_run, acting_user, actor, config, progress, conversion
):
    source = source_for_import(source_name, config)
    _lock_source(source)
    if period is not None:
        requested = BillingPeriod.objects.filter(key=period).first()
        if requested is not None:
            try:
                _lock_open_period(requested)
            except ImportRefused:
                raise ImportRefused(
                    f"period {period} is {requested.status}: it takes no imports"
                ) from None

    skipped: list[str] = []
    if append:
        for item in list(files):
            # Files recorded before content hashes kept a compressed file's byte hash: a byte-for-
            # byte copy of one is recognised by that.
            if Charge.objects.filter(
                import_file__sha256__in={item.sha256, item.raw_sha256},
                import_file__import_run__source=source,
            ).exists():
                skipped.append(item.name)
                files.remove(item)

    record = Import.objects.create(
        source=source,
        outcome=Import.Outcome.IMPORTED,
        mode=Import.Mode.APPEND if append else Import.Mode.REPLACE,
        requested_period=period or "",
        acting_user=acting_user if getattr(acting_user, "pk", None) else None,
        actor=actor,
        conversion=conversion,
    )
    for item in files:
        item.record = ImportFile.objects.create(
            import_run=record,
            name=item.name[-500:],
            sha256=item.sha256,
            size_bytes=item.size,
            rows=0,
        )

    writer = loader.RowWriter()
    try:
        return _stream(
            record=record,
            files=files,
            skipped=skipped,
            source=source,
            period=period,
            append=append,
            dry_run=dry_run,
            acting_user=acting_user,
            actor=actor,
            config=config,
            progress=progress,
            writer=writer,
        )
    finally:
        writer.close()


def _stream(
    *,
    record,
    files,
    skipped,
    source,
    period,
    append,
    dry_run,
    acting_user,
    actor,
    config,
    progress,
    writer,
):
    builder = RowBuilder(
        before_write=writer.drain,
        config=config,
        source_id=source.pk,
        requested_period=period,
        adapt_datetime=loader.adapt_datetime,
        account_map=_account_map(source),
    )
    states: dict[str, _PeriodState] = {}
    totals = _Totals()
    counts = {"read": 0, "flagged": 0, "added": 0, "unchanged": 0}

    def state_for(key: str) -> _PeriodState:
        state = states.get(key)
        if state is None:
            writer.drain()
            billing_period, _ = BillingPeriod.objects.get_or_create(key=key)
            _lock_open_period(billing_period)
            state = _PeriodState(
                period=billing_period,
                charges=loader.month_charges(source.pk, billing_period.pk),
                append=append,
                replace=period is None or key == period,
            )
            states[key] = state
        return state

    def read(item, parse_problems, use_threads):
        for batch in read_batches(item.path, item.headers, parse_problems, use_threads):
            built = builder.build(batch, file_name=item.name, fields=item.fields, extra=item.extra)
            item.rows += built.count
            counts["read"] += built.count
            if builder.problem_count or parse_problems or not use_threads:
                continue  # keep reading to list problems; nothing will be kept
            _place_batch(built, item, source, states, state_for, totals, counts, writer)
            if progress:
                progress(built.count)

    for item in files:
        parse_problems: list[str] = []
        mark = builder.problems_mark()
        try:
            try:
                read(item, parse_problems, use_threads=True)
            except RereadForLines:
                # A malformed row refuses the import. Read the file again, single-threaded, so
                # that it and every problem after it are reported on their own lines.
                builder.problems_reset(mark)
                parse_problems.clear()
                counts["read"] -= item.rows
                item.rows = 0
                read(item, parse_problems, use_threads=False)
                if not parse_problems:
                    # Not expected (both readers reject the same rows), but the first pass
                    # skipped rows: without a problem listed, the import would lose them.
                    raise ImportRefused(
                        f"{item.name}: malformed rows; nothing was imported"
                    ) from None
        except FileRefused as exc:
            raise ImportRefused(f"{item.name}: {exc}") from None
        for problem in parse_problems:
            builder.problem(item.name, problem)
        if item.rows == 0 and not builder.problem_count:
            raise ImportRefused(f"{item.name}: the file has a header but no rows")
        writer.drain()
        item.record.rows = item.rows
        item.record.save(update_fields=["rows"])

    if builder.problem_count:
        raise ImportRefused(
            f"refused: {builder.problem_count} value(s) can't be imported; nothing was written",
            builder.problems,
            builder.problem_count,
        )
    gone = [
        f"{len(missing)} {label}(s) (ids {', '.join(map(str, sorted(missing)[:10]))})"
        for label, model, used in (
            ("PI", PI, builder.used_pis),
            ("project", Project, builder.used_projects),
        )
        if (missing := hold_referenced(model, used))
    ]
    if gone:
        raise ImportRefused(
            f"{' and '.join(gone)} the rows are attributed to were deleted while this import "
            "ran; nothing was imported. Run the import again."
        )

    removed = 0
    had_rows = False
    # How the months' billed totals change: what this import added less what it removed.
    removed_billed: dict[str, Decimal] = {}
    changes: dict[str, dict] = {}
    for key in sorted(states):
        state = states[key]
        had_rows = had_rows or len(state.charges) > 0
        gone = state.charges.not_seen_ids().tolist() if state.replace and not state.append else []
        gone_billed = _billed_by_currency(gone)
        for currency, total in gone_billed.items():
            removed_billed[currency] = removed_billed.get(currency, ZERO) + total
        loader.delete_charges(gone)
        removed += len(gone)
        added_here = state.added_billed
        changes[key] = {
            "rows_added": state.added,
            "rows_removed": len(gone),
            "rows_unchanged": state.unchanged,
            "billed_change": {
                cur: money_text(added_here.get(cur, ZERO) - gone_billed.get(cur, ZERO))
                for cur in sorted(set(added_here) | set(gone_billed))
            },
        }
    added_billed = totals.added
    change = {
        cur: money_text(added_billed.get(cur, ZERO) - removed_billed.get(cur, ZERO))
        for cur in sorted(set(added_billed) | set(removed_billed))
    }

    if not files:
        outcome = Import.Outcome.UNCHANGED
    elif append:
        outcome = Import.Outcome.IMPORTED
    elif counts["added"] == 0 and removed == 0 and had_rows:
        outcome = Import.Outcome.UNCHANGED
    elif had_rows:
        outcome = Import.Outcome.REPLACED
    else:
        outcome = Import.Outcome.IMPORTED

    named = fill_pi_names(builder.pi_names)

    record.outcome = outcome
    record.periods = sorted(states)
    record.rows_read = counts["read"]
    record.rows_imported = counts["added"] + counts["unchanged"]
    record.rows_flagged = counts["flagged"]
    record.rows_added = counts["added"]
    record.rows_removed = removed
    record.rows_unchanged = counts["unchanged"]
    record.totals = totals.result()
    record.billed_change = change
    record.changes = changes
    record.save()
    audit_record(
        action="import",
        acting_user=acting_user,
        actor=actor,
        obj=record,
        after={"outcome": outcome, "periods": record.periods},
        details={
            "files": [{"name": f.name, "sha256": f.sha256, "rows": f.rows} for f in files],
            "skipped_files": skipped,
            "rows_read": record.rows_read,
            "rows_added": record.rows_added,
            "rows_removed": removed,
            "rows_flagged": record.rows_flagged,
            "totals": record.totals,
            "billed_change": change,
            "changes": changes,
            "pi_names_filled": named,
            "dry_run": dry_run,
        },
    )
    return ImportResult(
        status="dry-run" if dry_run else outcome,
        would_be=outcome if dry_run else "",
        source=source.name,
        periods=record.periods,
        rows_read=record.rows_read,
        rows_imported=record.rows_imported,
        rows_flagged=record.rows_flagged,
        rows_added=record.rows_added,
        rows_removed=removed,
        rows_unchanged=record.rows_unchanged,
        totals=record.totals,
        billed_change=change,
        changes=changes,
        files=[{"name": f.name, "sha256": f.sha256, "rows": f.rows} for f in files],
        import_id=None if dry_run else record.pk,
        skipped_files=skipped,
        flagged_by_reason=dict(sorted(counts.get("reasons", {}).items())),
        conversion=record.conversion,
    )


def _place_batch(built, item, source, states, state_for, totals, counts, writer):
    """Fingerprint each row, keep the ones identical to a charge, total, and write the others.

    The fingerprint of a row is its content hash, and for the n-th repeat of identical content
    in a month (n > 0) a hash of the content hash and n; append mode skips numbers earlier parts
    took. Matching and numbering are vectorised over the batch (ingest/fingerprints.py); only
    rows whose content repeats take a Python step each.
    """
    n = built.count
    digests = np.frombuffer(built.content_hashes, dtype=np.uint8).reshape(n, 16).copy()
    keep = np.zeros(n, dtype=bool)
    kept_flagged = np.zeros(n, dtype=bool)
    period_ids = np.zeros(len(built.period_keys), dtype=np.int64)
    placed: list[tuple[_PeriodState, np.ndarray | None]] = []
    for code, key in enumerate(built.period_keys):
        rows = None if len(built.period_keys) == 1 else np.flatnonzero(built.period_codes == code)
        if rows is not None and not len(rows):
            continue
        state = state_for(key)
        period_ids[code] = state.period.pk
        placed.append((state, None if rows is None else built.period_codes == code))
        fingerprints = _fingerprints(state, digests if rows is None else digests[rows])
        if rows is None:
            digests = fingerprints
        else:
            digests[rows] = fingerprints
        if state.append or not len(state.charges):
            continue
        found = state.charges.find(*keys_from_digests(fingerprints))
        hit = found >= 0
        state.charges.seen[found[hit]] = True
        matched = np.flatnonzero(hit) if rows is None else rows[hit]
        keep[matched] = True
        kept_flagged[matched] = state.charges.flagged[found[hit]]

    # What each month gains, apart: the receipt never nets one month against another.
    currency_rows = [
        (currency, None if len(built.currencies) == 1 else built.currency_codes == code)
        for code, currency in enumerate(built.currencies)
    ]
    for state, in_period in placed:
        new_rows = ~keep if in_period is None else in_period & ~keep
        added_here = int(new_rows.sum())
        state.added += added_here
        state.unchanged += (n if in_period is None else int(in_period.sum())) - added_here
        if not added_here:
            continue
        for currency, in_currency in currency_rows:
            rows = new_rows if in_currency is None else new_rows & in_currency
            if rows.any():
                _add(state.added_billed, currency, built.billed.sum(rows))

    # A kept row keeps its review status; a new row is flagged when it has a reason.
    flagged = np.where(keep, kept_flagged, built.flags != 0)
    counts["flagged"] += int(flagged.sum())
    reasons = counts.setdefault("reasons", {})
    for flag in Flag:
        hits = int((((built.flags & int(flag)) != 0) & flagged).sum())
        if hits:
            reasons[flag.code] = reasons.get(flag.code, 0) + hits
    for code, currency in enumerate(built.currencies):
        rows = (
            np.ones(n, dtype=bool) if len(built.currencies) == 1 else built.currency_codes == code
        )
        if not rows.any():
            continue
        _add(totals.billed, currency, built.billed.sum(rows))
        _add(totals.listed, currency, built.listed.sum(rows))
        if (rows & ~keep).any():
            _add(totals.added, currency, built.billed.sum(rows & ~keep))
        if (rows & flagged).any():
            _add(totals.flagged, currency, built.billed.sum(rows & flagged))

    columns = dict(built.columns)
    columns["source_id"] = pa.repeat(pa.scalar(source.pk, pa.int64()), n)
    columns["period_id"] = pa.array(period_ids[built.period_codes])
    columns["import_file_id"] = pa.repeat(pa.scalar(item.record.pk, pa.int64()), n)
    columns["fingerprint"] = hex_array(digests)
    rows = pa.RecordBatch.from_arrays(
        [columns[name] for name in loader.INSERT_COLUMNS], names=list(loader.INSERT_COLUMNS)
    )
    added = n - int(keep.sum())
    if added < n:
        rows = rows.filter(pa.array(~keep))
    if added:
        writer.submit(rows)
    counts["added"] += added
    counts["unchanged"] += n - added


def _fingerprints(state: _PeriodState, content: np.ndarray) -> np.ndarray:
    """The fingerprints ((m, 16) bytes) of rows of one month with these content hashes.

    Most rows' content is new to the month: their fingerprint is their content hash. The rest
    (content met before in this import or in this batch, or, in append mode, a fingerprint an
    earlier part took) are numbered one by one, in row order."""
    hi, lo = keys_from_digests(content)
    prior = state.occurrences.numbered(hi, lo)
    order = np.lexsort((lo, hi))  # stable: among equal keys, row order
    same = (hi[order][1:] == hi[order][:-1]) & (lo[order][1:] == lo[order][:-1])
    first = np.ones(len(hi), dtype=bool)
    first[order[1:][same]] = False
    repeated = ~first
    repeated[order[:-1][same]] = True  # the first of a run of equal keys too
    slow = repeated | (prior > 0)
    if state.append and len(state.charges):
        slow |= state.charges.find(hi, lo) >= 0
    numbered: dict[tuple[int, int], int] = {}
    fingerprints = content
    if slow.any():
        fingerprints = content.copy()
        for row in np.flatnonzero(slow).tolist():
            key = (int(hi[row]), int(lo[row]))
            occurrence = numbered.get(key, int(prior[row]))
            base = content[row].tobytes()
            fingerprint = _occurrence(base, occurrence)
            while state.append and state.charges.holds(_key(fingerprint)):
                occurrence += 1
                fingerprint = _occurrence(base, occurrence)
            numbered[key] = occurrence + 1
            fingerprints[row] = np.frombuffer(fingerprint, dtype=np.uint8)
    state.occurrences.record(hi, lo, first & (prior == 0), numbered)
    return fingerprints


def _key(digest: bytes) -> tuple[int, int]:
    hi, lo = keys_from_digests(digest)
    return int(hi[0]), int(lo[0])


def _billed_by_currency(charge_ids: list[int]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for start in range(0, len(charge_ids), 5000):
        rows = (
            Charge.objects.filter(id__in=charge_ids[start : start + 5000])
            .values("billing_currency")
            .annotate(total=ExactSum("billed_cost"))
            .order_by()
        )
        for row in rows:
            currency = row["billing_currency"]
            totals[currency] = totals.get(currency, ZERO) + row["total"]
    return totals
