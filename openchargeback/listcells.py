"""Cells and titles shared by every app's admin lists.

A list is read at 1280 px beside the admin's navigation and filters, so a long value (a resource
id, an email, an object's name) is cut to a few characters with "…" and keeps its whole text in
the cell's title, where hovering shows it. Billing, statements, journals and accounts all import
from here; money cells live with billing (billing/admin/widgets.py) because they follow its
rounding rule.
"""

from __future__ import annotations

from django.utils import timezone
from django.utils.html import format_html, format_html_join

ELLIPSIS = "…"
EMPTY = "—"


def shorten(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, the last of them "…" when anything was cut."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    text = " ".join(str(text).split())  # a cell is one line: no newlines or runs of spaces
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + ELLIPSIS


def truncated(value, limit: int = 28) -> str:
    """A list cell holding `value` cut to `limit` characters; the full value on hover.

    The title is given only when something was cut, so a screen reader doesn't read a short
    value twice. None and "" show as a dash."""
    if value is None or value == "":
        return EMPTY
    full = str(value)
    short = shorten(full, limit)
    if short == full:
        return format_html('<span class="oc-cell">{}</span>', full)
    return format_html('<span class="oc-cell" title="{}">{}</span>', full, short)


def stacked(*lines) -> str:
    """Two or more values in one cell, one under the other (PI over project, source over
    import): lines that are None or "" are left out, and a cell with none shows a dash."""
    lines = [line for line in lines if line not in (None, "")]
    if not lines:
        return EMPTY
    return format_html_join("", '<span class="oc-line">{}</span>', ((line,) for line in lines))


def when(moment) -> str:
    """A time in a list: "2026-10-31 17:05" in the site's time zone, a third of the width of
    Django's "Oct. 31, 2026, 5:05 p.m."; None is a dash."""
    if moment is None:
        return EMPTY
    return format_html(
        '<span class="oc-nowrap">{}</span>', timezone.localtime(moment).strftime("%Y-%m-%d %H:%M")
    )


class ListTitleMixin:
    """A human title over a list and a noun for its footer's count.

    Django titles a change list "Select <verbose name> to view" and counts "7 review queue" with
    the model's plural name; `list_title` and `count_nouns` (singular, plural) replace them.
    `lists.css` tightens the table and puts the filters above it when the screen is narrow."""

    list_title: str = ""
    count_nouns: tuple[str, str] | None = None

    class Media:
        css = {"all": ("billing/lists.css",)}

    def changelist_view(self, request, extra_context=None):
        context = dict(extra_context or {})
        if self.list_title:
            context.setdefault("title", self.list_title)
        return super().changelist_view(request, extra_context=context)
