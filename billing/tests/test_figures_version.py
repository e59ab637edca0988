"""Cached figures under load: each period's figures version, the import that warms its months
without workers, the review queue's cached totals, and list pages whose queries don't grow with
the month (docs/benchmarks.md, "Session 6")."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from billing.models import BillingPeriod, Charge, FiguresVersion
from billing.selectors import figures_versions, period_summary
from billing.services import charge_reject
from billing.services.figures import figures_changed

from .conftest import REPO

pytestmark = pytest.mark.django_db
SAMPLES = REPO / "sample_data"
QUEUE = "/admin/billing/reviewitem/"


@pytest.fixture(autouse=True)
def _config(settings, config_path, tmp_path):
    settings.OPENCHARGEBACK_CONFIG = config_path
    settings.MEDIA_ROOT = tmp_path / "media"
    cache.clear()


def _group_bys(queries) -> list[str]:
    return [q["sql"] for q in queries if "GROUP BY" in q["sql"] and "billing_charge" in q["sql"]]


def _more_charges(period: BillingPeriod, copies: int, **values) -> None:
    """`copies` more charges like the period's first, each its own delivered row."""
    first = Charge.objects.filter(period=period).order_by("id").first()
    rows = []
    for n in range(copies):
        row = Charge.objects.get(pk=first.pk)
        row.pk = None
        row.fingerprint = (
            f"{first.fingerprint[:20]}-{values.get('review_status', '')}{n}"  # 32 at most
        )
        for name, value in values.items():
            setattr(row, name, value)
        rows.append(row)
    Charge.objects.bulk_create(rows)


def test_a_change_raises_its_periods_version_in_its_own_transaction(ingest):
    ingest(SAMPLES / "aws_2026-09.csv", source="aws")
    ingest(SAMPLES / "aws_2026-10.csv", source="aws")
    sep, octo = (BillingPeriod.objects.get(key=k) for k in ("2026-09", "2026-10"))
    before = figures_versions()

    with pytest.raises(RuntimeError), transaction.atomic():
        figures_changed([octo.pk])
        raise RuntimeError("the change rolls back")
    assert figures_versions() == before  # rolled back with the change

    first_flagged = Charge.objects.filter(period=octo, flags__gt=0).order_by("id").first()
    charge_reject(charges=Charge.objects.filter(pk=first_flagged.pk), note="dup")
    after = figures_versions()
    assert after[sep.pk] == before[sep.pk]  # another month's figures stay cached
    assert after[octo.pk] != before[octo.pk]
    assert FiguresVersion.objects.get(period=octo).counter == (
        FiguresVersion.objects.get(period=sep).counter + 1
    )


@pytest.mark.django_db(transaction=True)  # figures are cached only outside a transaction
def test_an_import_without_workers_warms_its_month_and_no_figure_is_stale(
    admin_client, admin_user, ingest
):
    from billing.dashboard import dashboard_context

    ingest(SAMPLES / "aws_2026-10.csv", source="aws")
    with CaptureQueriesContext(connection) as first:
        figures = dashboard_context("2026-10")["figures"]
    # Warmed by the import after it committed: the first view runs no GROUP BY over charges.
    assert _group_bys(first.captured_queries) == []
    cache.clear()
    assert dashboard_context("2026-10")["figures"] == figures  # what a cold view computes

    # A decision: the next view computes again and shows it, never the cached figure.
    octo = BillingPeriod.objects.get(key="2026-10")
    target = Charge.objects.filter(period=octo, review_status="flagged").order_by("id").first()
    charge_reject(charges=Charge.objects.filter(pk=target.pk), acting_user=admin_user, note="x")
    after = dashboard_context("2026-10")["figures"]["currencies"][0]
    assert after["rejected_count"] == figures["currencies"][0]["rejected_count"] + 1
    assert after["billed"].exact_value == figures["currencies"][0]["billed"].exact_value - (
        target.billed_cost
    )

    # A restated delivery: the figures follow it, and agree with `periods show`.
    ingest(SAMPLES / "aws_2026-10_restated.csv", source="aws", extra=("-p", "2026-10"))
    restated = dashboard_context("2026-10")["figures"]["currencies"][0]
    summary = period_summary(octo)
    assert str(restated["billed"].exact_value) == summary["totals"]["USD"]["billed"]
    assert restated["billed"].exact_value != after["billed"].exact_value


@pytest.mark.django_db(transaction=True)
def test_a_failed_warm_up_never_fails_the_import(ingest, monkeypatch, caplog):
    def broken(key):
        raise RuntimeError("cache down")

    monkeypatch.setattr("billing.dashboard.dashboard_context", broken)
    receipt = ingest(SAMPLES / "aws_2026-10.csv", source="aws")
    assert receipt["status"] == "imported"
    assert Charge.objects.filter(period__key="2026-10").exists()
    assert "warming the figures" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_the_queue_totals_are_cached_until_a_decision_changes_them(
    admin_client, admin_user, ingest
):
    for source in ("aws", "azure", "hpc", "storage"):
        ingest(SAMPLES / f"{source}_2026-10.csv", source=source)
    octo = BillingPeriod.objects.get(key="2026-10")
    url = f"{QUEUE}?period__id__exact={octo.pk}"

    def totals():
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(url)
        assert response.status_code == 200
        rows = response.context["queue_totals"]
        return {r["code"]: (r["count"], r["billed"]) for r in rows}, _group_bys(
            queries.captured_queries
        )

    first, scans = totals()
    assert scans  # computed once
    again, scans = totals()
    assert again == first and scans == []  # then read from the cache

    flagged = Charge.objects.filter(period=octo, review_status="flagged").order_by("id")
    target = flagged.first()
    count, billed = first[""]
    charge_reject(charges=Charge.objects.filter(pk=target.pk), acting_user=admin_user, note="x")
    after, scans = totals()
    assert scans  # a decision changed the queue: computed again
    assert after[""] == (count - 1, billed - target.billed_cost)


def _shown_totals_and_sums(client, url):
    """The queue page's totals, the same figures summed over every charge its filters select,
    and the GROUP BYs it ran over charges."""
    from decimal import Decimal

    from billing.models import Flag

    with CaptureQueriesContext(connection) as queries:
        page = client.get(url)
    assert page.status_code == 200
    shown = {
        (r["code"], r["currency"]): (r["count"], r["billed"]) for r in page.context["queue_totals"]
    }
    sums: dict = {}
    for charge in page.context["cl"].queryset.order_by():
        for code in [flag.code for flag in Flag if charge.flags & flag] + [""]:
            count, billed = sums.get((code, charge.billing_currency), (0, Decimal(0)))
            sums[(code, charge.billing_currency)] = (count + 1, billed + charge.billed_cost)
    return shown, sums, _group_bys(queries.captured_queries)


@pytest.mark.django_db(transaction=True)
def test_the_totals_of_all_charges_add_up_the_clean_ones_from_the_months_rollups(
    admin_client, admin_user, ingest, config_path
):
    """ "All reviewed or waiting" lists the clean charges too. Their part of its totals comes
    from the months' rollups that are cached (an import warms its months); only the clean
    charges of a month whose rollup is not (a decision without workers warms nothing) are added
    up, never every charge. The charges in review are added up from their index. Whichever
    months were cached, the totals are the sums of the charges the filters select."""
    import re

    from billing.config import load_config
    from billing.models import PI, Source
    from billing.selectors import period_rollup
    from billing.services import charge_reassign

    ingest(SAMPLES / "aws_2026-09.csv", source="aws")
    for source in ("aws", "azure", "hpc", "storage"):
        ingest(SAMPLES / f"{source}_2026-10.csv", source=source)
    sep, octo = (BillingPeriod.objects.get(key=k) for k in ("2026-09", "2026-10"))
    clean = Charge.objects.filter(period=octo, review_status="clean").select_related(
        "pi", "project"
    )
    sample = clean.exclude(pi=None).exclude(project=None).order_by("id").first()
    aws = Source.objects.get(name="aws")
    urls = [
        f"{QUEUE}?status=all",
        f"{QUEUE}?status=all&period__id__exact={octo.pk}",
        f"{QUEUE}?status=all&source__id__exact={aws.pk}&period__id__exact={octo.pk}",
        f"{QUEUE}?status=all&pi_email={sample.pi.email.upper()}",
        f"{QUEUE}?status=all&project_id={sample.project.code}&period__id__exact={octo.pk}",
        f"{QUEUE}?status=all&source__id__exact={aws.pk}",
    ]

    def every_view(*, missing: set[int]):
        """Each view's totals against the sums. `missing`: the months whose rollup is not
        cached; the views add up the clean charges of those months only (of the ones a view
        shows), never every clean charge."""
        for url in urls:
            shown, sums, group_bys = _shown_totals_and_sums(admin_client, url)
            assert shown == sums, url
            read = set()
            for sql in group_bys:
                if "NOT (" in sql and "'clean'" in sql:
                    continue  # the charges in review, from their index
                assert "\"review_status\" = 'clean'" in sql, (url, sql)
                months = re.search(r'"billing_charge"."period_id" IN \(([\d, ]+)\)', sql)
                assert months, (url, sql)
                read |= {int(pk) for pk in months.group(1).split(", ")}
            in_view = {octo.pk} if "period__id__exact" in url else {sep.pk, octo.pk}
            assert read == missing & in_view, url

    every_view(missing=set())  # the imports warmed both months
    for view in ("status=all&", ""):  # a PI email no PI has: nothing, and said so
        page = admin_client.get(f"{QUEUE}?{view}pi_email=nobody@example.edu")
        assert page.status_code == 200 and page.context["queue_totals"] == []
        assert "Nothing matches" in page.content.decode()
    cache.clear()
    every_view(missing={sep.pk, octo.pk})  # nothing cached: the clean charges are read

    # A reviewer makes a flagged charge of October clean: October's rollup is no longer found,
    # September's still is. Only October's clean charges are read; the charge counts as clean.
    for period in (sep, octo):
        period_rollup(period)
    flagged = Charge.objects.filter(period=octo, review_status="flagged", pi__isnull=False)
    target = flagged.exclude(project=None).order_by("id").first()
    charge_reassign(
        charges=Charge.objects.filter(pk=target.pk), config=load_config(config_path),
        fund_org="MATH-1843", acting_user=admin_user,
    )  # fmt: skip
    assert Charge.objects.get(pk=target.pk).review_status == "clean"
    assert PI.objects.filter(pk=target.pi_id).exists()
    every_view(missing={octo.pk})
    period_rollup(octo)  # as the dashboard's next view, or a worker, would
    every_view(missing=set())
    # The other way round: September changes (rejected), October stays cached.
    flagged_sep = Charge.objects.filter(period=sep, review_status="flagged").order_by("id")
    charge_reject(
        charges=Charge.objects.filter(pk=flagged_sep[0].pk), note="x", acting_user=admin_user
    )
    every_view(missing={sep.pk})


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries.captured_queries)


def test_list_pages_take_the_same_queries_for_a_bigger_month(admin_client, ingest):
    ingest(SAMPLES / "aws_2026-10.csv", source="aws")
    octo = BillingPeriod.objects.get(key="2026-10")
    flagged = Charge.objects.filter(period=octo, review_status="flagged").first()
    pages = [
        "/admin/",
        f"/admin/billing/charge/?period__id__exact={octo.pk}",
        f"/admin/billing/charge/?period__id__exact={octo.pk}&review_status__exact=flagged",
        f"/admin/billing/charge/?pi_email={flagged.pi.email if flagged.pi else 'x@y.z'}",
        f"{QUEUE}?period__id__exact={octo.pk}",
    ]
    small = {url: _queries(admin_client, url) for url in pages}
    _more_charges(octo, 250)
    _more_charges(octo, 250, review_status="flagged", flags=flagged.flags)
    big = {url: _queries(admin_client, url) for url in pages}
    assert big == small


@pytest.mark.parametrize("admin_list", ["charge", "reviewitem"])
def test_each_row_links_to_its_charge_keeping_the_lists_filters(admin_client, ingest, admin_list):
    """The rows' links are made once a page (RowLinkChangeList), as Django would make them."""
    import re
    from html import unescape
    from urllib.parse import urlencode

    from django.urls import reverse

    ingest(SAMPLES / "aws_2026-10.csv", source="aws")
    octo = BillingPeriod.objects.get(key="2026-10")
    query = f"period__id__exact={octo.pk}&status=all"
    if admin_list == "charge":
        query = f"period__id__exact={octo.pk}"
    page = admin_client.get(f"/admin/billing/{admin_list}/?{query}").content.decode()
    links = [unescape(h) for h in re.findall(r'<th class="field-ref"><a href="([^"]+)"', page)]
    shown = Charge.objects.filter(period=octo).order_by("-id")
    assert links and len(links) == shown.count()
    kept = urlencode({"_changelist_filters": query})
    assert links == [
        f"{reverse(f'admin:billing_{admin_list}_change', args=[c.pk])}?{kept}" for c in shown
    ]
    if admin_list == "charge":  # no filter: a bare link, as Django makes it
        bare = admin_client.get("/admin/billing/charge/").content.decode()
        first = re.search(r'<th class="field-ref"><a href="([^"]+)"', bare).group(1)
        assert first == reverse("admin:billing_charge_change", args=[shown[0].pk])


def test_the_queues_row_checkbox_is_djangos(ingest):
    from django.contrib import admin as django_admin

    from billing.models import ReviewItem

    ingest(SAMPLES / "aws_2026-10.csv", source="aws")
    queue = django_admin.site._registry[ReviewItem]
    for charge in ReviewItem.objects.order_by("id")[:5]:
        mine = queue.action_checkbox(charge)
        assert mine == django_admin.ModelAdmin.action_checkbox(queue, charge)
        assert 'name="_selected_action"' in mine
