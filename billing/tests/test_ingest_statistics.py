"""A big import refreshes PostgreSQL's statistics of the charge table before it commits, so the
pages and figures that follow are planned for the rows it wrote, not for an empty table."""

from __future__ import annotations

import pytest
from django.db import connection

from billing.ingest import pipeline

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="statistics are PostgreSQL's planner's"
)


def reltuples() -> float:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = 'billing_charge'")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("threshold, analyzed", [(25, True), (1000, False)])
def test_an_import_of_many_rows_analyzes_the_charge_table(
    write_focus, ingest, monkeypatch, threshold, analyzed
):
    monkeypatch.setattr(pipeline, "ANALYZE_AFTER_ROWS", threshold)
    rows = [{"ResourceId": f"vm-{i}", "BilledCost": f"{i}.01"} for i in range(40)]
    receipt = ingest(write_focus(rows), source="aws")
    assert receipt["rows_added"] == 40
    # Never analyzed: -1 (PostgreSQL 14+) or 0; ANALYZE of a small table counts every row.
    assert (reltuples() == 40) is analyzed
