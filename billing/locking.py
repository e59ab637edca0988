"""Keeping the rows a charge points at for as long as the transaction that points at them.

Charge.pi and Charge.project have no database-level foreign key (see the model). A writer that
sets them calls `hold_referenced` before commit: on PostgreSQL it takes the same FOR KEY SHARE
lock the foreign key's trigger would have taken per row, once per referenced row, so nobody can
delete a PI or project until the writing transaction ends. On SQLite the writing transaction
already excludes every other writer; the check that the rows exist is the same on both.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection


def hold_referenced(model, ids: Iterable[int]) -> set[int]:
    """Lock these rows of `model` against deletion until commit; returns the ids that are gone."""
    wanted = {int(pk) for pk in ids if pk is not None}
    if not wanted:
        return set()
    table = connection.ops.quote_name(model._meta.db_table)
    found: set[int] = set()
    ordered = sorted(wanted)  # one lock order for every writer
    with connection.cursor() as cursor:
        for start in range(0, len(ordered), 5000):
            chunk = ordered[start : start + 5000]
            marks = ", ".join(["%s"] * len(chunk))
            lock = " ORDER BY id FOR KEY SHARE" if connection.vendor == "postgresql" else ""
            cursor.execute(f"SELECT id FROM {table} WHERE id IN ({marks}){lock}", chunk)
            found.update(pk for (pk,) in cursor.fetchall())
    return wanted - found
