"""Storage reports: reading each format, the time-weighted rule, and attribution by path."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import pytest

from billing.usage import storage
from billing.usage.storage import ConversionError

from .usage_fixtures import (
    ISILON_JSON,
    QUMULO_DOTFILES,
    QUMULO_JSON,
    STORAGE_CSV,
    STORAGE_MAP_CSV,
    write,
)

JAN = 31 * 86400


def day(d: int, month: int = 1, hour: int = 0) -> datetime:
    return datetime(2026, month, d, hour, tzinfo=UTC)


def test_csv_samples_become_intervals_covering_the_month(tmp_path):
    samples, _ = storage.read_samples(write(tmp_path, "usage.csv", STORAGE_CSV))
    owners = storage.read_map(write(tmp_path, "map.csv", STORAGE_MAP_CSV))
    got = {
        (i.key, i.start, i.end): (i.tier, i.bytes_used, i.tb_months(JAN))
        for i in storage.intervals(samples, "2026-01", owners)
    }
    assert got == {
        # December's last sample carries in; the Feb 1 sample is February's.
        ("/ifs/research/lovelace-lab", day(1), day(11)): ("standard", 3_100_000_000_000, 1),
        ("/ifs/research/lovelace-lab", day(11), day(21)): ("standard", 6_200_000_000_000, 2),
        ("/ifs/research/lovelace-lab", day(21), day(1, 2)): (
            "standard",
            1_550_000_000_000,
            Fraction("0.55"),
        ),
        # One mid-month sample stands for the whole month.
        ("/ifs/archive/babbage", day(1), day(1, 2)): ("archive", 12 * 10**12, 12),
        ("/ifs/research/orphan", day(1), day(1, 2)): (
            "standard",
            750_000_000_000,
            Fraction("0.75"),
        ),
    }
    # 3.1 TB for 10 days + 6.2 TB for 10 days + 1.55 TB for 11 days, over 31 days.
    lovelace = [i for i in storage.intervals(samples, "2026-01") if "lovelace" in i.key]
    assert sum(i.tb_months(JAN) for i in lovelace) == Fraction("3.55")


def test_map_matches_longest_parent_and_leaves_unmapped_paths_untagged(tmp_path):
    owners = storage.read_map(write(tmp_path, "map.csv", STORAGE_MAP_CSV))
    assert storage.find_owner("/ifs/research/lovelace-lab/sub/deep", owners).tags["project_id"] == (
        "engines"
    )
    assert storage.find_owner("/ifs/research/orphan", owners) is None


def test_isilon_report_bills_directory_quotas_by_logical_usage(tmp_path):
    samples, notes = storage.read_samples(write(tmp_path, "quotas.json", ISILON_JSON))
    assert [(s.key, s.bytes_used, s.sampled_at) for s in samples] == [
        ("/ifs/research/lovelace-lab/sub", 620_000_000_000, None)
    ]
    assert notes == ["1 user/group quota(s) not billed: their bytes are in a directory"]
    (interval,) = storage.intervals(samples, "2026-01")
    assert (interval.start, interval.end, interval.tb_months(JAN)) == (
        day(1),
        day(1, 2),
        Fraction("0.62"),
    )


def test_qumulo_nightly_reports_and_dot_files(tmp_path):
    samples, _ = storage.read_samples(write(tmp_path, "qumulo.json", QUMULO_JSON))
    owners = storage.read_map(write(tmp_path, "dotfiles.json", QUMULO_DOTFILES))
    assert set(owners) == {"engines"}  # the inactive dot file is left out
    got = [
        (i.start, i.end, i.tb_months(JAN), storage.find_owner(i.key, owners).tags["pi_email"])
        for i in storage.intervals(samples, "2026-01", owners)
    ]
    # 0 bytes until Jan 11, then 31 GB for 21 days: 31e9 × 21 / (1e12 × 31) = 0.021 TB-months.
    assert got == [
        (day(1), day(11), 0, "ada@example.edu"),
        (day(11), day(1, 2), Fraction("0.021"), "ada@example.edu"),
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("path,bytes_used\n/a,1\n", "missing column(s) sampled_at"),
        ("path,bytes_used,sampled_at\n/a,1.5,2026-01-01\n", "line 2: bytes used must be a whole"),
        ("path,bytes_used,sampled_at\n/a,1,yesterday\n", "line 2: not an ISO 8601"),
        ("path,bytes_used,sampled_at\n,1,2026-01-01\n", "line 2: no path or project"),
    ],
)
def test_bad_reports_are_refused_naming_the_line(tmp_path, text, message):
    with pytest.raises(ConversionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        storage.read_samples(write(tmp_path, "bad.csv", text))
