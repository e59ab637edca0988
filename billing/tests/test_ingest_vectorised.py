"""The column-wise import engine: what must not change when rows are built in bulk.

Batches are made tiny here (a few rows each) so that every cross-batch path runs: repeated
content across batch boundaries, several months and currencies in one batch, totals folded batch
by batch. Each test runs on SQLite and on PostgreSQL (DATABASE_URL).
"""

from __future__ import annotations

import json
import random
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from django.core.management.base import CommandError
from django.db import connection

from billing.ingest import loader, reader
from billing.ingest.columns import map_headers
from billing.ingest.exact import ExactColumn
from billing.ingest.reader import read_batches, read_headers
from billing.ingest.rows import RowBuilder
from billing.models import Charge, Flag
from billing.money import exact_sum, money_text

from .conftest import FOCUS_COLUMNS, GOOD_TAGS, billed_total, focus_text

pytestmark = pytest.mark.django_db


@pytest.fixture
def tiny_batches(monkeypatch):
    """CSV batches of about 300 bytes: a handful of rows each."""
    monkeypatch.setattr(reader, "BLOCK_SIZE", 300)


# -- fingerprints -----------------------------------------------------------------------------


def test_fingerprints_keep_their_format(tmp_path):
    """Stored fingerprints must match re-deliveries: the hash of a row may never change.

    The expected values were computed by the row-by-row engine this one replaced.
    """
    path = tmp_path / "f.csv"
    path.write_text(
        focus_text(
            [{}, {"SubAccountId": "acct-1", "BilledCost": "1.25"}], FOCUS_COLUMNS + ["x_Note"]
        )
    )
    headers = read_headers(path)
    fields, extra, _ = map_headers(headers)
    batch = next(read_batches(path, headers, []))

    digests = RowBuilder._content_hashes(None, batch, fields, extra)
    hashes = [digests[i : i + 16].hex() for i in range(0, len(digests), 16)]

    assert hashes == ["4ff1c4fb49bb833740b6a15e4323cf71", "4563e5a57902f38b3577d974d937199a"]


def test_identical_rows_across_batches_stay_separate_and_reimport_unchanged(
    ingest, write_focus, tiny_batches
):
    rows = [{"BilledCost": "1.10"}] * 7 + [{"BilledCost": "2.20", "ResourceId": "vm-2"}] * 5
    path = write_focus(rows)

    first = ingest(path, source="aws")
    again = ingest(path, source="aws")

    assert first["rows_imported"] == 12
    assert Charge.objects.count() == 12
    assert len(set(Charge.objects.values_list("fingerprint", flat=True))) == 12
    assert again["status"] == "unchanged"
    assert again["rows_unchanged"] == 12
    assert billed_total() == Decimal("18.70")


def test_dropping_repeats_in_a_later_batch_removes_only_those(ingest, write_focus, tiny_batches):
    ingest(write_focus([{"BilledCost": "1.10"}] * 9), source="aws")

    receipt = ingest(write_focus([{"BilledCost": "1.10"}] * 6, name="b.csv"), source="aws")

    assert receipt["status"] == "replaced"
    assert (receipt["rows_unchanged"], receipt["rows_removed"], receipt["rows_added"]) == (6, 3, 0)
    assert receipt["billed_change"] == {"USD": "-3.30"}


# -- months, currencies and totals in one batch --------------------------------------------------


def test_months_and_currencies_mixed_in_every_batch(ingest, write_focus, tiny_batches):
    december = {
        "BillingPeriodStart": "2024-12-01T00:00:00Z",
        "BillingPeriodEnd": "2025-01-01T00:00:00Z",
    }
    rows = []
    for i in range(30):
        row = {"BilledCost": f"{i}.{i:011d}", "ListCost": f"{i + 1}.5", "ResourceId": f"vm-{i}"}
        if i % 3 == 0:
            row.update(december)
        if i % 4 == 0:
            row["BillingCurrency"] = "EUR"
        rows.append(row)

    receipt = ingest(write_focus(rows), source="aws", extra=("-p", "2025-01"))

    def expected(currency, flagged_only=False):
        chosen = [
            (i, r)
            for i, r in enumerate(rows)
            if r.get("BillingCurrency", "USD") == currency
            and (not flagged_only or currency == "EUR" or "BillingPeriodStart" in r)
        ]
        return (
            money_text(exact_sum(Decimal(r["BilledCost"]) for _, r in chosen)),
            money_text(exact_sum(Decimal(r["ListCost"]) for _, r in chosen)),
        )

    assert receipt["periods"] == ["2025-01"]  # the -p month takes every row
    for currency in ("USD", "EUR"):
        billed, listed = expected(currency)
        assert receipt["totals"][currency]["billed"] == billed
        assert receipt["totals"][currency]["list"] == listed
        assert receipt["totals"][currency]["flagged_billed"] == expected(currency, True)[0]
    assert not Charge.objects.filter(period__key="2024-12").exists()
    assert (
        Charge.objects.filter(
            flags__in=[Flag.OTHER_PERIOD, Flag.OTHER_PERIOD | Flag.CURRENCY]
        ).count()
        == 10
    )
    assert Charge.objects.get(resource_id="vm-3").flags == Flag.OTHER_PERIOD
    assert Charge.objects.get(resource_id="vm-4").flags == Flag.CURRENCY
    assert Charge.objects.get(resource_id="vm-0").flags == Flag.OTHER_PERIOD | Flag.CURRENCY
    assert Charge.objects.get(resource_id="vm-1").flags == 0
    assert receipt["rows_flagged"] == sum(1 for i in range(30) if i % 3 == 0 or i % 4 == 0)


def test_progress_counts_every_row(write_focus, config, tiny_batches):
    from billing.services import import_files

    seen = []
    import_files(
        paths=[write_focus([{"ResourceId": f"vm-{i}"} for i in range(23)])],
        source="aws",
        config=config,
        progress=seen.append,
    )

    assert len(seen) > 1
    assert sum(seen) == 23


# -- exact sums ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "texts",
    [
        ["1.5", "-2.25", None, "+3", "0.000000000000000000000000000001"],
        ["999999999999999.999999999999999999999999999999", "999999999999999"],
        ["-0.00"],
        ["-0.5", "0.5"],
        ["1.10", "2.2", "5."],
        [".5", "7"],  # not the plain shape: summed as Decimals
        [None, None],
    ],
)
def test_exact_column_sums_like_decimal(texts):
    total = ExactColumn(pa.array(texts, pa.string())).sum()

    expected = exact_sum(Decimal(t) for t in texts if t is not None)
    assert money_text(total) == money_text(expected)


def test_exact_column_masked_sums_are_exact():
    rng = random.Random(7)
    texts = [
        f"{rng.choice(['', '-'])}{rng.randrange(10 ** rng.randrange(1, 16))}"
        f".{rng.randrange(10**11):011d}"
        for _ in range(5000)
    ]
    mask = np.array([rng.random() < 0.4 for _ in texts])
    column = ExactColumn(pa.array(texts))

    assert column.sum() == exact_sum(Decimal(t) for t in texts)
    assert money_text(column.sum(mask)) == money_text(
        exact_sum(Decimal(t) for t, keep in zip(texts, mask, strict=True) if keep)
    )


# -- text, JSON and nulls through COPY and executemany -------------------------------------------


def test_awkward_text_survives_the_bulk_writers(ingest, write_focus):
    columns = FOCUS_COLUMNS + ["ChargeDescription", "x_Note", "x_Other"]
    awkward = "a \"quoted\", comma\nnew line \\ back\\slash 'single' ünïcode"
    rows = [
        {"ChargeDescription": awkward, "x_Note": awkward, "ResourceId": "r,1"},
        {"ChargeDescription": "", "x_Note": "", "x_Other": "", "ResourceId": "r2"},
        {"ChargeDescription": "NULL", "x_Other": "only", "ResourceId": "r3"},
    ]

    ingest(write_focus(rows, columns=columns), source="aws")

    first = Charge.objects.get(resource_id="r,1")
    assert first.charge_description == awkward
    assert first.extra == {"x_Note": awkward}
    empty = Charge.objects.get(resource_id="r2")
    assert empty.charge_description == ""
    assert empty.extra == {}  # every extra column null: still a JSON object
    assert empty.sub_account_id == ""
    assert empty.pricing_quantity is None
    assert Charge.objects.get(resource_id="r3").extra == {"x_Other": "only"}


def test_tags_that_are_not_strict_json_are_flagged_not_fatal(ingest, write_focus):
    bad = '{"pi_email": "ada@example.edu", "project_id": "engines", "weight": NaN}'

    ingest(write_focus([{"Tags": bad, "ResourceId": "nan"}, {}]), source="aws")

    charge = Charge.objects.get(resource_id="nan")
    assert charge.tags is None
    assert charge.extra == {"Tags": bad}
    assert charge.flags & Flag.TAGS_INVALID
    assert Charge.objects.exclude(resource_id="nan").get().tags == json.loads(GOOD_TAGS)


def test_invalid_tags_with_extra_columns_make_one_json_object(ingest, write_focus):
    columns = FOCUS_COLUMNS + ["x_Note"]

    ingest(write_focus([{"Tags": "not json", "x_Note": "n"}], columns=columns), source="aws")

    assert Charge.objects.get().extra == {"x_Note": "n", "Tags": "not json"}


# -- SQLite's CHECK constraints ---------------------------------------------------------------


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite only")
def test_rows_breaking_a_check_constraint_are_refused_before_sqlite_skips_checks():
    batch = pa.RecordBatch.from_pydict(
        {"flags": [0, 3], "review_status": ["clean", "clean"], "line_number": [2, 3]}
    )

    with pytest.raises(ValueError):
        loader._check_rows(batch)


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite only")
def test_unknown_check_constraints_keep_sqlite_checking(ingest, write_focus, monkeypatch):
    """A constraint the importer doesn't know about is left to SQLite (checks not skipped)."""
    monkeypatch.setattr(loader, "KNOWN_SQLITE_CHECKS", {'"line_number" >= 0'})
    statements = []
    connection.ensure_connection()
    connection.connection.set_trace_callback(statements.append)
    try:
        ingest(write_focus([{}]), source="aws")
    finally:
        connection.connection.set_trace_callback(None)

    assert Charge.objects.count() == 1
    assert not any("ignore_check_constraints" in s for s in statements)


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite only")
def test_the_charge_table_checks_are_the_ones_the_importer_guarantees(db):
    """If this fails, a CHECK constraint was added to Charge: make the importer guarantee it
    (rows.py and loader._check_rows), then add it to loader.KNOWN_SQLITE_CHECKS. Until then
    imports on SQLite still work, with SQLite evaluating every check (about 20% slower)."""
    connection.ensure_connection()

    assert loader.sqlite_checks(connection.connection) == loader.KNOWN_SQLITE_CHECKS


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite only")
def test_new_sqlite_databases_use_16k_pages(db):
    """Set by the settings' init_command before the first table exists (docs/benchmarks.md)."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA page_size")
        assert cursor.fetchone() == (16384,)


# -- line numbers around malformed rows -------------------------------------------------------


def _with_malformed_lines(rows: list[dict], bad_lines: tuple[int, ...]) -> str:
    """FOCUS text whose given lines (the header is line 1) have too few fields."""
    lines = focus_text(rows).split("\n")
    for number in bad_lines:
        lines[number - 1] = "2025-01-01,oops"
    return "\n".join(lines)


def test_rows_after_malformed_ones_keep_their_line_numbers(tmp_path, tiny_batches):
    path = tmp_path / "ragged.csv"
    path.write_text(_with_malformed_lines([{"ResourceId": f"r{i}"} for i in range(12)], (4, 9)))
    headers = read_headers(path)
    fields, _, _ = map_headers(headers)
    problems: list[str] = []

    with pytest.raises(reader.RereadForLines):  # threaded: lines unknown, so it says so
        list(read_batches(path, headers, [], use_threads=True))
    batches = list(read_batches(path, headers, problems, use_threads=False))

    assert len(batches) > 2
    numbered = {
        resource: batch.line(offset)
        for batch in batches
        for offset, resource in enumerate(batch.arrays[fields["resource_id"]].to_pylist())
    }
    assert numbered == {f"r{i}": i + 2 for i in range(12) if i + 2 not in (4, 9)}
    assert [problem.split(":")[0] for problem in problems] == ["line 4", "line 9"]


def test_a_refused_file_names_the_true_line_of_every_problem(
    tiny_batches, ingest, write_file, config_path
):
    rows = [{"ResourceId": f"r{i}"} for i in range(12)]
    rows[9]["BilledCost"] = "oops"  # line 11
    path = write_file("mixed.csv", _with_malformed_lines(rows, (4,)))

    with pytest.raises(CommandError) as refused:
        ingest(path, source="aws")

    message = str(refused.value)
    assert "mixed.csv line 11, column BilledCost" in message
    assert "mixed.csv: line 4: expected" in message
    assert message.count("mixed.csv") == 2  # each problem once, though the file was read twice
    assert Charge.objects.count() == 0
