"""sample_data/README.md says what importing the sample files gives: each file's rows and exact
sums, the rows the import holds for review, and the month counts. This test imports the files
(config.example.yaml, no account map) and holds the README to the receipts."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from billing.models import Charge

from .conftest import REPO

pytestmark = pytest.mark.django_db
SAMPLES = REPO / "sample_data"
README = (SAMPLES / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n### ", start + 1)
    return README[start : end if end != -1 else None]


def _per_file() -> dict[str, tuple[int, Decimal, Decimal]]:
    rows = re.findall(
        r"^\| (\S+\.csv) \| (\d+) \| (-?[\d.]+) \| (-?[\d.]+) \|$",
        _section("### Per file"),
        re.MULTILINE,
    )
    return {name: (int(n), Decimal(billed), Decimal(listed)) for name, n, billed, listed in rows}


def _held() -> dict[str, int]:
    found = re.findall(
        r"^- \*\*(\S+\.csv)\*\*: (none|\d+ row\(s\))$",
        _section("### Rows the import holds for review"),
        re.MULTILINE,
    )
    return {name: 0 if what == "none" else int(what.split()[0]) for name, what in found}


def _month_counts() -> list[tuple[int, int]]:
    sentence = re.search(r"holds for review \(its receipts'.*?\): (.*?)\. ", README, re.DOTALL)
    return [(int(a), int(b)) for a, b in re.findall(r"(\d+) of (\d+)", sentence.group(1))]


def _flagged(month: str) -> tuple[int, int]:
    charges = Charge.objects.filter(period__key=month)
    return charges.filter(review_status=Charge.ReviewStatus.FLAGGED).count(), charges.count()


def test_the_readme_figures_are_what_the_import_gives(ingest):
    per_file, held = _per_file(), _held()
    files = sorted(p.name for p in SAMPLES.glob("*.csv"))
    assert sorted(per_file) == sorted(held) == files  # every file is in both lists

    def check(name: str) -> None:
        source, month = name.split("_")[0], name.split("_")[1][:7]
        receipt = ingest(SAMPLES / name, source=source, extra=("-p", month))
        rows, billed, listed = per_file[name]
        usd = receipt["totals"]["USD"]
        got = (receipt["rows_read"], Decimal(usd["billed"]), Decimal(usd["list"]))
        assert got == (rows, billed, listed), name
        assert receipt["rows_flagged"] == held[name], name

    originals = [n for n in files if "restated" not in n]
    for name in originals:
        check(name)
    september, october, october_restated = _month_counts()
    assert _flagged("2026-09") == september
    assert _flagged("2026-10") == october
    check("aws_2026-10_restated.csv")  # the re-delivery replaces aws_2026-10.csv
    assert _flagged("2026-10") == october_restated
