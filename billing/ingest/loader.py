"""Bulk writing of charge rows: COPY on PostgreSQL, executemany on SQLite.

The ORM's bulk_create builds a model instance per row; at a million rows that alone takes longer
than the whole import may. Both paths run on Django's connection, inside the caller's transaction.
"""

from __future__ import annotations

import io
import queue
import re
import threading
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
from django.db import connection
from pyarrow import csv as pa_csv

from ..models import Charge, ReviewDecision
from .fingerprints import MonthCharges

# Charge columns written by the importer, in row-tuple order.
INSERT_COLUMNS = (
    "source_id",
    "period_id",
    "import_file_id",
    "line_number",
    "fingerprint",
    "billing_period_start",
    "billing_period_end",
    "charge_period_start",
    "charge_period_end",
    "billed_cost",
    "list_cost",
    "contracted_cost",
    "effective_cost",
    "billing_currency",
    "charge_category",
    "charge_class",
    "charge_description",
    "service_name",
    "service_category",
    "resource_id",
    "resource_name",
    "region_id",
    "sku_id",
    "sub_account_id",
    "sub_account_name",
    "billing_account_id",
    "billing_account_name",
    "invoice_id",
    "provider_name",
    "consumed_quantity",
    "consumed_unit",
    "pricing_quantity",
    "pricing_unit",
    "tags",
    "extra",
    "pi_id",
    "project_id",
    "fund_org",
    "cost_center",
    "reference_1",
    "reference_2",
    "review_status",
    "flags",
)
TABLE = Charge._meta.db_table


def adapt_datetime(value: datetime):
    """A UTC datetime as the database stores it (Django's own adaptation)."""
    if connection.vendor == "postgresql":
        return value.isoformat()
    return connection.ops.adapt_datetimefield_value(value)


_CSV_OPTIONS = pa_csv.WriteOptions(include_header=False, batch_size=8192)


def _csv_bytes(rows: pa.RecordBatch) -> bytes:
    # COPY's CSV format reads a quoted empty field as '' and an unquoted one as NULL, which is
    # exactly how Arrow writes '' and null. Arrow writes the CSV without holding the GIL.
    buffer = io.BytesIO()
    pa_csv.write_csv(rows, buffer, write_options=_CSV_OPTIONS)
    return buffer.getvalue()


class _CopyStream:
    """PostgreSQL: one COPY into the charge table, kept open across the batches of a file.

    A COPY per batch left the server idle while each next batch was formatted and sent
    (docs/benchmarks.md, session 7). Kept open, the server parses rows while the client formats
    the next ones (RowWriter.submit) and this one sends. The COPY ends at `close()`: before
    anything else uses the connection (RowWriter.drain) and at the end of each file."""

    def __init__(self, raw):
        columns = ", ".join(INSERT_COLUMNS)
        self._cursor = raw.cursor()
        self._context = self._cursor.copy(f"COPY {TABLE} ({columns}) FROM STDIN (FORMAT csv)")
        self._copy = self._context.__enter__()

    def write(self, data: bytes) -> None:
        self._copy.write(data)

    def close(self, error: BaseException | None = None) -> None:
        """End the COPY: the server has every row when this returns (or raises its error).
        With `error`, the COPY is abandoned instead (the transaction fails with it)."""
        try:
            if error is None:
                self._context.__exit__(None, None, None)
            else:
                self._context.__exit__(type(error), error, error.__traceback__)
        finally:
            self._cursor.close()


# The charge table's CHECK constraints on SQLite, and why every row the importer writes meets
# them without SQLite evaluating them row by row (the two JSON_VALID calls alone are about 5 µs
# a row, a fifth of the write). `_check_rows` verifies the cheap ones for each batch, vectorised.
KNOWN_SQLITE_CHECKS = {
    # line numbers count from 2 (rows.py)
    '"line_number" >= 0',
    # flags are a bitmask of Flag (rows.py)
    '"flags" >= 0',
    # Tags are stored only when they parse as a JSON object, strictly (rows.py: _tag_info)
    '(JSON_VALID("tags") OR "tags" IS NULL)',
    # extra is written by rows.py with json's own string encoder
    '(JSON_VALID("extra") OR "extra" IS NULL)',
    # new rows are clean or flagged, and flagged exactly when they have a reason (rows.py)
    "\"review_status\" IN ('clean', 'flagged', 'approved', 'rejected')",
    '(NOT ("flags" > 0 AND "review_status" = \'clean\') '
    'AND NOT ("flags" = 0 AND "review_status" = \'flagged\'))',
}
_CHECK = re.compile(r"CHECK \(", re.IGNORECASE)


def sqlite_checks(raw) -> set[str]:
    """The CHECK expressions in the charge table's definition, as SQLite keeps it."""
    (sql,) = raw.execute("SELECT sql FROM sqlite_master WHERE name = ?", (TABLE,)).fetchone()
    checks = set()
    for match in _CHECK.finditer(sql):
        depth, start = 1, match.end()
        for end in range(start, len(sql)):
            depth += {"(": 1, ")": -1}.get(sql[end], 0)
            if depth == 0:
                checks.add(sql[start:end])
                break
    return checks


def _check_rows(rows: pa.RecordBatch) -> None:
    """The CHECK constraints that aren't guaranteed by construction, for a whole batch."""
    get = rows.schema.get_field_index
    flags = rows.column(get("flags"))
    status = rows.column(get("review_status"))
    line = rows.column(get("line_number"))
    ok = pc.and_(
        pc.equal(pc.not_equal(flags, 0), pc.equal(status, "flagged")),
        pc.or_(pc.equal(status, "flagged"), pc.equal(status, "clean")),
    )
    if not (
        pc.all(ok).as_py()
        and pc.min(flags).as_py() >= 0
        and pc.min(line).as_py() >= 0
        and not flags.null_count + status.null_count + line.null_count
    ):
        raise ValueError("charge rows that break the table's CHECK constraints")


def _sqlite_insert(raw, rows: pa.RecordBatch) -> None:
    """executemany, binding only the columns that vary within the batch.

    Binding costs about as much per parameter as SQLite's own work on it, and a batch often has
    columns with one value for every row (the source, the file, FOCUS columns the file lacks):
    those are written into the statement as literals instead. When the table has exactly the
    CHECK constraints the importer guarantees (KNOWN_SQLITE_CHECKS), SQLite is told not to
    evaluate them for these statements; a constraint added later turns this off by itself.
    """
    skip_checks = sqlite_checks(raw) == KNOWN_SQLITE_CHECKS
    if skip_checks:
        _check_rows(rows)
    placeholders, varying = [], []
    for column in rows.columns:
        literal = _sqlite_literal(column)
        if literal is None:
            placeholders.append("?")
            varying.append(column)
        else:
            placeholders.append(literal)
    sql = f"INSERT INTO {TABLE} ({', '.join(INSERT_COLUMNS)}) VALUES ({', '.join(placeholders)})"
    values = (
        zip(*(column.to_pylist() for column in varying), strict=True)
        if varying
        else [()] * rows.num_rows
    )
    if not skip_checks:
        raw.executemany(sql, values)
        return
    raw.execute("PRAGMA ignore_check_constraints = ON")
    try:
        raw.executemany(sql, values)
    finally:
        raw.execute("PRAGMA ignore_check_constraints = OFF")


def _sqlite_literal(column: pa.Array) -> str | None:
    """SQL literal of a column's only value, or None when the values differ (or can't be)."""
    if column.null_count == len(column):
        return "NULL"
    if column.null_count or pc.count_distinct(column).as_py() != 1:
        return None
    value = column[0].as_py()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and "\x00" not in value:
        return "'" + value.replace("'", "''") + "'"
    return None


class RowWriter:
    """Writes batches of rows on a background thread while the next batch is being parsed.

    The database drivers release the GIL while the database works, so parsing (Python) and
    writing (SQLite or PostgreSQL) overlap on two cores. The thread uses the caller's own
    connection, so the rows are inside the caller's transaction. Call `drain()` before the caller
    touches the database itself, and `close()` at the end: both re-raise a write error.
    """

    def __init__(self):
        connection.ensure_connection()
        self._raw = connection.connection
        self._vendor = connection.vendor
        self._set_aside = _set_aside_insert_guard(self._raw) if self._vendor == "sqlite" else ""
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._copy: _CopyStream | None = None
        self._thread = threading.Thread(target=self._run, name="charge-writer", daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            rows = self._queue.get()
            try:
                if rows is None or rows is _END_COPY:
                    self._end_copy()
                    if rows is None:
                        return
                elif self._error is None:
                    self._write(rows)
            except BaseException as exc:  # reported to the caller by drain()/close()
                self._error = exc
                self._end_copy()
            finally:
                self._queue.task_done()

    def _write(self, rows: pa.RecordBatch | bytes) -> None:
        if self._vendor != "postgresql":
            _sqlite_insert(self._raw, rows)
            return
        if self._copy is None:
            self._copy = _CopyStream(self._raw)
        self._copy.write(rows)

    def _end_copy(self) -> None:
        copy, self._copy = self._copy, None
        if copy is None:
            return
        try:
            copy.close(self._error)
        except BaseException as exc:
            if self._error is None:
                self._error = exc

    def _check(self):
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, rows: pa.RecordBatch) -> None:
        """Queue a batch of rows, columns in INSERT_COLUMNS order.

        PostgreSQL: the rows are formatted here, as COPY's CSV, and the thread only sends them, so
        the server always has the next rows while it works on these."""
        self._check()
        if rows.num_rows:
            self._queue.put(_csv_bytes(rows) if self._vendor == "postgresql" else rows)

    def drain(self) -> None:
        """Wait until every row submitted is in the database (PostgreSQL: the COPY is ended,
        so the connection is free for the caller)."""
        self._queue.put(_END_COPY)
        self._queue.join()
        self._check()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._set_aside:
            _restore_insert_guard(self._raw, self._set_aside)
            self._set_aside = ""
        self._check()


_END_COPY = object()  # RowWriter's queue: end the COPY in progress (PostgreSQL)


# SQLite: the charge table's INSERT guard (billing/dbguards.py) is one primary-key look-up a row,
# but a table with a row trigger makes SQLite keep a statement journal for every INSERT, which
# cost the import about half again its time (docs/benchmarks.md). The importer checks the very
# same rule itself: it holds SQLite's one writer lock from the start of its transaction
# (IMMEDIATE) and reads each period's status under it (pipeline.py). So, inside that transaction
# only, it drops the trigger and re-creates it before commit. SQLite's DDL is transactional: no
# other connection ever sees the table without its guard, and a rollback (a refusal, a dry run, a
# crash) puts the trigger back by itself. Every other writer meets the trigger.
INSERT_GUARD = "oc_guard_charge_insert"


def _set_aside_insert_guard(raw) -> str:
    if not raw.in_transaction:  # DDL outside a transaction would commit at once: keep the guard
        return ""
    row = raw.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?", (INSERT_GUARD,)
    ).fetchone()
    if row is None:
        return ""
    raw.execute(f"DROP TRIGGER {INSERT_GUARD}")
    return row[0]


def _restore_insert_guard(raw, sql: str) -> None:
    exists = raw.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?", (INSERT_GUARD,)
    ).fetchone()
    if exists is None:
        raw.execute(sql)


def delete_charges(ids: list[int]) -> None:
    """Delete charges by id, in chunks that stay under every database's parameter limit.

    A replaced charge leaves the review history: its links to review decisions go with it (the
    decisions stay, with the count and amount they decided)."""
    links = connection.ops.quote_name(ReviewDecision.charges.through._meta.db_table)
    with connection.cursor() as cursor:
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(f"DELETE FROM {links} WHERE charge_id IN ({marks})", chunk)
            cursor.execute(f"DELETE FROM {TABLE} WHERE id IN ({marks})", chunk)


_EXISTING_CHUNK = 1 << 22  # bytes of COPY text (PostgreSQL) parsed at a time: ~90,000 charges
_EXISTING_FETCH = 100_000  # rows fetched at a time (SQLite)


def month_charges(source_id: int, period_id: int) -> MonthCharges:
    """A source's charges in a period by fingerprint, with their ids and whether flagged.

    Read in chunks, each turned at once into fixed-width arrays (ingest/fingerprints.py): a
    month of ten million charges takes ~260 MB here, not a Python object per charge. On
    PostgreSQL the rows come by COPY, in the table's own order: the only index that serves this
    is the unique (period, source, fingerprint) one, which walked in fingerprint order visits
    the table at random (about a third slower at a million rows)."""
    sql = (
        f"SELECT fingerprint, id, CASE WHEN review_status = 'flagged' THEN 1 ELSE 0 END "
        f"FROM {TABLE} WHERE source_id = %s AND period_id = %s"
    )
    chunks = MonthCharges.Chunks()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_indexscan = off")
            query = sql % (int(source_id), int(period_id))  # COPY takes no parameters
            pending: list[bytes] = []
            size = 0
            with cursor.cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT csv)") as copy:
                for data in copy:
                    pending.append(bytes(data))
                    size += len(data)
                    if size >= _EXISTING_CHUNK:
                        chunks.add(*_parse_existing(b"".join(pending)))
                        pending, size = [], 0
            if pending:
                chunks.add(*_parse_existing(b"".join(pending)))
            cursor.execute("RESET enable_indexscan")
        else:
            cursor.execute(sql, [source_id, period_id])
            while rows := cursor.fetchmany(_EXISTING_FETCH):
                fps, ids, flagged = zip(*rows, strict=True)
                chunks.add(pa.array(fps, pa.string()), pa.array(ids, pa.int64()), pa.array(flagged))
    return chunks.done()


def _parse_existing(text: bytes) -> tuple[pa.Array, pa.Array, pa.Array]:
    table = pa_csv.read_csv(
        io.BytesIO(text),
        read_options=pa_csv.ReadOptions(column_names=["fp", "id", "flagged"]),
        convert_options=pa_csv.ConvertOptions(
            column_types={"fp": pa.string(), "id": pa.int64(), "flagged": pa.int8()}
        ),
    )
    return tuple(table.column(name).combine_chunks() for name in ("fp", "id", "flagged"))
