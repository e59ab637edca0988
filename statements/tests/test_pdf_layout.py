"""The statement PDF as the eye sees it: where each word is drawn, not only which words there are.

Issue 12: the header row and the first data row printed on one baseline and every row sat one
row above its shading and rules, and the text tests could not see it. These tests read the
page's geometry with pdfplumber (words, shaded rectangles, rules) and check that no two words on
a page overlap, that each table row's words lie inside the band its shading and rules mark, that
nothing crosses the margins, that the header repeats on every page a table runs over, and that
the totals printed are the Decimal sums of the lines printed.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from decimal import Decimal

import pdfplumber
import pytest

from statements.pdf import MARGIN, PAGE, ROW, render_pdf
from statements.reference import LONG_NAME, reference_data

D = Decimal
EPS = 0.6  # points: how far a glyph box may poke past a line it touches (rounding in the PDF)
MONEY = re.compile(r"^-?\d{1,3}(,\d{3})*\.\d{2}$")
TABLE_SIZE = 8.5  # the font size of table rows (the header's is 8)


@dataclass
class Row:
    page: int
    top: float  # the band's top edge, points from the top of the page
    words: list[dict]
    shaded: bool = False  # inside a shaded rectangle (a section heading)
    ruled_above: bool = False  # a rule on its top edge (subtotal or total)

    @property
    def text(self) -> str:
        return " ".join(w["text"] for w in sorted(self.words, key=lambda w: w["x0"]))

    @property
    def amounts(self) -> list[Decimal]:
        return [D(w["text"].replace(",", "")) for w in self.words if MONEY.match(w["text"])]


@dataclass
class Table:
    header: str
    rows: list[Row] = field(default_factory=list)
    pages: list[int] = field(default_factory=list)


def _close(a: float, b: float, tol: float = EPS) -> bool:
    return abs(a - b) <= tol


def read_layout(pdf_bytes: bytes) -> tuple[list[str], dict[str, Table]]:
    """Check each page's geometry and read its tables row by row (by the bands drawn)."""
    tables: dict[str, Table] = {}
    texts = []
    with pdfplumber.open(io.BytesIO(pdf_bytes)) as pdf:
        for number, page in enumerate(pdf.pages, start=1):
            words = page.extract_words(extra_attrs=["fontname", "size"], use_text_flow=True)
            texts.append(page.extract_text())
            _no_overlaps(words, number)
            _inside_margins(page, words, number)
            for header_word in ("Service", "Resource"):
                for head in [
                    w
                    for w in words
                    if w["text"] == header_word
                    and w["fontname"].endswith("Bold")
                    and _close(w["size"], 8, 0.01)
                ]:
                    table = tables.setdefault(header_word, Table(header_word))
                    table.pages.append(number)
                    table.rows += _table_rows(page, words, head, number)
    return texts, tables


def _no_overlaps(words: list[dict], page: int) -> None:
    boxes = sorted(words, key=lambda w: w["x0"])
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            if b["x0"] >= a["x1"] - EPS:
                break  # sorted by x0: nothing further right can overlap a
            overlap_y = min(a["bottom"], b["bottom"]) - max(a["top"], b["top"])
            assert overlap_y <= EPS, f"page {page}: {a['text']!r} overprints {b['text']!r}"


def _inside_margins(page, words: list[dict], number: int) -> None:
    width, height = PAGE
    for w in words:
        assert w["x0"] >= MARGIN - EPS and w["x1"] <= width - MARGIN + EPS, (number, w["text"])
        assert w["top"] >= 0.9 * 28.35 and w["bottom"] <= height - 0.9 * 28.35, (number, w)
    for shape in page.rects + page.lines:
        assert shape["x0"] >= MARGIN - EPS and shape["x1"] <= width - MARGIN + EPS, number


def _table_rows(page, words: list[dict], head: dict, number: int) -> list[Row]:
    """The rows under one table header, read band by band from the rule under the header."""
    rules = sorted(
        (ln for ln in page.lines if _close(ln["top"], ln["bottom"]) and ln["x0"] < MARGIN + 1),
        key=lambda ln: ln["top"],
    )
    under = [ln for ln in rules if head["bottom"] - EPS <= ln["top"] <= head["top"] + ROW]
    assert under, f"page {number}: no rule under the table header {head['text']!r}"
    rule = under[0]["top"]
    # The header's own band: the row above the rule, holding only header words (8 pt bold).
    in_header = [w for w in words if w["top"] >= rule - ROW - EPS and w["bottom"] <= rule + EPS]
    assert head in in_header, f"page {number}: the header sits outside its band"
    assert all(_close(w["size"], 8, 0.01) for w in in_header), (
        f"page {number}: a data row prints in the header's band: "
        f"{[w['text'] for w in in_header if not _close(w['size'], 8, 0.01)]}"
    )
    shades = [r for r in page.rects if r["non_stroking_color"] and r["x0"] < MARGIN + 1]
    table_words = [w for w in words if _close(w["size"], TABLE_SIZE, 0.01)]
    rows, top = [], rule
    while True:
        bottom = top + ROW
        inside = [w for w in table_words if w["top"] >= top - EPS and w["bottom"] <= bottom + EPS]
        straddling = [
            w
            for w in table_words
            if w["top"] < bottom - EPS < w["bottom"] - EPS and w not in inside
        ]
        assert not straddling, f"page {number}: {straddling[0]['text']!r} crosses a row edge"
        if not inside:
            break
        row = Row(number, top, inside)
        row.shaded = any(_close(s["top"], top) and _close(s["bottom"], bottom) for s in shades)
        row.ruled_above = top != rule and any(
            _close(ln["top"], top) and _close(ln["top"], ln["bottom"]) for ln in page.lines
        )
        rows.append(row)
        top = bottom
    # Shading drawn where no row is: the text and its band have parted.
    for s in shades:
        if s["top"] >= rule - EPS and s["bottom"] <= top + EPS:
            assert any(r.shaded and _close(r.top, s["top"]) for r in rows), (
                f"page {number}: a shaded band at {s['top']:.1f} holds no row"
            )
    return rows


def _check_tables(data, tables: dict[str, Table]) -> None:
    """Rows in the order the data gives them, shaded and ruled where they should be, and each
    total the Decimal sum of the amounts printed above it."""
    service, detail = tables["Service"], tables["Resource"]
    # Charges by service: one row per section, then Total; each printed list/discount/due.
    assert len(service.rows) == len(data.sections) + 1
    for row, section in zip(service.rows, data.sections, strict=False):
        assert row.amounts == [section.list_amount, section.discount_amount, section.due_amount]
    total = service.rows[-1]
    assert total.text.startswith("Total") and total.ruled_above
    sums = [sum((r.amounts[i] for r in service.rows[:-1]), D(0)) for i in range(3)]
    assert total.amounts == sums == [data.list_amount, data.discount_amount, data.due_amount]

    # Detail: a shaded section heading, its lines, a subtotal under a rule; per section.
    rows = iter(detail.rows)
    for section, service_row in zip(data.sections, service.rows, strict=False):
        heading = next(rows)
        assert heading.shaded and heading.text.startswith(section.label[:20]), heading.text
        assert not heading.amounts
        printed = [next(rows) for _ in section.lines]
        for row, line in zip(printed, section.lines, strict=True):
            assert not row.shaded and not row.ruled_above, row.text
            assert row.amounts == [line.list_amount, line.discount_amount, line.due_amount]
            if line.resource_id and line.resource_name and line.resource_id != line.resource_name:
                # A name cut to the column keeps the id: lines stay told apart.
                assert f"· {line.resource_id} " in row.text, row.text
        subtotal = next(rows)
        assert subtotal.text.startswith("Subtotal") and subtotal.ruled_above, subtotal.text
        sums = [sum((r.amounts[i] for r in printed), D(0)) for i in range(3)]
        assert subtotal.amounts == sums == service_row.amounts[:3]
    assert next(rows, None) is None, "rows printed that the statement does not have"
    # The header is on every page the detail table runs over: rows are read only under a
    # header, so a page without one would have lost its rows above; and no header is left alone
    # at the foot of a page.
    pages_with_rows = sorted({r.page for r in detail.rows})
    assert pages_with_rows == sorted(set(detail.pages)), "a page of rows without its header"


@pytest.mark.parametrize(
    "lines",
    # 5,000 lines are ~80 pages: pdfplumber reads their 300,000 glyphs in about 20 s.
    [1, 30, 500, pytest.param(5000, marks=pytest.mark.slow)],
)
def test_statement_tables_print_each_row_in_its_band(lines):
    data = reference_data(lines)
    texts, tables = read_layout(render_pdf(data))

    _check_tables(data, tables)
    assert sum(len(s.lines) for s in data.sections) == lines
    first = texts[0]
    assert f"Page 1 of {len(texts)}" in first
    # The summary's figures are the table's Total row.
    assert f"USD {data.due_amount:,.2f}" in first and f"USD {data.list_amount:,.2f}" in first
    if lines >= 30:
        assert any(s.category == "credit" for s in data.sections)
        assert any(s.category == "correction" for s in data.sections)
        # The long resource name is cut to its column with an ellipsis, never printed whole.
        whole = "\n".join(texts)
        assert f"{LONG_NAME[:30]}" in whole and LONG_NAME not in whole and "…" in whole
    if lines >= 500:
        assert len(texts) > lines // 70


def test_a_full_subsidy_prints_nothing_due_with_the_same_geometry():
    data = reference_data(30, subsidy=D(1))
    texts, tables = read_layout(render_pdf(data))

    _check_tables(data, tables)
    assert data.due_amount == 0 and data.list_amount > 0
    assert "covered the full list price" in texts[0] and "nothing is due" in texts[0]
    assert "100.00%" in texts[0]


def test_a_zero_revision_says_why_and_prints_no_empty_tables():
    note = (
        "This revision replaces ST-2025-01-00042: its charges moved to statement "
        "ST-2025-01-00057 (project reassigned to another PI), so nothing is due on it."
    )
    data = reference_data(
        1,
        sections=[],
        list_amount=D("0.00"),
        due_amount=D("0.00"),
        number="ST-2025-01-00042-R1",
        revision=1,
        supersedes="ST-2025-01-00042",
        note=note,
    )
    texts, tables = read_layout(render_pdf(data))

    assert tables == {}
    assert len(texts) == 1
    flat = " ".join(texts[0].split())
    assert note in flat  # wrapped inside the margins, every word of it
    assert "Statement (revised)" in flat and "Replaces ST-2025-01-00042" in flat
    assert "USD 0.00" in flat and "Charges by service" not in flat
