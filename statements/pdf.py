"""The statement PDF (reportlab platypus): what a PI files with a grant report.

Built-in Helvetica (text is extractable and nothing is embedded, which keeps a page at a few
milliseconds), fixed row heights for the long detail table (reportlab needs no per-row layout),
"Page x of y" drawn once every page is laid out, DRAFT on every page of a draft. Output is
deterministic (`invariant`): the same statement renders to the same bytes, so its hash means
something.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import LETTER
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import cm
from reportlab.lib.utils import ImageReader, simpleSplit
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen import canvas as pdfcanvas
from reportlab.platypus import (
    BaseDocTemplate,
    Frame,
    PageTemplate,
)
from reportlab.platypus.flowables import Flowable

from billing.money import cents_text

from .figures import Section, month_label, percent_text

FONT = "Helvetica"
BOLD = "Helvetica-Bold"
PAGE = LETTER
MARGIN = 1.8 * cm
WIDTH = PAGE[0] - 2 * MARGIN
ROW = 12.5  # table row height, points
GREY = colors.HexColor("#5f6b7a")
RULE = colors.HexColor("#c9d1db")
SHADE = colors.HexColor("#eef2f6")

STYLES = {
    "body": ParagraphStyle("body", fontName=FONT, fontSize=9, leading=12),
    "small": ParagraphStyle("small", fontName=FONT, fontSize=8, leading=10, textColor=GREY),
    "h1": ParagraphStyle("h1", fontName=BOLD, fontSize=15, leading=19),
    "h2": ParagraphStyle(
        "h2", fontName=BOLD, fontSize=11, leading=14, spaceBefore=10, spaceAfter=4
    ),
    "right": ParagraphStyle("right", fontName=FONT, fontSize=9, leading=12, alignment=TA_RIGHT),
}


@dataclass
class PdfData:
    """What the PDF shows; built from a Statement and its lines (tasks) or from figures."""

    institution: str
    number: str
    period_key: str
    issued_on: date
    currency: str
    pi_email: str
    project_code: str
    fund_org: str
    list_amount: Decimal
    due_amount: Decimal
    sections: list[Section]
    pi_name: str = ""
    project_name: str = ""
    references: list[tuple[str, str]] = field(default_factory=list)
    contact_email: str = ""
    logo_path: str = ""
    is_draft: bool = False
    revision: int = 0
    supersedes: str = ""
    note: str = ""  # why a revision shows 0.00 ("charges moved to statement ST-…")

    @property
    def discount_amount(self) -> Decimal:
        return self.list_amount - self.due_amount


def money(value: Decimal) -> str:
    """1234.5 -> '1,234.50' (exact: Decimal formatting, never float; -0.004 -> '0.00')."""
    return cents_text(value)


def quantity_text(value: Decimal | None, unit: str) -> str:
    if value is None:
        return ""
    shown = value.quantize(Decimal("0.001"))
    text = f"{shown:,f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} {unit}".strip()


def fit(text: str, width: float, font: str = FONT, size: float = 8.5) -> str:
    """Cut text to fit a column, ending in an ellipsis."""
    if stringWidth(text, font, size) <= width:
        return text
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if stringWidth(text[:mid] + "…", font, size) <= width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "…"


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def subsidy_sentence(data: PdfData) -> str:
    """How much the institution covered, when it did."""
    cur, listed, due = data.currency, data.list_amount, data.due_amount
    discount = data.discount_amount
    if listed > 0 and due == 0:
        return (
            f"{data.institution} covered the full list price of {cur} {money(listed)}; "
            "nothing is due."
        )
    if discount > 0 and listed > 0:
        pct = percent_text(discount, listed, due)
        return (
            f"{data.institution} covered {cur} {money(discount)} ({pct}) of the list price of "
            f"{cur} {money(listed)}; the amount due is {cur} {money(due)}."
        )
    return ""


def _canvas_class(data: PdfData):
    footer = f"{data.institution} · Statement {data.number} · {month_label(data.period_key)}"

    class NumberedCanvas(pdfcanvas.Canvas):
        """Defers each page so the total is known: 'Page x of y'."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._pages = []

        def showPage(self):  # noqa: N802 (reportlab's name)
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self):
            total = len(self._pages)
            for number, state in enumerate(self._pages, start=1):
                self.__dict__.update(state)
                self.setFont(FONT, 7.5)
                self.setFillColor(GREY)
                self.drawString(MARGIN, 1.0 * cm, footer)
                self.drawRightString(PAGE[0] - MARGIN, 1.0 * cm, f"Page {number} of {total}")
                super().showPage()
            super().save()

    return NumberedCanvas


def _on_page(data: PdfData):
    def draw(canvas, doc):
        canvas.saveState()
        canvas.setStrokeColor(RULE)
        canvas.line(MARGIN, 1.4 * cm, PAGE[0] - MARGIN, 1.4 * cm)
        if data.is_draft:
            canvas.setFont(BOLD, 9)
            canvas.setFillColor(colors.HexColor("#b42318"))
            canvas.drawString(
                MARGIN, PAGE[1] - 1.1 * cm, "DRAFT: the period is open; amounts may still change"
            )
            canvas.setFillColor(colors.Color(0.85, 0.2, 0.2, alpha=0.10))
            canvas.setFont(BOLD, 110)
            canvas.translate(PAGE[0] / 2, PAGE[1] / 2)
            canvas.rotate(35)
            canvas.drawCentredString(0, -40, "DRAFT")
        canvas.restoreState()

    return draw


class TextBlock(Flowable):
    """Lines of text, wrapped to the width, drawn straight on the canvas (no paragraph
    parsing: the fixed parts of a statement cost a third of a one-page render with it)."""

    def __init__(self, items, space_before=0.0, space_after=0.0):
        super().__init__()
        self.items = items  # (font, size, leading, color, text)
        self.space_before, self.space_after = space_before, space_after

    def wrap(self, avail_width, avail_height):
        self.lines = []
        for font, size, leading, color, text in self.items:
            for part in simpleSplit(text, font, size, avail_width) or [""]:
                self.lines.append((font, size, leading, color, part))
        self.width = avail_width
        self.height = sum(line[2] for line in self.lines)
        return self.width, self.height

    def getSpaceBefore(self):  # noqa: N802 (reportlab's name)
        return self.space_before

    def getSpaceAfter(self):  # noqa: N802
        return self.space_after

    def draw(self):
        c = self.canv
        y = self.height
        for font, size, leading, color, text in self.lines:
            y -= leading
            c.setFont(font, size)
            c.setFillColor(color)
            c.drawString(0, y + (leading - size) / 2 + 1, text)


def heading(text: str) -> TextBlock:
    return TextBlock([(BOLD, 11, 14, colors.black, text)], space_before=9, space_after=3)


class HeaderBlock(Flowable):
    """Institution, logo, statement facts, PI and project, drawn straight on the canvas."""

    FACT = 11.0

    def __init__(self, data: PdfData, title: str, facts, left, right):
        super().__init__()
        self.data, self.title, self.facts, self.left, self.right = data, title, facts, left, right
        self.logo = None
        if data.logo_path:
            try:
                image = ImageReader(data.logo_path)
                w, h = image.getSize()
                scale = min(1.4 * cm / h, 5 * cm / w)
                self.logo = (image, w * scale, h * scale)
            except Exception:  # an unreadable logo must not stop a statement
                self.logo = None

    def wrap(self, avail_width, avail_height):
        self.width = avail_width
        names = simpleSplit(self.data.institution, BOLD, 14, avail_width - 8.2 * cm)
        self.names = [fit(n, avail_width - 8.2 * cm, BOLD, 14) for n in names[:2]] or [""]
        left_h = 17 * len(self.names) + 14 + (self.logo[2] + 4 if self.logo else 0)
        self.top = max(left_h, len(self.facts) * self.FACT)
        who = max(sum(22 if label else 12 for label, _ in col) for col in (self.left, self.right))
        self.height = self.top + 14 + who + 6
        return self.width, self.height

    def draw(self):
        c, w = self.canv, self.width
        y = self.height
        if self.logo:
            image, lw, lh = self.logo
            c.drawImage(image, 0, y - lh, lw, lh, mask="auto")
            y -= lh + 4
        c.setFillColor(colors.black)
        c.setFont(BOLD, 14)
        for name in self.names:
            y -= 17
            c.drawString(0, y + 3, name)
        c.setFont(FONT, 9)
        c.drawString(0, y - 10, self.title)
        y = self.height
        for label, value in self.facts:
            y -= self.FACT
            c.setFont(FONT, 8.5)
            c.setFillColor(GREY)
            c.drawString(w - 7.8 * cm, y + 2, label)
            c.setFont(BOLD, 8.5)
            c.setFillColor(colors.black)
            c.drawRightString(w, y + 2, fit(value, 5.2 * cm, BOLD, 8.5))
        y = self.height - self.top - 6
        c.setStrokeColor(RULE)
        c.setLineWidth(0.6)
        c.line(0, y, w, y)
        for x, column in ((0, self.left), (w / 2, self.right)):
            yy = y - 6
            for label, value in column:
                if label:
                    yy -= 10
                    c.setFont(BOLD, 8)
                    c.setFillColor(GREY)
                    c.drawString(x, yy + 1, label)
                yy -= 12
                c.setFont(FONT, 9)
                c.setFillColor(colors.black)
                c.drawString(x, yy + 2, fit(value, w / 2 - 10, FONT, 9))


def _header(data: PdfData) -> list:
    title = "Statement" + (" (revised)" if data.revision else "")
    if data.is_draft:
        title = "DRAFT statement"
    facts = [
        ("Statement no.", data.number),
        ("Period", f"{month_label(data.period_key)} ({data.period_key})"),
        ("Issue date", data.issued_on.strftime("%d %B %Y").lstrip("0")),
        ("Currency", data.currency),
    ]
    if data.supersedes:
        facts.append(("Replaces", data.supersedes))
    left = [("Principal investigator", data.pi_name or data.pi_email)]
    if data.pi_name:
        left.append(("", data.pi_email))
    project = data.project_code
    if data.project_name and data.project_name != data.project_code:
        project += f" ({data.project_name})"
    right = [("Project", project), ("Fund/org", data.fund_org), *data.references]
    return [HeaderBlock(data, title, facts, left, right)]


class SummaryBlock(Flowable):
    """List price, discount and amount due in a shaded band."""

    def __init__(self, data: PdfData):
        super().__init__()
        self.data = data

    def wrap(self, avail_width, avail_height):
        self.width, self.height = avail_width, 48
        return self.width, self.height

    def draw(self):
        c, d, w = self.canv, self.data, self.width
        third = w / 3
        c.setFillColor(SHADE)
        c.rect(0, 0, w, self.height, stroke=0, fill=1)
        c.setFillColor(colors.HexColor("#dde7f3"))
        c.rect(2 * third, 0, third, self.height, stroke=0, fill=1)
        pct = percent_text(d.discount_amount, d.list_amount, d.due_amount)
        cells = [
            ("List price", d.list_amount, ""),
            ("Discount", d.discount_amount, "" if pct == "—" else pct),
            ("Amount due", d.due_amount, ""),
        ]
        for i, (label, amount, note) in enumerate(cells):
            x = i * third + 6
            c.setFillColor(GREY)
            c.setFont(FONT, 8.5)
            c.drawString(x, 36, label)
            if note:
                c.drawString(x, 5, note)
            c.setFillColor(colors.black)
            c.setFont(BOLD, 13)
            c.drawString(x, 18, f"{d.currency} {money(amount)}")


def _summary(data: PdfData) -> list:
    out = [heading("Summary"), SummaryBlock(data)]
    sentence = subsidy_sentence(data)
    if sentence:
        out.append(TextBlock([(FONT, 9, 12, colors.black, sentence)], space_before=5))
    return out


class PagedTable(Flowable):
    """A table of fixed-height rows that splits page by page with its header repeated.

    It draws its rows straight onto the canvas: reportlab's Table re-lays out the whole
    remainder at every page break (quadratic for a 5,000-line project) and styles cell by cell,
    which was most of a statement's rendering time.
    """

    def __init__(self, header, rows, kinds, widths):
        super().__init__()
        self.header, self.rows, self.kinds, self.widths = header, rows, kinds, widths

    def wrap(self, avail_width, avail_height):
        self.width, self.height = sum(self.widths), ROW * (len(self.rows) + 1)
        return self.width, self.height

    def split(self, avail_width, avail_height):
        fit_rows = int(avail_height // ROW) - 1
        if fit_rows < 2:
            return []  # not even two rows: start on the next page
        if fit_rows >= len(self.rows):
            return [self]
        # A section heading is never the last row of a page.
        while fit_rows > 1 and self.kinds[fit_rows - 1] == "section":
            fit_rows -= 1
        return [
            PagedTable(self.header, self.rows[:fit_rows], self.kinds[:fit_rows], self.widths),
            PagedTable(self.header, self.rows[fit_rows:], self.kinds[fit_rows:], self.widths),
        ]

    def draw(self):
        c = self.canv
        edges = [0.0]
        for w in self.widths:
            edges.append(edges[-1] + w)
        right = edges[-1]
        # Rules and shading first, then every string through one text object (a drawString per
        # cell costs a text object each: most of the time of a long table).
        y = self.height - ROW
        c.setStrokeColor(RULE)
        c.setLineWidth(0.6)
        c.line(0, y, right, y)
        for kind in self.kinds:
            if kind == "section":
                c.setFillColor(SHADE)
                c.rect(0, y - ROW, right, ROW, stroke=0, fill=1)
            elif kind == "subtotal":
                c.setStrokeColor(RULE)
                c.setLineWidth(0.4)
                c.line(edges[2], y, right, y)
            elif kind == "total":
                c.setStrokeColor(colors.black)
                c.setLineWidth(0.6)
                c.line(0, y, right, y)
            y -= ROW
        text = c.beginText()
        text.setFillColor(GREY)
        current = [None]

        def row_text(row, base, font, size, span=False):
            if current[0] != (font, size):
                text.setFont(font, size)
                current[0] = (font, size)
            if row[0]:
                text.setTextOrigin(2, base)
                text.textOut(row[0])
            if span:
                return
            for i in range(1, len(row)):
                if row[i]:
                    text.setTextOrigin(edges[i + 1] - 3 - stringWidth(row[i], font, size), base)
                    text.textOut(row[i])

        # Row i (the header is row 0) is the band from height - (i + 1) * ROW up to
        # height - i * ROW, the same band its shading and rules above use; its text sits on a
        # baseline 3.5 pt above the band's foot, so descenders stay inside it.
        top = self.height
        row_text(self.header, top - ROW + 3.5, BOLD, 8)
        c.drawText(text)
        text = c.beginText()
        current[0] = None
        text.setFillColor(colors.black)
        for i, (row, kind) in enumerate(zip(self.rows, self.kinds, strict=True), start=2):
            bold = kind in ("section", "subtotal", "total")
            row_text(row, top - i * ROW + 3.5, BOLD if bold else FONT, 8.5, span=kind == "section")
        c.drawText(text)


def _service_table(data: PdfData) -> list:
    cur = data.currency
    widths = [WIDTH - 4 * 2.55 * cm, 2.55 * cm, 2.55 * cm, 2.55 * cm, 2.55 * cm]
    header = ["Service", f"List ({cur})", f"Discount ({cur})", "Discount %", f"Due ({cur})"]
    rows, kinds = [], []
    for s in data.sections:
        rows.append(
            [
                fit(s.label, widths[0] - 8),
                money(s.list_amount),
                money(s.discount_amount),
                percent_text(s.discount_amount, s.list_amount, s.due_amount),
                money(s.due_amount),
            ]
        )
        kinds.append("line")
    rows.append(
        [
            "Total",
            money(data.list_amount),
            money(data.discount_amount),
            percent_text(data.discount_amount, data.list_amount, data.due_amount),
            money(data.due_amount),
        ]
    )
    kinds.append("total")
    return [heading("Charges by service"), PagedTable(header, rows, kinds, widths)]


def _detail_table(data: PdfData) -> list:
    cur = data.currency
    widths = [WIDTH - 2.9 * cm - 3 * 2.45 * cm, 2.9 * cm, 2.45 * cm, 2.45 * cm, 2.45 * cm]
    header = ["Resource", "Quantity", f"List ({cur})", f"Discount ({cur})", f"Due ({cur})"]
    rows, kinds = [], []
    for s in data.sections:
        rows.append([fit(s.label, WIDTH - 16, BOLD), "", "", "", ""])
        kinds.append("section")
        show_service = s.category != "usage"
        for line in s.lines:
            prefix = "   " + (
                f"{line.service_name}: " if show_service and line.service_name else ""
            )
            label = fit(prefix + line.label, widths[0] - 6)
            if line.resource_name and line.resource_id and line.resource_id != line.resource_name:
                # A long name is cut before its id, never the id: two lines of one long-named
                # job stay told apart.
                suffix = f" · {line.resource_id}"
                room = widths[0] - 6 - stringWidth(suffix, FONT, 8.5)
                if room >= (widths[0] - 6) / 2:
                    label = fit(prefix + line.resource_name, room) + suffix
                else:  # an id as long as the column: cut the whole
                    label = fit(f"{prefix}{line.resource_name}{suffix}", widths[0] - 6)
            rows.append(
                [
                    label,
                    fit(quantity_text(line.quantity, line.unit), widths[1] - 6),
                    money(line.list_amount),
                    money(line.discount_amount),
                    money(line.due_amount),
                ]
            )
            kinds.append("line")
        # Named parts of the section's discount: already in the lines above, so only the
        # discount column has a figure, and the label says so (as the portal does): a reader
        # adding the column must not count it twice.
        for r in getattr(s, "reductions", ()):
            rows.append(
                [
                    fit(f"   {r.label} (in the discount above)", widths[0] + widths[1] - 6),
                    "",
                    "",
                    money(r.amount),
                    "",
                ]
            )
            kinds.append("line")
        rows.append(
            [
                fit(f"   Subtotal {s.label}", widths[0] + widths[1] - 6, BOLD),
                "",
                money(s.list_amount),
                money(s.discount_amount),
                money(s.due_amount),
            ]
        )
        kinds.append("subtotal")
    return [heading("Detail by resource"), PagedTable(header, rows, kinds, widths)]


def render_pdf(data: PdfData) -> bytes:
    """The statement as PDF bytes."""
    buffer = io.BytesIO()
    doc = BaseDocTemplate(
        buffer,
        pagesize=PAGE,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=1.5 * cm,
        bottomMargin=1.8 * cm,
        title=f"Statement {data.number}",
        author=data.institution,
        subject=f"{data.pi_email} {data.project_code} {data.period_key}",
        creator="OpenChargeback",
        invariant=1,
        lang="en",
    )
    frame = Frame(
        MARGIN,
        1.8 * cm,
        WIDTH,
        PAGE[1] - 3.3 * cm,
        id="body",
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
    )
    doc.addPageTemplates([PageTemplate(id="page", frames=[frame], onPage=_on_page(data))])
    story = _header(data) + _summary(data)
    if data.note:
        story.append(TextBlock([(BOLD, 9, 12, colors.black, data.note)], space_before=6))
    if data.sections:  # a zero revision has no charges: its note says why, and no empty tables
        story += _service_table(data) + _detail_table(data)
    contact = (
        f"Questions about this statement? Contact {data.contact_email}."
        if data.contact_email
        else f"Questions about this statement? Contact {data.institution}."
    )
    note = (
        "Amounts are rounded to the cent once per statement; lines are allocated from the "
        "totals and add up to them."
    )
    story.append(
        TextBlock([(FONT, 8, 10, GREY, contact), (FONT, 8, 10, GREY, note)], space_before=10)
    )
    doc.build(story, canvasmaker=_canvas_class(data))
    return buffer.getvalue()
