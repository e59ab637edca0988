"""A month's fingerprints as fixed-width numbers, so an import's memory doesn't grow with its rows.

A fingerprint is 128 bits, stored as 32 hex digits. Kept as Python strings in dicts and sets, a
month of charges cost ~200 bytes a row in the importer (a 10,000,000-row month: gigabytes); kept
here as two uint64 arrays per key (`hi`, `lo`: the digest's two halves) it costs 16 bytes, and
look-ups are vectorised (`np.searchsorted`) over a whole batch.

- `MonthCharges`: the charges a source already has in a month (fingerprint, id, flagged), read
  once, sorted, and matched batch by batch; it remembers which were delivered again.
- `Occurrences`: which content hashes this import has already numbered in a month, and how far
  (the n-th repeat of identical content gets fingerprint n). Sorted runs of keys, merged as they
  grow; the few keys seen more than once keep their count in a dict.

Keys are compared exactly (both halves); nothing here is probabilistic.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_HEX32 = r"^[0-9a-f]{32}$"
_NIBBLE = np.full(256, 0, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _NIBBLE[_c] = _i


def keys_from_digests(digests: bytes | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo) of n 16-byte digests laid end to end."""
    halves = np.frombuffer(digests, dtype="<u8").reshape(-1, 2)
    return halves[:, 0].copy(), halves[:, 1].copy()


def digests_from_hex(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(16-byte digests as an (m, 16) uint8 array, mask of the texts that are 32 hex digits).

    Fingerprints the importer writes are always 32 lowercase hex digits; any other text (written
    by hand or by an older tool) can never equal one, and is reported as not valid."""
    texts = pc.fill_null(texts.cast(pa.string()), "")
    valid = np.asarray(pc.match_substring_regex(texts, _HEX32).to_numpy(zero_copy_only=False))
    good = texts.filter(pa.array(valid)) if not valid.all() else texts
    count = len(good)
    if count == 0:
        return np.zeros((0, 16), dtype=np.uint8), valid
    offsets = np.frombuffer(good.buffers()[1], dtype=np.int32)[
        good.offset : good.offset + count + 1
    ]
    data = np.frombuffer(good.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    nibbles = _NIBBLE[data].reshape(count, 16, 2)
    digests = (nibbles[:, :, 0] << 4) | nibbles[:, :, 1]
    return np.ascontiguousarray(digests, dtype=np.uint8), valid


def hex_array(digests: np.ndarray) -> pa.Array:
    """Arrow strings of 32 hex digits from an (n, 16) uint8 array, without a Python str per row."""
    count = len(digests)
    hexed = np.frombuffer(bytes(digests).hex().encode("ascii"), dtype=np.uint8)
    offsets = np.arange(0, 32 * count + 1, 32, dtype=np.int32)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(hexed))


def _sort(hi: np.ndarray) -> np.ndarray:
    """Order of keys by their high half (keys sharing it are looked at one by one)."""
    return np.argsort(hi, kind="stable")


def _find(hi_sorted, lo_sorted, hi, lo) -> np.ndarray:
    """For each query key, its position among the keys sorted by `hi_sorted`, or -1."""
    found = np.full(len(hi), -1, dtype=np.int64)
    size = len(hi_sorted)
    if size == 0 or len(hi) == 0:
        return found
    if len(hi) > 256 and size > 4096:
        # Queries in order walk the sorted keys in order: about half the cache misses.
        order = np.argsort(hi)
        found[order] = _find_in_order(hi_sorted, lo_sorted, hi[order], lo[order])
        return found
    return _find_in_order(hi_sorted, lo_sorted, hi, lo)


def _find_in_order(hi_sorted, lo_sorted, hi, lo) -> np.ndarray:
    found = np.full(len(hi), -1, dtype=np.int64)
    size = len(hi_sorted)
    left = np.searchsorted(hi_sorted, hi, side="left")
    at = np.minimum(left, size - 1)
    same_hi = (left < size) & (hi_sorted[at] == hi)
    exact = same_hi & (lo_sorted[at] == lo)
    found[exact] = left[exact]
    # Keys sharing a 64-bit half (about 1 pair in 10^12 at 10M rows): look at each of them.
    for row in np.flatnonzero(same_hi & ~exact).tolist():
        start = int(left[row])
        stop = int(np.searchsorted(hi_sorted, hi[row], side="right"))
        hits = np.flatnonzero(lo_sorted[start:stop] == lo[row])
        if len(hits):
            found[row] = start + int(hits[0])
    return found


class MonthCharges:
    """A source's charges in one month, by fingerprint: matched against the delivery's rows."""

    def __init__(self, hi: np.ndarray, lo: np.ndarray, ids, flagged, other_ids):
        order = _sort(hi)
        # One array at a time, so the month is never held twice over.
        self.hi = hi[order]
        del hi
        self.lo = lo[order]
        del lo
        self.ids = np.asarray(ids, dtype=np.int64)[order]
        del ids
        self.flagged = np.asarray(flagged, dtype=bool)[order]
        self.seen = np.zeros(len(order), dtype=bool)
        # Charges whose fingerprint isn't 32 hex digits: never matched, so removed on replace.
        self.other_ids = np.asarray(other_ids, dtype=np.int64)

    @classmethod
    def from_digests(cls, digests: np.ndarray, ids, flagged, other_ids=()) -> MonthCharges:
        hi, lo = keys_from_digests(np.ascontiguousarray(digests, dtype=np.uint8))
        return cls(hi, lo, ids, flagged, other_ids)

    class Chunks:
        """Builds a MonthCharges from chunks of (fingerprint text, id, flagged) as they're read."""

        def __init__(self):
            self.parts: dict[str, list[np.ndarray]] = {
                "hi": [],
                "lo": [],
                "ids": [],
                "flagged": [],
                "other": [],
            }

        def add(self, texts: pa.Array, ids: pa.Array, flagged: pa.Array) -> None:
            digests, valid = digests_from_hex(texts)
            hi, lo = keys_from_digests(digests)
            ids = ids.to_numpy(zero_copy_only=False)
            flagged = np.asarray(flagged.to_numpy(zero_copy_only=False))
            for name, values in (
                ("hi", hi),
                ("lo", lo),
                ("ids", ids[valid]),
                ("flagged", flagged[valid] != 0),
                ("other", ids[~valid]),
            ):
                self.parts[name].append(values)

        def done(self) -> MonthCharges:
            joined = {}
            for name in ("hi", "lo", "ids", "flagged", "other"):
                chunks = self.parts.pop(name)
                joined[name] = np.concatenate(chunks) if chunks else np.zeros(0, np.uint64)
                del chunks
            return MonthCharges(
                joined.pop("hi"),
                joined.pop("lo"),
                joined.pop("ids"),
                joined.pop("flagged"),
                joined.pop("other"),
            )

    @classmethod
    def empty(cls) -> MonthCharges:
        return cls.from_digests(np.zeros((0, 16), np.uint8), [], [])

    def __len__(self) -> int:
        return len(self.ids) + len(self.other_ids)

    def find(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Positions of the keys among these charges (-1: not there)."""
        return _find(self.hi, self.lo, hi, lo)

    def holds(self, key: tuple[int, int]) -> bool:
        hi, lo = key
        return bool(self.find(np.array([hi], np.uint64), np.array([lo], np.uint64))[0] >= 0)

    def not_seen_ids(self) -> np.ndarray:
        """Ids of the charges no row matched (what a replacement removes), ascending."""
        return np.sort(np.concatenate([self.ids[~self.seen], self.other_ids]))


# Runs are merged up to this many keys: bounds the copy a merge makes (2M keys: 32 MB).
MAX_RUN = 1 << 21
# From this many keys on, a bitmap of the keys' top bits (2^28 bits, 32 MB) answers "never seen"
# for most new keys without a look in the runs (~4% false positives at 10M keys).
BITMAP_FROM = 1 << 20
BITMAP_BITS = 28


class Occurrences:
    """How many fingerprints this import has numbered per content hash, in one month.

    `numbered(hi, lo)` is the next occurrence number for each key (0: never seen). Keys are kept
    in runs sorted by their high half; a new run is merged into the one before it while that one
    is at most twice its size (and the result at most MAX_RUN keys), so a batch looks in a few
    runs and a key is copied O(log rows) times. A key's count is kept only when it is 2 or more
    (identical content delivered again: rare)."""

    def __init__(self):
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []
        self.repeats: dict[tuple[int, int], int] = {}
        self._bits: np.ndarray | None = None
        self._size = 0

    def _slots(self, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        top = (hi >> np.uint64(64 - BITMAP_BITS)).astype(np.int64)
        return top >> 3, (np.uint8(1) << (top & 7).astype(np.uint8))

    def _mark(self, hi: np.ndarray) -> None:
        byte, bit = self._slots(hi)
        np.bitwise_or.at(self._bits, byte, bit)

    def __len__(self) -> int:
        return self._size

    @property
    def runs(self) -> int:
        return len(self._runs)

    def numbered(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        counts = np.zeros(len(hi), dtype=np.int64)
        rows = np.arange(len(hi))
        if self._bits is not None:  # only keys whose bit is set can be here
            byte, bit = self._slots(hi)
            rows = np.flatnonzero(self._bits[byte] & bit)
        hits = np.zeros(len(rows), dtype=bool)
        for run_hi, run_lo in self._runs:
            hits |= _find(run_hi, run_lo, hi[rows], lo[rows]) >= 0
        counts[rows[hits]] = 1
        if self.repeats:
            for row in rows[hits].tolist():
                counts[row] = self.repeats.get((int(hi[row]), int(lo[row])), 1)
        return counts

    def record(self, hi: np.ndarray, lo: np.ndarray, new: np.ndarray, counts: dict) -> None:
        """Add the keys where `new` is true (they must not be here yet); keep `counts`
        ({(hi, lo): next occurrence number}) for the keys numbered more than once."""
        for key, count in counts.items():
            if count > 1:
                self.repeats[key] = count
        if not new.any():
            return
        run_hi, run_lo = hi[new], lo[new]
        order = _sort(run_hi)
        self._runs.append((run_hi[order], run_lo[order]))
        self._size += len(run_hi)
        if self._bits is not None:
            self._mark(run_hi)
        elif self._size >= BITMAP_FROM:
            self._bits = np.zeros(1 << (BITMAP_BITS - 3), dtype=np.uint8)
            for keys, _ in self._runs:
                self._mark(keys)
        runs = self._runs
        while (
            len(runs) > 1
            and len(runs[-2][0]) <= 2 * len(runs[-1][0])
            and len(runs[-2][0]) + len(runs[-1][0]) <= MAX_RUN
        ):
            (b_hi, b_lo), (a_hi, a_lo) = runs.pop(), runs.pop()
            at = np.searchsorted(a_hi, b_hi, side="right")  # ascending, as b_hi is sorted
            runs.append((np.insert(a_hi, at, b_hi), np.insert(a_lo, at, b_lo)))
