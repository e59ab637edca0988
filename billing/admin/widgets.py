"""The admin's shared parts: list filters, the exact search, the capped paginator, how a
charge's reasons and decisions are shown, and the money cell every list uses (statements' and
journals' admins too: they import it from here)."""

from __future__ import annotations

from decimal import Decimal

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import connections, transaction
from django.db.models import F, Q, QuerySet
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _

from openchargeback.listcells import stacked, truncated

from ..models import PI, Charge, Flag, Project
from ..money import cents_text, money_text

Status = Charge.ReviewStatus


# ---- money in a list -----------------------------------------------------------------------


def money_cell(value, currency: str = "") -> str:
    """An amount as a list shows it: to the cent, half up, with thousands separators
    (billing/money.py's rule, so a list agrees with statements and the dashboard), and the exact
    stored value, with its currency, in the title that hovering shows. lists.css right-aligns
    the cell. None (an amount the delivery left out) shows as a dash."""
    if value is None or value == "":
        return "—"
    if not isinstance(value, Decimal):
        value = Decimal(str(value))  # an import's totals are JSON text, never a float
    exact = money_text(value)
    title = f"{currency} {exact}" if currency else exact
    return format_html('<span class="oc-money" title="{}">{}</span>', title, cents_text(value))


class ChargeCellsMixin:
    """The cells the charge list and the review queue share, merged so the columns a reviewer
    acts on fit at 1280 px: what (service over resource id), who (PI over project), and the
    review status over its reasons, the id over the period. The source is a filter and on the
    detail page."""

    # The fields the cells below read. A list page reads only these of each charge: the rest
    # (the delivered tags and extra columns above all, JSON decoded row by row) is for the
    # detail page.
    LIST_FIELDS = frozenset(
        {
            "id",
            "period",
            "source",
            "pi",
            "project",
            "service_name",
            "resource_id",
            "billed_cost",
            "list_cost",
            "billing_currency",
            "fund_org",
            "review_status",
            "flags",
        }
    )

    def get_changelist(self, request, **kwargs):
        return RowLinkChangeList

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.url_name and match.url_name.endswith("_changelist"):
            queryset = queryset.defer(
                *(f.name for f in Charge._meta.concrete_fields if f.name not in self.LIST_FIELDS)
            )
        return queryset

    def action_checkbox(self, obj):
        """Django's row checkbox, written out: Django renders a form widget through the template
        engine for each row, over a third of the review queue's CPU. The same HTML."""
        label = format_html(_("Select this object for an action - {}"), str(obj))
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            str(obj.pk),
            label,
        )

    @admin.display(description="charge", ordering="id")
    def ref(self, obj):
        return stacked(obj.pk, obj.period.key)

    @admin.display(description="service · resource", ordering="resource_id")
    def what(self, obj):
        return stacked(truncated(obj.service_name, 20), truncated(obj.resource_id, 24))

    @admin.display(description="PI · project")
    def who(self, obj):
        return stacked(
            truncated(obj.pi, 22) if obj.pi_id else "no PI",
            truncated(obj.project, 24) if obj.project_id else "no project",
        )

    @admin.display(description="fund/org", ordering="fund_org")
    def fund(self, obj):
        return truncated(obj.fund_org, 14)

    @admin.display(description="status · reasons", ordering="review_status")
    def status_reasons(self, obj):
        reasons = reason_labels(obj.flags) if obj.flags else ""
        return stacked(obj.get_review_status_display(), reasons)


class RowLinkChangeList(ChangeList):
    """The admin's change list, with each row's link made from one reversed URL.

    Django reverses the change URL of every row, then resolves it again to add the list's
    filters (`add_preserved_filters`): 200 URL look-ups a page of 100 charges, a tenth of the
    page's CPU. The link is the same: the change URL and `_changelist_filters`, which
    `preserved_filters` holds already encoded; emptied here so Django adds nothing twice.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.row_filters, self.preserved_filters = self.preserved_filters, ""
        name = f"admin:{self.opts.app_label}_{self.opts.model_name}_change"
        marker = "/0/"
        url = reverse(name, args=("0",), current_app=self.model_admin.admin_site.name)
        self.row_prefix, _, self.row_suffix = url.rpartition(marker)

    def url_for_result(self, result):
        url = f"{self.row_prefix}/{quote(getattr(result, self.pk_attname))}/{self.row_suffix}"
        return f"{url}?{self.row_filters}" if self.row_filters else url


# ---- filters ------------------------------------------------------------------------------


class ReasonFilter(admin.SimpleListFilter):
    title = "reason"
    parameter_name = "reason"

    def lookups(self, request, model_admin):
        return [(flag.code, flag.label) for flag in Flag]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        try:
            flag = Flag.from_code(self.value())
        except ValueError:
            return queryset.none()
        # A clean charge has no reasons (the charge_flags_match_status constraint), so leaving
        # clean charges out changes no row; it lets PostgreSQL read the small index of the
        # charges in review (migration 0017) instead of a month's every charge.
        return (
            queryset.exclude(review_status=Status.CLEAN)
            .alias(flag_hit=F("flags").bitand(int(flag)))
            .filter(flag_hit__gt=0)
        )


class QueueStatusFilter(admin.SimpleListFilter):
    """The queue shows what awaits a decision unless asked for the decided ones."""

    title = "review status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [
            ("approved", "Approved"),
            ("rejected", "Rejected"),
            ("all", "All reviewed or waiting"),
        ]

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "Flagged (waiting)",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        value = self.value()
        if value == "all":
            return queryset
        if value in (Status.APPROVED, Status.REJECTED):
            return queryset.filter(review_status=value)
        return queryset.filter(review_status=Status.FLAGGED)


class InputFilter(admin.SimpleListFilter):
    """A text box instead of a list of every value (there may be thousands of PIs)."""

    template = "admin/billing/input_filter.html"
    lookup = ""

    def lookups(self, request, model_admin):
        return [("", "")]  # a filter with no lookups is hidden

    def queryset(self, request, queryset):
        value = (self.value() or "").strip()
        return queryset.filter(**{self.lookup: value}) if value else queryset

    def choices(self, changelist):
        # The template needs the other filters' parameters to keep them when this one submits.
        yield {
            "value": self.value() or "",
            "parameter_name": self.parameter_name,
            "others": [
                (key, value)
                for key, values in changelist.params.items()
                if key != self.parameter_name
                for value in (values if isinstance(values, list) else [values])
            ],
            "clear": changelist.get_query_string(remove=[self.parameter_name]),
        }


class KeyInputFilter(InputFilter):
    """Looks the typed value up in a small table first and filters charges by its keys.

    `pi_id IN (…)` lets the database walk charges newest first and stop at a page, where a join
    on the PI's email would make it read every charge of the period."""

    model = None
    field = ""
    lookup = ""

    def keys(self) -> list[int] | None:
        """The keys of the typed value (an empty list when nothing has it), None when blank."""
        value = (self.value() or "").strip()
        if not value:
            return None
        if not hasattr(self, "_keys"):
            found = self.model.objects.filter(**{self.field: value}).values_list("pk", flat=True)
            self._keys = list(found)
        return self._keys

    def queryset(self, request, queryset):
        keys = self.keys()
        if keys is None:
            return queryset
        return queryset.filter(**{f"{self.lookup}__in": keys})


class PIFilter(KeyInputFilter):
    title = "PI email"
    parameter_name = "pi_email"
    model = PI
    field = "email__iexact"
    lookup = "pi_id"


class ProjectFilter(KeyInputFilter):
    title = "project id"
    parameter_name = "project_id"
    model = Project
    field = "code"
    lookup = "project_id"


class ServiceFilter(InputFilter):
    title = "service"
    parameter_name = "service"
    lookup = "service_name"


# ---- searching and paging over a million rows ------------------------------------------------


class ExactSearchMixin:
    """The search box matches identifiers exactly as delivered, case included.

    Django's `=field` search compares case-insensitively (LIKE on SQLite, UPPER() on
    PostgreSQL), which costs a function call per row and column; resource ids, accounts, funds
    and invoice ids are identifiers, so a plain `=` is both right and several times cheaper on a
    scan of a million-row period.

    On PostgreSQL a list whose `search_through_index(request)` says so finds its matches through
    the search index (migration 0020; `indexed_search_ids`) instead of reading the table, in the
    list's order (Django sorts before it searches), and then shows those charges. When all the
    matches fit under the paginator's cap, they are exactly what the search selects, for the
    pages, the totals and the actions. Past it they are the first CAP + 1: every page up to the
    cap is right, but totals or "select all" would count only those, so the search reads the
    table as before unless `search_head_is_enough` (the charge list: no totals, no actions)."""

    exact_search_fields: tuple[str, ...] = ()
    search_head_is_enough = False

    def get_search_fields(self, request):
        return self.exact_search_fields  # shows the box; the lookups are below

    def search_through_index(self, request) -> bool:
        """Whether this view's search looks its matches up in the search index (PostgreSQL)."""
        return False

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q()
        for name in self.exact_search_fields:
            match |= Q(**{name: term})
        queryset = queryset.filter(match)
        if (
            connections[queryset.db].vendor != "postgresql"
            or not SEARCH_INDEX_COLUMNS.issuperset(self.exact_search_fields)
            or not self.search_through_index(request)
        ):
            return queryset, False
        head = indexed_search_ids(queryset)
        if len(head) > CappedCountPaginator.CAP and not self.search_head_is_enough:
            return queryset, False
        return queryset.filter(pk__in=head), False


# The charge columns the search index covers (migration 0020: one BRIN bloom index of the four).
SEARCH_INDEX_COLUMNS = frozenset({"resource_id", "fund_org", "sub_account_id", "invoice_id"})


def indexed_search_ids(queryset: QuerySet) -> list[int]:
    """The ids of the queryset's first CAP + 1 charges in its order, found through the search
    index (PostgreSQL; the queryset filters on SEARCH_INDEX_COLUMNS by equality). Every match
    is read to sort them: the cost grows with the matches, not with the table.

    The index is a BRIN bloom index, which the planner never picks by itself (it prices BRIN by
    physical order, and identifiers have none): it read the whole table instead (1.6-2.0 s at
    ten million charges). So this one query runs with sequential and plain index scans priced
    out (bitmap scans only, which is how BRIN is read). Priced that
    way the plan looks expensive enough for JIT compiling, 0.15 s of a 0.25 s search at ten
    million charges: off too. A range the index doesn't summarise yet (charges imported since
    autovacuum last ran) is read whole, so nothing is missed."""
    connection = connections[queryset.db]
    with transaction.atomic(using=queryset.db), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        # Nor walking the primary key in the list's order, filtering as it goes: after an
        # ANALYZE that guesses matches common, the planner took it (the whole table through the
        # index, 4 s at ten million charges: docs/benchmarks.md, "Session 8").
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute("SET LOCAL jit = off")
        return list(queryset.values_list("pk", flat=True)[: CappedCountPaginator.CAP + 1])


class CappedCountPaginator(Paginator):
    """Counts at most CAP + 1 rows, so a page of a million-row table never counts them all.

    `capped` tells the templates to say "more than 10,000" instead of a number that would be
    wrong; the confirmation page of an action still counts its selection exactly.

    In the lists' own order (newest first), one query reads the ids of the first CAP + 1 rows:
    that is both the count and every page up to the cap, so a filter the database can't answer
    from an index (a PI, a searched resource id) costs one pass over the period instead of two,
    one to count and one to fill the page.
    """

    CAP = 10_000
    ID_ORDERINGS = {("-id",), ("-pk",), ("id",), ("pk",)}

    @cached_property
    def _head_ids(self) -> list[int] | None:
        query = self.object_list.query
        ordering = tuple(dict.fromkeys(query.order_by))  # the admin repeats its default order
        if ordering not in self.ID_ORDERINGS or query.distinct:
            return None
        return list(self.object_list.values_list("pk", flat=True)[: self.CAP + 1])

    @cached_property
    def count(self):
        if self._head_ids is not None:
            return len(self._head_ids)
        return self.object_list.order_by()[: self.CAP + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.CAP

    def page(self, number):
        ids = self._head_ids
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if ids is None or (self.capped and top > self.CAP):
            if self.object_list.query.distinct:
                return super().page(number)
            # Sorted by another column, or past the head: the page's ids first, a narrow query
            # an index can answer (the queue sorted by resource id or amount reads the index of
            # charges in review, not 396,000 rows), then those rows, in the same order.
            ids = list(self.object_list.values_list("pk", flat=True)[bottom:top])
            return self._get_page(self.object_list.filter(pk__in=ids), number, self)
        return self._get_page(self.object_list.filter(pk__in=ids[bottom:top]), number, self)


class CappedChangeList(ChangeList):
    """The change list of a list paged by CappedCountPaginator.

    - It sorts only by the columns its admin's `sortable_by` names (all when None). Django links
      only those headers, but still sorts by any column a hand-made `?o=` names; on the charge
      list that is a sort of every charge in the database (30 s at ten million).
    - When everything matching fits on one page, Django shows the whole filtered queryset,
      which runs the filter a second time; the paginator's head already holds every matching
      id, so the page reads those rows by key instead. A search the database can only answer
      by reading the table (an exact resource id, 2 s at ten million charges) reads it once.
    """

    def get_ordering_field(self, field_name):
        if self.sortable_by is not None and field_name not in self.sortable_by:
            return None
        return super().get_ordering_field(field_name)

    def get_results(self, request):
        super().get_results(request)
        head = getattr(self.paginator, "_head_ids", None)
        everything = not self.multi_page or (self.show_all and self.can_show_all)
        if head is not None and not self.paginator.capped and everything:
            self.result_list = self.queryset.filter(pk__in=head)


class FixedChoicesFilter(admin.SimpleListFilter):
    """Choices from a fixed list instead of SELECT DISTINCT over a million rows."""

    field = ""
    values: tuple[str, ...] = ()

    def lookups(self, request, model_admin):
        return [(v, v) for v in self.values]

    def queryset(self, request, queryset):
        return queryset.filter(**{self.field: self.value()}) if self.value() else queryset


class ChargeCategoryFilter(FixedChoicesFilter):
    title = "charge category"
    parameter_name = "category"
    field = "charge_category"
    values = ("Usage", "Purchase", "Tax", "Credit", "Adjustment")


def reason_labels(flags: int) -> str:
    if not flags:
        return "-"
    return format_html_join(", ", "{}", ((Flag(f).label,) for f in Flag if flags & f))


def review_history(charge: Charge) -> str:
    """The charge's decisions, oldest first, as an HTML table for the detail page."""
    decisions = charge.decisions.order_by("created_at", "id")
    if not decisions:
        return "No decisions yet."
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                d.created_at.strftime("%Y-%m-%d %H:%M"),
                d.get_action_display(),
                d.actor,
                ", ".join(f"{k}: {v}" for k, v in d.attribution.items()) or "",
                d.note,
            )
            for d in decisions
        ),
    )
    return format_html(
        "<table><thead><tr><th>When</th><th>Decision</th><th>By</th><th>Attribution</th>"
        "<th>Note</th></tr></thead><tbody>{}</tbody></table>",
        rows,
    )
