"""Writing CSV cells so that a spreadsheet or an ERP loader reads exactly what we mean.

The one rule for every CSV the product writes (journals, the audit export, the portal's charges,
the admin's import-export exports such as the account map):

- Quoting is the csv module's alone (delimiters, quotes, newlines); templates never quote.
- A cell that begins with = + - @ tab or carriage return is a formula to Excel, LibreOffice and
  Google Sheets (CSV injection); so are their full-width forms (＝ ＋ － ＠), which some
  spreadsheets fold to ASCII. Such a cell gets a leading apostrophe, which spreadsheets show as
  text and hide. A plain number ("-12.50", "+3") is not a formula and stays a number, so signed
  amount columns load as amounts.
- NUL characters are dropped; with LF line endings a lone CR inside a cell becomes LF so that
  the csv module quotes it (it only quotes characters of the line terminator).

This lives in the project package because every app writes CSV and `accounts` (the lowest app)
may import none of the others.
"""

from __future__ import annotations

import csv
import re

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def neutralise(cell: str) -> str:
    """The cell as a spreadsheet will show it: never a formula, numbers untouched."""
    if cell.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def restore(cell: str) -> str:
    """The inverse of `neutralise`, for a CSV we wrote coming back in (an account-map import)."""
    if cell.startswith("'") and neutralise(cell[1:]) == cell:
        return cell[1:]
    return cell


def safe_cell(value) -> str:
    """Any value as a neutralised text cell: None is empty, NUL characters are dropped."""
    text = "" if value is None else str(value)
    if "\x00" in text:
        text = text.replace("\x00", "")
    return neutralise(text)


def clean_cell(cell: str, lineterminator: str) -> str:
    cell = safe_cell(cell)
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
