"""CSV cells a spreadsheet reads as the text they are (no formula injection).

A cell that begins with = + - @ tab or carriage return is a formula to Excel, LibreOffice and
Google Sheets. Text cells that do get a leading apostrophe, which spreadsheets show as text and
hide. Amounts are written by `money_text` (plain numbers) and never pass through here, so a
negative amount stays a number.
"""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value) -> str:
    text = "" if value is None else str(value).replace("\x00", "")
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text
