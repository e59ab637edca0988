"""PostgreSQL: the importer's rows go to the server as one COPY per file, across its batches.

A COPY per batch left the server idle while the client formatted and sent each next batch
(ingest/loader.py, _CopyStream). These tests hold the behaviour: one COPY for a file of many
batches, every row and cent there, and a failure part-way through the stream writing nothing.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection

from billing.ingest import loader, reader
from billing.models import Charge, Import
from billing.services import import_files

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's"),
]


def _rows(month: str, count: int) -> list[dict]:
    return [
        {
            "BillingPeriodStart": f"{month}-01T00:00:00Z",
            "BillingPeriodEnd": f"{month[:5]}{int(month[5:]) + 1:02d}-01T00:00:00Z",
            "BilledCost": f"{n}.{n % 100:02d}",
            "ListCost": f"{n}.{n % 100:02d}",
            "ResourceId": f"vm-{n}",
        }
        for n in range(1, count + 1)
    ]


@pytest.fixture
def copies(monkeypatch):
    """Every COPY the importer opens, with the number of writes each received."""
    opened: list[list[int]] = []

    class Counted(loader._CopyStream):
        def __init__(self, raw):
            super().__init__(raw)
            self.writes = [0]
            opened.append(self.writes)

        def write(self, data):
            self.writes[0] += 1
            super().write(data)

    monkeypatch.setattr(loader, "_CopyStream", Counted)
    monkeypatch.setattr(reader, "BLOCK_SIZE", 400)  # a few rows a batch
    return opened


def test_a_file_of_many_batches_is_one_copy_with_every_row(copies, write_focus, config):
    first = write_focus(_rows("2025-03", 60), name="march.csv")
    second = write_focus(_rows("2025-04", 45), name="april.csv")

    result = import_files(paths=[first, second], source="aws", config=config)

    assert len(copies) == 2, "one COPY per file"
    assert all(writes[0] > 5 for writes in copies), copies  # each carried many batches
    assert Charge.objects.count() == 105 == result.rows_imported
    delivered = _rows("2025-03", 60) + _rows("2025-04", 45)
    expected = sum(Decimal(row["BilledCost"]) for row in delivered)
    assert sum(Charge.objects.values_list("billed_cost", flat=True)) == expected
    assert Decimal(result.totals["USD"]["billed"]) == expected


def test_a_failure_part_way_through_the_stream_writes_nothing(
    copies, monkeypatch, write_focus, config
):
    path = write_focus(_rows("2025-03", 60))
    written = []
    real_write = loader._CopyStream.write

    def failing_write(self, data):
        written.append(len(data))
        if len(written) == 4:
            raise OSError("connection to the server lost (simulated)")
        real_write(self, data)

    monkeypatch.setattr(loader._CopyStream, "write", failing_write)

    with pytest.raises(OSError, match="simulated"):
        import_files(paths=[path], source="aws", config=config)

    assert len(written) == 4  # three batches reached the server before the failure
    assert not Charge.objects.exists()
    assert not Import.objects.exists()
    # The connection is usable again: the COPY was ended, not left open.
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
