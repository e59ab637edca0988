"""The import at scale: fingerprints held as fixed-width arrays, totals as running exact sums.

A month's fingerprints are matched and numbered batch by batch in numpy (ingest/fingerprints.py)
instead of Python dicts, so memory doesn't grow with the rows. These tests pin what that must
not change: the fingerprint of every repeat, replacement and append across many batches and
months, kept review decisions, and receipts exact to the last digit. Batches are made tiny so
every path that crosses a batch boundary runs; the fingerprint structures are also checked
against plain Python models on random keys, with forced collisions of one 64-bit half.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections import Counter
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from billing.ingest import fingerprints, reader
from billing.ingest.fingerprints import (
    MonthCharges,
    Occurrences,
    digests_from_hex,
    hex_array,
    keys_from_digests,
)
from billing.models import BillingPeriod, Charge, Flag
from billing.services.review import charge_reject

from .conftest import GOOD_TAGS, billed_total


@pytest.fixture
def tiny_batches(monkeypatch):
    """CSV batches of about 300 bytes: a handful of rows each."""
    monkeypatch.setattr(reader, "BLOCK_SIZE", 300)


@pytest.fixture
def small_runs(monkeypatch):
    """Occurrence runs merged only up to 8 keys, so lookups meet many runs."""
    monkeypatch.setattr(fingerprints, "MAX_RUN", 8)


# -- the structures, against Python models -----------------------------------------------------


def _keys(rng: random.Random, count: int, his: list[int]) -> list[tuple[int, int]]:
    """Random keys, a third of them sharing a high half with another key."""
    keys = set()
    while len(keys) < count:
        hi = rng.choice(his) if rng.random() < 0.33 else rng.getrandbits(64)
        keys.add((hi, rng.getrandbits(64)))
    return sorted(keys, key=lambda _: rng.random())


def _arrays(keys):
    return (
        np.array([k[0] for k in keys], dtype=np.uint64),
        np.array([k[1] for k in keys], dtype=np.uint64),
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("bitmap", [False, True])
def test_occurrences_count_like_a_dict_across_many_runs(seed, bitmap, small_runs, monkeypatch):
    if bitmap:  # the "never seen" bitmap from 40 keys on, 256 bits: many false positives
        monkeypatch.setattr(fingerprints, "BITMAP_FROM", 40)
        monkeypatch.setattr(fingerprints, "BITMAP_BITS", 8)
    rng = random.Random(seed)
    his = [rng.getrandbits(64) for _ in range(5)]
    universe = _keys(rng, 300, his)
    model: dict[tuple[int, int], int] = {}
    occurrences = Occurrences()
    for _ in range(60):
        batch = [rng.choice(universe) for _ in range(rng.randint(0, 12))]
        hi, lo = _arrays(batch)
        got = occurrences.numbered(hi, lo).tolist()
        assert got == [model.get(key, 0) for key in batch]
        # Number the batch as the importer does: each repeat takes the next number.
        counts, new = {}, np.zeros(len(batch), dtype=bool)
        for row, key in enumerate(batch):
            if key not in model and key not in counts:
                new[row] = True
            counts[key] = counts.get(key, model.get(key, 0)) + 1
        occurrences.record(hi, lo, new, counts)
        model.update(counts)
    assert len(occurrences) == len(model)
    assert occurrences.runs > 1  # the cap kept several runs


def test_month_charges_find_exact_keys_among_shared_high_halves():
    rng = random.Random(7)
    his = [rng.getrandbits(64) for _ in range(3)]
    stored = _keys(rng, 200, his)
    digests = np.array(
        [list(hi.to_bytes(8, "little") + lo.to_bytes(8, "little")) for hi, lo in stored],
        dtype=np.uint8,
    )
    ids = np.arange(1000, 1000 + len(stored))
    flagged = np.array([i % 3 == 0 for i in range(len(stored))])
    charges = MonthCharges.from_digests(digests, ids, flagged, other_ids=[5, 3])
    absent = _keys(rng, 100, his)
    absent = [key for key in absent if key not in set(stored)]
    queries = stored + absent
    rng.shuffle(queries)

    found = charges.find(*_arrays(queries))

    by_key = dict(zip(stored, ids.tolist(), strict=True))
    assert [charges.ids[f] if f >= 0 else None for f in found.tolist()] == [
        by_key.get(key) for key in queries
    ]
    charges.seen[found[found >= 0][:50]] = True
    unmatched = sorted(set(ids.tolist()) - set(charges.ids[found[found >= 0][:50]].tolist()))
    assert charges.not_seen_ids().tolist() == sorted([3, 5, *unmatched])
    assert len(charges) == 202


def test_fingerprint_text_round_trips_and_other_text_never_matches():
    digests = np.frombuffer(bytes(range(256))[: 16 * 5] * 1, dtype=np.uint8).reshape(5, 16)
    texts = hex_array(digests)
    assert texts.to_pylist() == [bytes(row).hex() for row in digests]
    mixed = pa.array(
        [None, texts[1].as_py(), "F" * 32, "abc", texts[3].as_py(), "g" * 32, texts[0].as_py()]
    )
    for array in (mixed, mixed.slice(1)):  # a sliced array starts inside its buffers
        decoded, valid = digests_from_hex(array)
        expected = [t for t in array.to_pylist() if t in texts.to_pylist()]
        assert [bytes(row).hex() for row in decoded] == expected
        assert valid.sum() == len(expected)
    hi, lo = keys_from_digests(digests.tobytes())
    assert int(hi[0]) == int.from_bytes(bytes(digests[0][:8]), "little")
    assert int(lo[0]) == int.from_bytes(bytes(digests[0][8:]), "little")


# -- through the importer ------------------------------------------------------------------------

MONTHS = ["2025-01", "2025-02", "2025-03"]
pytestmark_db = pytest.mark.django_db


def _row(month: str, resource: int, cost: str, **extra) -> dict:
    start = f"{month}-01T00:00:00Z"
    year, mon = map(int, month.split("-"))
    end = f"{year + mon // 12}-{mon % 12 + 1:02d}-01T00:00:00Z"
    return {
        "BillingPeriodStart": start,
        "BillingPeriodEnd": end,
        "BilledCost": cost,
        "ListCost": cost,
        "ResourceId": f"vm-{resource}",
        **extra,
    }


def _month_rows(rng: random.Random, count: int) -> list[dict]:
    """Rows over three months, many of them identical to another (repeats across batches)."""
    rows = []
    for _ in range(count):
        month = rng.choice(MONTHS)
        resource = rng.randint(0, 12)
        cost = f"{rng.randint(-500, 5000)}.{rng.randint(0, 10**11 - 1):011d}"
        if rng.random() < 0.4 and rows:  # identical content again, later in the file
            rows.append(dict(rng.choice(rows)))
        else:
            extra = {} if rng.random() < 0.9 else {"Tags": ""}  # some flagged (no PI)
            rows.append(_row(month, resource, cost, **extra))
    rng.shuffle(rows)
    return rows


def _norm(month: str, resource: str, cost, tags) -> tuple:
    """A charge's identity for comparing multisets: cost as a Decimal, Tags as parsed JSON."""
    if isinstance(tags, str):
        tags = json.loads(tags) if tags else None
    return (
        month,
        resource,
        Decimal(cost),
        None if tags is None else json.dumps(tags, sort_keys=True),
    )


def _stored() -> Counter:
    return Counter(
        _norm(*values)
        for values in Charge.objects.values_list(
            "period__key", "resource_id", "billed_cost", "tags"
        )
    )


def _expected(rows: list[dict]) -> Counter:
    return Counter(
        _norm(
            row["BillingPeriodStart"][:7],
            row["ResourceId"],
            row["BilledCost"],
            row.get("Tags", GOOD_TAGS),
        )
        for row in rows
    )


def _billed(rows, month=None) -> Decimal:
    return sum(
        (
            Decimal(r["BilledCost"])
            for r in rows
            if month is None or r["BillingPeriodStart"][:7] == month
        ),
        Decimal(0),
    )


@pytest.mark.parametrize("seed", [11, 12])
@pytestmark_db
def test_restatements_across_many_batches_and_months_keep_what_came_back(
    ingest, write_focus, tiny_batches, small_runs, seed
):
    rng = random.Random(seed)
    first_rows = _month_rows(rng, 160)
    first = ingest(write_focus(first_rows, name="first.csv"), source="aws")
    assert _stored() == (_expected(first_rows))
    assert Decimal(first["totals"]["USD"]["billed"]) == _billed(first_rows)
    # Decide some flagged charges: a decision survives when its row comes back.
    period = BillingPeriod.objects.get(key=MONTHS[0])
    decided = list(
        Charge.objects.filter(period=period, review_status="flagged").values_list("pk", flat=True)
    )[:3]
    assert decided
    charge_reject(charges=Charge.objects.filter(pk__in=decided), note="not ours", actor="test")
    before = {pk: _content_key(pk) for pk in Charge.objects.values_list("pk", flat=True)}

    # The restatement drops some rows (some of them repeats), adds new ones, repeats others more.
    second_rows = [row for row in first_rows if rng.random() < 0.7]
    second_rows += [dict(rng.choice(first_rows)) for _ in range(30)]
    second_rows += _month_rows(rng, 40)
    rng.shuffle(second_rows)
    second = ingest(write_focus(second_rows, name="second.csv"), source="aws")

    assert _stored() == (_expected(second_rows))
    # Identical content kept as many charges as both deliveries share; the rest replaced.
    kept_expected = sum(
        min(count, _expected(second_rows)[key]) for key, count in _expected(first_rows).items()
    )
    after = {pk: _content_key(pk) for pk in Charge.objects.values_list("pk", flat=True)}
    kept = [pk for pk in after if pk in before]
    assert len(kept) == kept_expected
    assert all(before[pk] == after[pk] for pk in kept)
    assert second["rows_unchanged"] == kept_expected
    assert second["rows_added"] == len(second_rows) - kept_expected
    assert second["rows_removed"] == len(first_rows) - kept_expected
    for pk in decided:
        if pk in after:
            assert Charge.objects.get(pk=pk).review_status == "rejected"
    # Per month, the billed change is what the month gained less what it lost, exactly.
    for month in MONTHS:
        change = second["changes"].get(month, {}).get("billed_change", {}).get("USD", "0")
        assert Decimal(change) == _billed(second_rows, month) - _billed(first_rows, month)
        assert billed_total(period__key=month) == _billed(second_rows, month)
    assert Decimal(second["totals"]["USD"]["billed"]) == _billed(second_rows)
    flagged_now = Charge.objects.filter(review_status="flagged")
    assert second["rows_flagged"] == flagged_now.count()
    assert Decimal(second["totals"]["USD"]["flagged_billed"]) == billed_total(
        review_status="flagged"
    )

    again = ingest(write_focus(second_rows, name="second.csv"), source="aws")
    assert again["status"] == "unchanged"
    assert again["rows_unchanged"] == len(second_rows)
    assert again["totals"] == second["totals"]


def _content_key(pk: int) -> tuple:
    charge = Charge.objects.get(pk=pk)
    return (charge.period.key, charge.resource_id, str(charge.billed_cost), charge.fingerprint)


@pytestmark_db
def test_repeats_across_batches_keep_the_fingerprint_format(ingest, write_focus, tiny_batches):
    """The n-th repeat of a row in a month is blake2b of "<content hash>#n": stored fingerprints
    of earlier imports must keep matching, whichever batch a repeat falls in."""
    rows = [_row("2025-01", 1, "1.10")] * 5 + [_row("2025-02", 1, "1.10")] * 2
    ingest(write_focus(rows), source="aws")

    for month, count in (("2025-01", 5), ("2025-02", 2)):
        stored = set(Charge.objects.filter(period__key=month).values_list("fingerprint", flat=True))
        content = min(stored, key=lambda fp: _repeat_rank(fp, stored))
        assert stored == {content} | {
            hashlib.blake2b(f"{content}#{n}".encode(), digest_size=16).hexdigest()
            for n in range(1, count)
        }


def _repeat_rank(fp: str, stored: set[str]) -> int:
    """0 for the content hash itself: the one whose repeats are the others."""
    repeats = {hashlib.blake2b(f"{fp}#{n}".encode(), digest_size=16).hexdigest() for n in (1,)}
    return 0 if repeats & stored else 1


@pytestmark_db
def test_append_parts_repeating_each_other_across_batches(ingest, write_focus, tiny_batches):
    rng = random.Random(5)
    parts = [_month_rows(rng, 40) for _ in range(3)]
    parts[1] += [dict(row) for row in parts[0][:15]]  # identical rows in a later part
    parts[2] += [dict(row) for row in parts[0][:5] + parts[1][:5]]
    paths = [write_focus(rows, name=f"part{i}.csv") for i, rows in enumerate(parts)]

    receipts = [ingest(path, source="aws", extra=("--append",)) for path in paths]

    everything = [row for rows in parts for row in rows]
    assert _stored() == (_expected(everything))
    assert sum(r["rows_added"] for r in receipts) == len(everything)
    assert Charge.objects.values("period", "fingerprint").distinct().count() == len(everything)
    assert billed_total() == _billed(everything)
    skipped = ingest(paths[1], source="aws", extra=("--append",))
    assert skipped["skipped_files"] and Charge.objects.count() == len(everything)
    # A replacement of the whole delivery afterwards keeps every charge.
    replaced = ingest(*paths, source="aws")
    assert replaced["status"] == "unchanged"


@pytestmark_db
def test_charges_with_other_fingerprints_are_replaced_never_matched(ingest, write_focus):
    """A charge whose fingerprint isn't 32 hex digits (not written by this importer) can't be a
    delivered row: a replacement of its month removes it."""
    path = write_focus([_row("2025-01", 1, "2.50")])
    ingest(path, source="aws")
    odd = Charge.objects.get()
    odd.pk, odd.fingerprint = None, "NOT-A-FINGERPRINT"
    odd.save()

    receipt = ingest(path, source="aws")

    assert receipt["rows_removed"] == 1 and receipt["rows_unchanged"] == 1
    assert not Charge.objects.filter(pk=odd.pk).exists()


@pytestmark_db
def test_totals_of_many_rows_are_exact(ingest, write_file, monkeypatch):
    """Thousands of 11-decimal amounts in two currencies over batches of ~40 rows: the receipt's
    totals are the exact sums of the text, per currency and per month."""
    monkeypatch.setattr(reader, "BLOCK_SIZE", 4096)
    rng = random.Random(3)
    header = [
        "BillingPeriodStart",
        "BillingPeriodEnd",
        "BilledCost",
        "ListCost",
        "BillingCurrency",
        "ResourceId",
        "Tags",
    ]
    rows = []
    for i in range(3000):
        month = MONTHS[i % 2]
        billed = f"{rng.choice(['', '-'])}{rng.randint(0, 10**6)}.{rng.randint(0, 10**11 - 1):011d}"
        listed = f"{rng.randint(0, 10**9)}.{rng.randint(0, 10**11 - 1):011d}"
        currency = "USD" if rng.random() < 0.9 else "EUR"
        row = _row(month, i, billed)
        rows.append(
            [
                row["BillingPeriodStart"],
                row["BillingPeriodEnd"],
                billed,
                listed,
                currency,
                f"vm-{i}",
                GOOD_TAGS,
            ]
        )
    path = write_file("many.csv", "")
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)

    receipt = ingest(path, source="aws")

    for currency in ("USD", "EUR"):
        mine = [r for r in rows if r[4] == currency]
        assert Decimal(receipt["totals"][currency]["billed"]) == sum(
            (Decimal(r[2]) for r in mine), Decimal(0)
        )
        assert Decimal(receipt["totals"][currency]["list"]) == sum(
            (Decimal(r[3]) for r in mine), Decimal(0)
        )
        assert Decimal(receipt["totals"][currency]["flagged_billed"]) == sum(
            (Decimal(r[2]) for r in mine if currency != "USD"), Decimal(0)
        )
        for month in MONTHS[:2]:
            assert Decimal(receipt["changes"][month]["billed_change"][currency]) == sum(
                (Decimal(r[2]) for r in mine if r[0].startswith(month)), Decimal(0)
            )
    assert receipt["rows_flagged"] == sum(r[4] != "USD" for r in rows)
    assert receipt["flagged_by_reason"] == {Flag.CURRENCY.code: receipt["rows_flagged"]}


# -- the CSV reader's memory -----------------------------------------------------------------------


def _long_file(tmp_path, rows: int):
    path = tmp_path / "long.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["BillingPeriodStart", "BilledCost", "ResourceId"])
        writer.writerows(["2025-01-01", f"{i}.25", f"vm-{i}"] for i in range(rows))
    return path


@pytest.mark.parametrize("use_threads", [True, False])
def test_the_csv_reader_reads_only_a_few_blocks_ahead(tmp_path, monkeypatch, use_threads):
    """Arrow reads up to 32 blocks ahead of the batches taken (256 MB held all import long);
    the reader lets it run only READ_AHEAD_BLOCKS ahead, and every row still arrives once."""
    monkeypatch.setattr(reader, "BLOCK_SIZE", 1000)
    path = _long_file(tmp_path, 5000)
    ahead = []
    read = reader._Paced.read

    def spy(self, size=-1):
        data = read(self, size)
        ahead.append(self._read - self._handed_out * reader.BLOCK_SIZE)
        return data

    monkeypatch.setattr(reader._Paced, "read", spy)
    headers = reader.read_headers(path)

    batches = list(reader.read_batches(path, headers, [], use_threads=use_threads))

    assert len(batches) > 60
    lines = np.concatenate([batch.line_numbers() for batch in batches])
    assert lines.tolist() == list(range(2, 5002))
    assert max(ahead) <= (reader.READ_AHEAD_BLOCKS + 1) * reader.BLOCK_SIZE


def test_a_reader_left_early_stops_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "BLOCK_SIZE", 1000)
    path = _long_file(tmp_path, 5000)
    headers = reader.read_headers(path)
    batches = reader.read_batches(path, headers, [])

    first = next(batches)
    batches.close()  # an import refused after its first batch

    assert first.count > 0
