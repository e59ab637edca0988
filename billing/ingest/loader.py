"""Bulk writing of charge rows: COPY on PostgreSQL, executemany on SQLite.

The ORM's bulk_create builds a model instance per row; at a million rows that alone takes longer
than the whole import may. Both paths run on Django's connection, inside the caller's transaction.
"""

from __future__ import annotations

import queue
import threading
from datetime import datetime

from django.db import connection

from ..models import Charge, ReviewDecision

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


def _insert(raw, vendor: str, rows: list[tuple]) -> None:
    columns = ", ".join(INSERT_COLUMNS)
    if vendor == "postgresql":
        with raw.cursor() as cursor:
            with cursor.copy(f"COPY {TABLE} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
    else:
        placeholders = ", ".join("?" * len(INSERT_COLUMNS))
        raw.executemany(f"INSERT INTO {TABLE} ({columns}) VALUES ({placeholders})", rows)


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
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="charge-writer", daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            rows = self._queue.get()
            try:
                if rows is None:
                    return
                if self._error is None:
                    _insert(self._raw, self._vendor, rows)
            except BaseException as exc:  # reported to the caller by drain()/close()
                self._error = exc
            finally:
                self._queue.task_done()

    def _check(self):
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, rows: list[tuple]) -> None:
        self._check()
        if rows:
            self._queue.put(rows)

    def drain(self) -> None:
        self._queue.join()
        self._check()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._check()


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


def existing_fingerprints(source_id: int, period_id: int) -> dict[str, tuple[int, str]]:
    """fingerprint -> (charge id, review status) for a source's charges in a period."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT fingerprint, id, review_status FROM {TABLE} "
            "WHERE source_id = %s AND period_id = %s",
            [source_id, period_id],
        )
        return {fp: (pk, status) for fp, pk, status in cursor.fetchall()}
