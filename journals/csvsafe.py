"""Writing journal cells so that a spreadsheet or an ERP loader reads exactly what we mean.

- Quoting is the csv module's alone (delimiters, quotes, newlines); templates never quote.
- A cell that begins with = + - @ tab or carriage return is a formula to Excel, LibreOffice and
  Google Sheets (CSV injection). It gets a leading apostrophe, which spreadsheets show as text
  and hide. A plain number ("-12.50", "+3") is not a formula and stays a number, so signed
  amount columns load as amounts.
- NUL characters are dropped; with LF line endings a lone CR inside a cell becomes LF so that
  the csv module quotes it (it only quotes characters of the line terminator).
"""

from __future__ import annotations

import csv
import re

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def neutralise(cell: str) -> str:
    """The cell as a spreadsheet will show it: never a formula, numbers untouched."""
    if cell.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def clean_cell(cell: str, lineterminator: str) -> str:
    if "\x00" in cell:
        cell = cell.replace("\x00", "")
    cell = neutralise(cell)
    if lineterminator == "\n" and "\r" in cell:
        cell = cell.replace("\r\n", "\n").replace("\r", "\n")
    return cell


class SafeWriter:
    """csv.writer with every cell neutralised; counts the data rows it writes."""

    def __init__(self, handle, *, delimiter: str, lineterminator: str):
        self._writer = csv.writer(
            handle,
            delimiter=delimiter,
            quotechar='"',
            doublequote=True,
            quoting=csv.QUOTE_MINIMAL,
            lineterminator=lineterminator,
            strict=True,
        )
        self._terminator = lineterminator

    def writerow(self, cells) -> None:
        self._writer.writerow([clean_cell(str(c), self._terminator) for c in cells])
