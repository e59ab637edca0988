"""Rendering a journal template's cells: the Django template language, with no HTML escaping.

Each cell of a layout is its own small template (one line of the layout), rendered against a
row's variables and then handed to the csv module (openchargeback/csvsafe.py), which does all the
quoting. Templates see only plain values (text, numbers, dicts of text), never model instances,
so a template cannot reach into the database. Amounts are exact decimal text ("1234.50").

Cells that are a bare variable (`{{ fund_org }}`, `{{ segment.fund }}`) or plain text skip the
template engine: the same output, much faster on a million-row detail export.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date

from django.template import Context, Engine, TemplateSyntaxError
from django.template.base import VariableNode
from django.template.defaulttags import ForNode, IfNode

from .models import JournalTemplate

ENGINE = Engine(autoescape=False, string_if_invalid="")

# Variables every layout sees (header and rows).
COMMON_VARIABLES = {
    "period": "the month, YYYY-MM",
    "period_start": "first day of the month (date format)",
    "period_end": "last day of the month (date format)",
    "journal_date": "accounting date: the last day of the month (date format)",
    "journal_id": "RC + YYYYMM, e.g. RC202501 (8 characters)",
    "currency": "ISO 4217 code of this journal",
    "institution": "institution.name from the configuration",
    "template": "this template's name",
    "line_count": "number of data rows in this journal",
    "debit_total": "total of the debit side (GL) or of the amounts (detail, summary)",
    "credit_total": "total of the credit side (GL) or of the amounts (detail, summary)",
    "created_at": "when the file is written, ISO 8601 UTC (makes every export's bytes differ)",
    "created_date": "the day the file is written (date format; differs day to day)",
}

ROW_VARIABLES = {
    JournalTemplate.Kind.GL: {
        "line_number": "1, 2, 3, … in the file",
        "side": "D or C",
        "side_name": "debit or credit",
        "is_debit": "true on debit lines (for {% if %})",
        "amount": "the line's amount, never negative",
        "debit_amount": "the amount on debit lines, empty on credit lines",
        "credit_amount": "the amount on credit lines, empty on debit lines",
        "signed_amount": "debit positive, credit negative (PeopleSoft MONETARY_AMOUNT)",
        "fund_org": "PI fund/org (debits) or the source's credit fund/org (credits)",
        "segment": "named groups of journal.fund_org_regex, e.g. {{ segment.fund }}",
        "account": "GL account: charge tag, else the source's, else journal.default_account",
        "source": "source name, e.g. aws",
        "source_name": "source display name",
        "project": "project id (split_by_project templates' debit lines), else empty",
        "charge_count": "number of charges behind the line",
        "description": "the description template, cut to the limit",
    },
    JournalTemplate.Kind.SUMMARY: {
        "line_number": "1, 2, 3, … in the file",
        "pi_email": "PI email",
        "pi_name": "PI name (may be empty)",
        "project": "project id",
        "project_name": "project name (may be empty)",
        "fund_org": "fund/org",
        "segment": "named groups of journal.fund_org_regex, e.g. {{ segment.fund }}",
        "sources": "source names in the statement, comma separated",
        "list_amount": "list price, rounded once (charges without ListCost count at billed)",
        "discount_amount": "list_amount minus amount",
        "amount": "amount due on the statement, rounded once",
        "charge_count": "number of charges",
        "description": "the description template, cut to the limit",
    },
    JournalTemplate.Kind.DETAIL: {
        "line_number": "1, 2, 3, … in the file",
        "charge_id": "the charge's id in OpenChargeback",
        "source": "source name",
        "source_name": "source display name",
        "file_line": "record number in the imported file (header is 1)",
        "service_name": "FOCUS ServiceName",
        "service_category": "FOCUS ServiceCategory",
        "charge_category": "FOCUS ChargeCategory (Usage, Credit, …)",
        "charge_description": "FOCUS ChargeDescription",
        "resource_id": "FOCUS ResourceId",
        "resource_name": "FOCUS ResourceName",
        "region_id": "FOCUS RegionId",
        "sub_account_id": "FOCUS SubAccountId",
        "charge_start": "ChargePeriodStart (date format)",
        "charge_end": "ChargePeriodEnd (date format)",
        "consumed_quantity": "FOCUS ConsumedQuantity, exact",
        "consumed_unit": "FOCUS ConsumedUnit",
        "pi_email": "PI email",
        "pi_name": "PI name",
        "project": "project id",
        "project_name": "project name",
        "fund_org": "fund/org",
        "segment": "named groups of journal.fund_org_regex",
        "account": "GL account: charge tag, else the source's, else journal.default_account",
        "cost_center": "cost_center attribution",
        "reference_1": "reference_1 attribution (grant number by default)",
        "reference_2": "reference_2 attribution (request id by default)",
        "tag": "the charge's tags by lowercase key, e.g. {{ tag.grant_number }}",
        "billed_cost": "BilledCost exactly as delivered (all its decimals)",
        "list_cost": "ListCost exactly as delivered (empty when not delivered)",
        "amount": "the charge's cents: its statement's amount due allocated over its charges",
        "review_status": "clean or approved",
        "description": "the description template, cut to the limit",
    },
}

DEFAULT_DESCRIPTIONS = {
    JournalTemplate.Kind.GL: "Research computing {{ source }} {{ period }}",
    JournalTemplate.Kind.SUMMARY: "{{ project }} {{ period }}",
    JournalTemplate.Kind.DETAIL: "{{ service_name }} {{ resource_id }}",
}

DEFAULT_FILE_NAME = "journal-{{ period }}-{{ template }}-{{ currency }}.csv"

_SIMPLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\}\}")
_SEGMENT_USE = re.compile(r"\bsegment\.([A-Za-z0-9_]+)")


class TemplateCheckError(Exception):
    """A template that cannot be used; `errors` maps field name -> messages."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def _lookup(context: dict, path: list[str]):
    value = context
    for part in path:
        if isinstance(value, dict):
            value = value.get(part)
        else:
            return ""
        if value is None:
            return ""
    return value


def compile_cell(text: str) -> Callable[[dict], str]:
    """A function row-context -> cell text (raises TemplateSyntaxError)."""
    if "{" not in text:
        return lambda context: text
    pieces = _SIMPLE.split(text)  # literal, variable, literal, variable, …, literal
    literals, paths = pieces[0::2], [p.split(".") for p in pieces[1::2]]
    literal_names = {"True", "False", "None"}  # Django prints these as literals
    if not any(mark in literal for literal in literals for mark in ("{{", "{%", "{#")) and not any(
        path[0] in literal_names for path in paths
    ):
        if len(paths) == 1 and not literals[0] and not literals[1]:
            path = paths[0]
            return lambda context: _text(_lookup(context, path))

        def concatenate(context: dict) -> str:
            out = [literals[0]]
            for path, literal in zip(paths, literals[1:], strict=True):
                out.append(_text(_lookup(context, path)))
                out.append(literal)
            return "".join(out)

        return concatenate
    template = ENGINE.from_string(text)
    return lambda context: template.render(Context(context, autoescape=False))


def compile_cells(cells: list[str]) -> Callable[[dict], list[str]]:
    functions = [compile_cell(cell) for cell in cells]
    return lambda context: [f(context) for f in functions]


def render_text(text: str, context: dict) -> str:
    return ENGINE.from_string(text).render(Context(context, autoescape=False))


def variables_used(text: str) -> set[str]:
    """Root names of the variables a template text prints or tests, minus its loop variables."""
    template = ENGINE.from_string(text)
    names, bound = set(), set()

    def add(expression) -> None:
        var = getattr(expression, "var", None)
        lookups = getattr(var, "lookups", None)
        if lookups:
            names.add(lookups[0])
        for _, args in getattr(expression, "filters", ()):
            for lookup, arg in args:
                if lookup and getattr(arg, "lookups", None):
                    names.add(arg.lookups[0])

    def condition(node) -> None:
        if node is None:
            return
        if hasattr(node, "value") and hasattr(node.value, "var"):
            add(node.value)
        for side in ("first", "second"):
            child = getattr(node, side, None)
            if child is not None and child is not node:
                condition(child)

    for node in template.nodelist.get_nodes_by_type(ForNode):
        bound.update(node.loopvars)
        add(node.sequence)
    for node in template.nodelist.get_nodes_by_type(VariableNode):
        add(node.filter_expression)
    for node in template.nodelist.get_nodes_by_type(IfNode):
        for cond, _ in node.conditions_nodelists:
            condition(cond)
    return names - bound - {"forloop"}


def segments_used(template: JournalTemplate) -> set[str]:
    texts = [template.header_layout, template.row_layout, template.description_template]
    return {name for text in texts for name in _SEGMENT_USE.findall(text or "")}


def check_template(template: JournalTemplate) -> None:
    """Refuse a template whose cells don't compile, use unknown variables, or don't line up."""
    errors: dict[str, list[str]] = {}
    kind = template.kind
    row_known = set(COMMON_VARIABLES) | set(ROW_VARIABLES.get(kind, {}))
    header_known = set(COMMON_VARIABLES)

    def check(field: str, texts: list[str], known: set[str], columns: bool = False) -> None:
        for number, text in enumerate(texts, start=1):
            where = f"column {number}: " if columns else ""
            if "\n" in text or "\r" in text:
                errors.setdefault(field, []).append(f"{where}one line only")
                continue
            try:
                unknown = sorted(variables_used(text) - known)
            except TemplateSyntaxError as exc:
                errors.setdefault(field, []).append(f"{where}{exc}")
                continue
            if unknown:
                errors.setdefault(field, []).append(
                    f"{where}unknown variable {', '.join(unknown)} "
                    f"(see docs/journals.md for the {kind} variables)"
                )

    if kind not in ROW_VARIABLES:
        errors["kind"] = [f"unknown kind {kind!r}"]
        raise TemplateCheckError(errors)
    rows = template.row_cells
    header = template.header_cells
    if not rows:
        errors["row_layout"] = ["give at least one column"]
    check("row_layout", rows, row_known, columns=True)
    check("header_layout", header, header_known, columns=True)
    if header and rows and len(header) != len(rows):
        errors.setdefault("header_layout", []).append(
            f"{len(header)} column titles for {len(rows)} row columns; every row of the file "
            "must have the same number of columns"
        )
    description_known = row_known - {"description"}
    check("description_template", [template.description_template or ""], description_known)
    check("file_name", [template.file_name or ""], header_known)
    if template.delimiter not in {c.value for c in JournalTemplate.Delimiter}:
        errors["delimiter"] = ["choose comma, semicolon, tab or pipe"]
    try:
        formatted = date(2025, 1, 31).strftime(template.date_format or "")
    except ValueError as exc:
        errors["date_format"] = [f"not a date format: {exc}"]
    else:
        if not formatted or template.date_format == formatted:
            errors["date_format"] = ["use strftime codes, e.g. %Y-%m-%d or %m/%d/%Y"]
    if template.split_by_project and kind != JournalTemplate.Kind.GL:
        errors["split_by_project"] = ["only general-ledger templates split debits by project"]
    if errors:
        raise TemplateCheckError(errors)
