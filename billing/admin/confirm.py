"""One confirmation page for every admin action that changes data.

An action calls `confirm_action(...)` and returns its page until `is_confirmed(request)`; only
then does it call its service. The page names what will change (a summary line, a list or a
table), holds the action's own form (a reason, a note, a template), and posts the selection back
unchanged: the selected ids, or "select all" with the list's filters (the page posts to its own
URL, so the query string with the filters comes along).

statements/ and journals/ import it too (billing is below them): one template,
admin/confirm_action.html, for every action in the product.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.contrib.admin import helpers
from django.template.response import TemplateResponse

CONFIRMED = "post"  # the field the confirmation page adds; Django's own delete page uses it too


def is_confirmed(request) -> bool:
    """True when the request is the confirmation page's own submit."""
    return request.method == "POST" and request.POST.get(CONFIRMED) == "yes"


def confirm_action(
    modeladmin,
    request,
    queryset,
    *,
    title: str,
    message: str = "",
    action_label: str,
    danger: bool = False,
    summary: str = "",
    lines: Iterable[str] = (),
    table: tuple[Sequence[str], Iterable[Sequence]] | None = None,
    form=None,
    extra_fields: dict[str, str] | None = None,
) -> TemplateResponse:
    """The confirmation page of an admin action.

    - `message`: what happens, in a sentence or two (shown as a warning when `danger`).
    - `summary`: one line on the selection (a count and an amount); `lines` or `table`
      (`(headers, rows)`) list the selected objects.
    - `form`: the action's form (its errors show on the page when a confirmation fails).
    - `extra_fields`: hidden fields to post back as they are.
    """
    select_across = request.POST.get("select_across") == "1"
    ids = [] if select_across else [str(pk) for pk in queryset.values_list("pk", flat=True)]
    headers, rows = table if table is not None else ((), ())
    media = modeladmin.media + form.media if form is not None else modeladmin.media
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "message": message,
        "action_label": action_label,
        "danger": danger,
        "summary": summary,
        "lines": list(lines),
        "headers": list(headers),
        "rows": [list(row) for row in rows],
        "form": form,
        "extra_fields": sorted((extra_fields or {}).items()),
        "action": request.POST.get("action", ""),
        "action_index": request.POST.get("index", ""),
        "selected_ids": ids,
        "select_across": select_across,
        "opts": modeladmin.model._meta,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "media": media,
    }
    return TemplateResponse(request, "admin/confirm_action.html", context)
