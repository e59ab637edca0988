"""The reference month's hand-written figures are plain sums of its rows.

Nothing from the application is imported here: these checks are the independent computation the
importer, statement and journal tests are compared with. If a row of reference_month.ROWS changes,
this says which written figure no longer matches.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from decimal import Decimal

from .reference_month import (
    MONTH_BILLED,
    MONTH_LIST,
    MONTH_ROWS,
    PROJECTS,
    REFERENCE_BY_SERVICE,
    REFERENCE_DISCOUNTS,
    REFERENCE_FILES,
    REFERENCE_SOURCES,
    REFERENCE_STATEMENTS,
    ROWS,
    write_reference_month,
)

D = Decimal


def test_each_file_total_is_the_sum_of_its_rows():
    for name, (count, billed, listed) in REFERENCE_FILES.items():
        rows = [r for r in ROWS if r.file == name]
        assert len(rows) == count, name
        assert sum(D(r.billed_cost) for r in rows) == billed, name
        assert sum(D(r.list_cost) for r in rows) == listed, name
    assert set(REFERENCE_FILES) == set(REFERENCE_SOURCES) == {r.file for r in ROWS}
    assert len(ROWS) == MONTH_ROWS
    assert sum(D(r.billed_cost) for r in ROWS) == MONTH_BILLED
    assert sum(D(r.list_cost) for r in ROWS) == MONTH_LIST


def test_each_statement_is_the_sum_of_its_projects_rows():
    got = defaultdict(lambda: [D(0), D(0)])
    for r in ROWS:
        got[r.project][0] += D(r.list_cost)
        got[r.project][1] += D(r.billed_cost)
    expected = {
        project: (pi, fund, D(lst), D(due)) for pi, project, fund, lst, due in REFERENCE_STATEMENTS
    }
    assert set(got) == set(expected) == set(PROJECTS)
    for project, (pi, fund, lst, due) in expected.items():
        assert PROJECTS[project] == (pi, fund)
        assert got[project] == [lst, due], project
        assert D(REFERENCE_DISCOUNTS[project]) == lst - due, project
    assert [(pi, p) for pi, p, *_ in REFERENCE_STATEMENTS] == sorted(
        (pi, p) for pi, p, *_ in REFERENCE_STATEMENTS
    )


def test_billed_by_service_is_the_sum_of_its_rows():
    got = defaultdict(Decimal)
    for r in ROWS:
        got[r.service] += D(r.billed_cost)
    assert {k: D(v) for k, v in REFERENCE_BY_SERVICE.items()} == dict(got)


def test_the_discounts_described_hold_row_by_row():
    for r in ROWS:
        listed, billed = D(r.list_cost), D(r.billed_cost)
        if r.file in ("aws_2025-01.csv", "azure_2025-01.csv"):
            assert billed == listed * D("0.85"), r
        elif r.file == "hpc_2025-01.csv":
            assert billed == 0, r
        elif r.file == "it_storage_2025-01.csv":
            assert billed == listed, r
        elif r.service == "Research Storage - Archive":
            assert billed == listed * D("0.25"), r


def test_written_files_hold_exactly_the_rows(tmp_path):
    folder = write_reference_month(tmp_path)
    for name, (count, billed, listed) in REFERENCE_FILES.items():
        with open(folder / name, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == count
        assert sum(D(r["BilledCost"]) for r in rows) == billed
        assert sum(D(r["ListCost"]) for r in rows) == listed
        for row in rows:
            tags = json.loads(row["Tags"])
            assert PROJECTS[tags["project_id"]] == (tags["pi_email"], tags["fund_org"])
