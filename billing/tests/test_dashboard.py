"""The admin's landing page: a period's figures, equal to `periods show --json`, and its chart."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.dashboard import month_keys, trend_svg
from billing.models import BillingPeriod, Charge
from billing.money import ExactSum, round_cents
from billing.selectors import period_summary
from billing.selectors.dashboard import period_figures

from .conftest import REPO

pytestmark = pytest.mark.django_db
SAMPLES = REPO / "sample_data"


@pytest.fixture(autouse=True)
def _config(settings, config_path, tmp_path):
    settings.OPENCHARGEBACK_CONFIG = config_path
    settings.MEDIA_ROOT = tmp_path / "media"
    cache.clear()


@pytest.fixture
def two_months(ingest):
    for month in ("2026-09", "2026-10"):
        for source in ("aws", "azure", "hpc", "storage"):
            ingest(SAMPLES / f"{source}_{month}.csv", source=source, extra=("-p", month))


def decide(period_key: str):
    """Approve one flagged charge and reject another (test set-up, not the review service)."""
    flagged = list(
        Charge.objects.filter(period__key=period_key, review_status="flagged").order_by("id")
    )
    assert len(flagged) >= 3
    Charge.objects.filter(pk=flagged[0].pk).update(review_status="approved")
    Charge.objects.filter(pk=flagged[1].pk).update(review_status="rejected")
    return flagged[0], flagged[1]


def dashboard(client, period=None):
    response = client.get("/admin/", {"period": period} if period else {})
    assert response.status_code == 200
    return response


def test_figures_equal_period_summary(admin_client, two_months, run_json, config_path):
    approved, rejected = decide("2026-10")
    response = dashboard(admin_client, "2026-10")
    period = BillingPeriod.objects.get(key="2026-10")
    summary = period_summary(period)
    shown = run_json("periods", "show", "2026-10")  # what the command line prints
    assert shown["totals"] == summary["totals"]

    (usd,) = response.context["figures"]["currencies"]
    totals = summary["totals"]["USD"]
    # The exact sums behind each figure are the command line's.
    assert usd["billed"].exact_value == Decimal(totals["billed"])
    assert usd["list"].exact_value == Decimal(totals["list"])
    assert usd["flagged"].exact_value == Decimal(totals["flagged_billed"])
    assert usd["billable"].exact_value == Decimal(totals["billable"])
    assert usd["flagged_count"] == summary["flagged"]
    assert usd["charges"] == summary["charges"]
    assert usd["rejected_count"] == summary["rejected"] == 1

    # What is shown is the statements' rounding: each (PI, project, fund/org) group rounded to
    # the cent half up, then summed; computed here independently of the selector.
    def by_groups(statuses, column):
        rows = (
            Charge.objects.filter(period=period, review_status__in=statuses)
            .values("pi_id", "project_id", "fund_org")
            .annotate(t=ExactSum(column))
        )
        return sum((round_cents(r["t"] or 0) for r in rows), Decimal("0.00"))

    billable = by_groups(["clean", "approved"], "billed_cost")
    flagged = by_groups(["flagged"], "billed_cost")
    listed = by_groups(["clean", "approved"], "list_cost")
    assert usd["billable"].value == billable
    assert usd["flagged"].value == flagged
    assert usd["billable_list"].value == listed
    # The line under the cards adds what the cards show, to the cent.
    assert usd["billed"].value == billable + flagged
    assert usd["discount"].value == listed - billable
    exact_billable = Charge.objects.filter(
        period=period, review_status__in=["clean", "approved"]
    ).aggregate(t=ExactSum("billed_cost"))["t"]
    assert abs(usd["billable"].value - exact_billable) < Decimal("0.01") * 50  # cents per group
    everything = Charge.objects.filter(period=period).aggregate(t=ExactSum("billed_cost"))["t"]
    assert usd["billed"].exact_value == everything - rejected.billed_cost

    # Top PIs and projects: their rows, "others" and total add up to the Billable card.
    for key in ("top_pis", "top_projects"):
        rows = response.context["figures"][key]
        total = rows[-1]
        assert total["kind"] == "total" and total["billable"].value == usd["billable"].value
        assert sum(r["billable"].value for r in rows[:-1]) == usd["billable"].value

    # By source adds up to the period, without the rejected charge.
    sources = response.context["figures"]["sources"]
    assert sum(s["billable"].value for s in sources) == usd["billable"].value
    assert sum(s["flagged"].value for s in sources) == usd["flagged"].value
    assert sum(s["count"] for s in sources) == summary["charges"]
    assert {s["source"] for s in sources} == {"aws", "azure", "hpc", "storage"}

    # What the page shows.
    html = response.content.decode()
    assert f"USD {usd['billable'].display}" in html
    assert f"exact USD {totals['billed']}" in html
    line = f"USD {usd['billed'].display}</span> = billable {usd['billable'].display} + flagged"
    assert f"{line} {usd['flagged'].display}" in html
    assert f'data-figure="flagged-count-USD">{summary["flagged"]}<' in html
    assert 'data-figure="rejected-count-USD">1<' in html


def test_known_figures_of_the_reference_month(admin_client, import_samples):
    import_samples()
    response = dashboard(admin_client)
    assert response.context["period"].key == "2025-01"
    (usd,) = response.context["figures"]["currencies"]
    # The reference month (reference_month.py): 59 rows, billed 20,227.00, list 32,260.00.
    assert usd["charges"] == 59
    assert usd["billed"].value == Decimal("20227.00")
    assert usd["list"].value == Decimal("32260.00")
    html = response.content.decode()
    assert "20,227.00" in html
    top_pis = response.context["figures"]["top_pis"]
    # Its per-statement table: zorp.blinkman 2,307.75 + 4,152.25.
    assert top_pis[0]["label"] == "zorp.blinkman@example.edu"
    assert top_pis[0]["billable"].value == Decimal("6460.00")
    assert top_pis[1]["label"] == "grix.mottershaw@example.edu"
    assert top_pis[1]["billable"].value == Decimal("5509.50")
    top_projects = {
        p["label"]: p["billable"].value for p in response.context["figures"]["top_projects"]
    }
    assert top_projects["protein-folding-ml"] == Decimal("4152.25")
    assert top_projects["cfd-turbulence"] == Decimal("5.00")
    # HPC is 100% subsidised: a source with list price and nothing billed still shows.
    hpc = next(s for s in response.context["figures"]["sources"] if s["source"] == "hpc")
    assert hpc["billable"].value == 0 and hpc["list"].value == Decimal("8200.00")


def test_default_period_is_the_latest_with_charges(admin_client, two_months):
    BillingPeriod.objects.create(key="2026-12")  # newer, but empty
    response = dashboard(admin_client)
    assert response.context["period"].key == "2026-10"
    options = re.findall(r'<option value="([0-9-]+)"', response.content.decode())
    assert options == ["2026-12", "2026-10", "2026-09"]
    assert dashboard(admin_client, "2026-09").context["period"].key == "2026-09"
    # An unknown key falls back to the default instead of failing.
    assert dashboard(admin_client, "1999-01").context["period"].key == "2026-10"


def test_chart_has_twelve_points_with_labels(admin_client, two_months):
    response = dashboard(admin_client, "2026-10")
    points = response.context["trend_points"]
    assert [p["key"] for p in points] == month_keys("2026-10")
    assert len(points) == 12 and points[0]["key"] == "2025-11"
    for key in ("2026-09", "2026-10"):
        (card,) = period_figures(BillingPeriod.objects.get(key=key))["currencies"]
        point = next(p for p in points if p["key"] == key)
        assert point["billed"].value == card["billable"].value  # the month's card, to the cent
    assert all(p["billed"].value == 0 for p in points[:10])

    svg = str(response.context["trend_svg"])
    assert svg.startswith("<svg") and 'role="img"' in svg
    bars = re.findall(r'<rect [^>]*class="bar-billed"[^>]*><title>([^<]+)</title>', svg)
    assert len(bars) == 12
    assert len(re.findall(r'class="bar-list"[^>]*><title>', svg)) == 12
    assert '<title id="ocb-chart-title">Billable charges by month, 2025-11 to 2026-10' in svg
    for month in ("Nov", "Dec", "Jan", "Sep", "Oct"):
        assert f">{month}</text>" in svg
    html = response.content.decode()
    assert "http://" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")
    # No inline script anywhere (a Content-Security-Policy will forbid it).
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)


def test_chart_scales_negative_and_empty_months():
    points = [
        {"key": k, "billed": Decimal(0), "list": Decimal(0), "selected": False}
        for k in month_keys("2026-03")
    ]
    assert trend_svg(points, "USD").count('class="bar-billed"') == 13  # 12 bars + legend
    points[3]["billed"] = Decimal("-120.00")
    points[4]["list"] = Decimal("1234567.8912345678")
    svg = str(trend_svg(points, "USD"))
    assert ">-" in svg  # a negative axis label below zero
    assert "1,234,567.89" in svg  # exact label in the bar's title, to the cent


def test_import_history_lists_the_periods_receipts(admin_client, two_months):
    response = dashboard(admin_client, "2026-09")
    imports = response.context["imports"]
    assert len(imports) == 4
    assert all("2026-09" in i.periods for i in imports)
    html = response.content.decode()
    assert "/admin/billing/import/" in html


def test_staff_without_billing_permission_sees_only_the_app_list(client, django_user_model):
    user = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(user)
    response = client.get("/admin/")
    assert response.status_code == 200
    assert "figures" not in response.context
    user.user_permissions.add(Permission.objects.get(codename="view_charge"))
    client.force_login(django_user_model.objects.get(pk=user.pk))
    response = client.get("/admin/")
    assert response.context["dashboard"] is True
    assert "Upload FOCUS files" not in response.content.decode()  # no billing.add_import


@pytest.mark.django_db(transaction=True)  # figures are cached only outside a transaction
def test_dashboard_takes_a_handful_of_queries(admin_client, two_months, monkeypatch):
    # The dashboard's own reads; the statements app's status has its own queries.
    monkeypatch.setattr("billing.dashboard.statement_status", lambda period: None)

    def own_queries():
        with CaptureQueriesContext(connection) as queries:
            dashboard(admin_client, "2026-10")
        own = [q["sql"] for q in queries.captured_queries if '"billing_' in q["sql"]]
        scans = [s for s in own if 'FROM "billing_charge"' in s and "GROUP BY" in s]
        return own, scans

    cache.clear()  # nothing warmed: the view computes
    own, scans = own_queries()
    assert len(own) <= 12, own
    assert len(scans) == 3  # the period's GROUP BY, flagged by reason, the other 11 months
    # Until an import or a review decision changes charges, the sums come from the cache.
    own, scans = own_queries()
    assert len(own) <= 9 and scans == []


def test_cached_figures_follow_every_decision_and_import(
    admin_client, admin_user, two_months, ingest
):
    from billing.services import charge_reject

    first = dashboard(admin_client, "2026-10").context["figures"]["currencies"][0]
    assert first["rejected_count"] == 0
    target = Charge.objects.filter(period__key="2026-10", review_status="flagged").order_by("id")[
        :1
    ]
    amount = target[0].billed_cost
    charge_reject(
        charges=Charge.objects.filter(pk=target[0].pk), acting_user=admin_user, note="dup"
    )
    after = dashboard(admin_client, "2026-10").context["figures"]["currencies"][0]
    assert after["rejected_count"] == 1
    assert after["flagged_count"] == first["flagged_count"] - 1
    assert after["billed"].exact_value == first["billed"].exact_value - amount

    ingest(SAMPLES / "aws_2026-10_restated.csv", source="aws", extra=("-p", "2026-10"))
    restated = dashboard(admin_client, "2026-10").context["figures"]["currencies"][0]
    summary = period_summary(BillingPeriod.objects.get(key="2026-10"))
    assert restated["billed"].exact_value == Decimal(summary["totals"]["USD"]["billed"])
    assert restated["billed"].value != after["billed"].value


# ---- warming the figures after a change -------------------------------------------------------


def _charge_group_bys(queries) -> list[str]:
    return [q["sql"] for q in queries if "GROUP BY" in q["sql"] and "billing_charge" in q["sql"]]


@pytest.mark.django_db(transaction=True)
def test_the_warm_up_task_computes_what_the_dashboard_reads(ingest):
    """Run by a worker after an import or decision: the next view runs no GROUP BY."""
    from billing.dashboard import dashboard_context
    from billing.tasks import warm_period_figures

    ingest(SAMPLES / "aws_2026-10.csv", source="aws")
    period = BillingPeriod.objects.get(key="2026-10")
    cache.clear()
    with CaptureQueriesContext(connection) as cold:
        expected = dashboard_context("2026-10")["figures"]
    assert _charge_group_bys(cold.captured_queries)  # nothing cached: the view computes
    cache.clear()

    assert warm_period_figures.apply(args=[[period.pk]]).get() == ["2026-10"]
    with CaptureQueriesContext(connection) as warm:
        figures = dashboard_context("2026-10")["figures"]

    assert _charge_group_bys(warm.captured_queries) == []
    assert figures == expected


def test_changes_queue_a_warm_up_only_when_workers_run_tasks(
    ingest, monkeypatch, django_capture_on_commit_callbacks
):
    from billing import tasks
    from billing.services import charge_reject, figures, period_close

    queued = []
    monkeypatch.setattr(tasks.warm_period_figures, "delay", queued.append)
    with django_capture_on_commit_callbacks(execute=True):  # eager (no broker): nothing queued
        ingest(SAMPLES / "aws_2026-09.csv", source="aws")
    assert queued == []

    # As with workers. (Not by changing the Celery app's setting: a fixture restores that one,
    # and a second restore could leave every later test with the wrong value.)
    monkeypatch.setattr(figures, "tasks_run_in_process", lambda: False)
    with django_capture_on_commit_callbacks(execute=True):
        ingest(SAMPLES / "aws_2026-10.csv", source="aws")
    october = BillingPeriod.objects.get(key="2026-10")
    assert queued == [[october.pk]]

    with django_capture_on_commit_callbacks(execute=True):  # the same file: unchanged
        ingest(SAMPLES / "aws_2026-10.csv", source="aws")
    with django_capture_on_commit_callbacks(execute=True):
        charge_reject(charges=Charge.objects.filter(period=october, flags__gt=0), note="test")
        period_close(key="2026-10")
    assert queued == [[october.pk], [october.pk], [october.pk]]


@pytest.mark.django_db(transaction=True)  # the warming runs after commit
def test_registered_warmers_run_after_billings_own_and_one_failing_stops_nothing(
    ingest, admin_user, monkeypatch, caplog
):
    """What a higher app registers (`register_figures_warmer`) is warmed with the period's
    figures: after an import without workers, and by the task after any change with them. A
    warmer that fails is logged; the next one, billing's figures and the import go on."""
    from billing import tasks
    from billing.dashboard import dashboard_context
    from billing.services import charge_reject, charge_return, figures, register_figures_warmer

    seen = []

    def broken(period):
        raise RuntimeError("cache down")

    monkeypatch.setattr(figures, "_FIGURES_WARMERS", [])
    for warmer in (broken, seen.append, broken):  # the same one twice is registered once
        register_figures_warmer(warmer)
    assert figures._FIGURES_WARMERS == [broken, seen.append]

    receipt = ingest(SAMPLES / "aws_2026-10.csv", source="aws")
    assert receipt["status"] == "imported"
    october = BillingPeriod.objects.get(key="2026-10")
    assert [p.pk for p in seen] == [october.pk]
    assert "warming test_registered_warmers" in caplog.text  # which one, and why
    assert "RuntimeError: cache down" in caplog.text
    with CaptureQueriesContext(connection) as queries:
        dashboard_context("2026-10")
    assert _charge_group_bys(queries.captured_queries) == []  # billing's own were warmed

    target = Charge.objects.filter(period=october, review_status="flagged").order_by("id")[:1]
    target = Charge.objects.filter(pk=target[0].pk)
    charge_reject(charges=target, note="test", acting_user=admin_user)
    assert len(seen) == 1  # no workers: a decision warms nothing (the first view computes)

    monkeypatch.setattr(figures, "tasks_run_in_process", lambda: False)  # as with workers
    monkeypatch.setattr(tasks.warm_period_figures, "delay", tasks.warm_period_figures)
    charge_return(charges=target, acting_user=admin_user)
    assert [p.pk for p in seen] == [october.pk, october.pk]


def test_the_y_axis_uses_one_unit_for_every_label():
    """A 15k axis reads 0, 5k, 10k, 15k: never "15k" beside "5,000"; a small one has no unit."""

    def labels(highest: str) -> list[str]:
        points = [
            {"key": f"2026-{m:02d}", "billed": Decimal(0), "list": Decimal(0), "selected": False}
            for m in range(1, 13)
        ]
        points[-1]["list"] = Decimal(highest)
        svg = trend_svg(points, "USD")
        grid = svg.split('<g class="grid"', 1)[1].split("</g>", 1)[0]
        return re.findall(r'class="label">([^<]+)</text>', grid)

    assert labels("14200.10") == ["0", "5k", "10k", "15k"]
    assert labels("4800") == ["0", "2,000", "4,000", "6,000"]
    assert labels("2400000") == ["0", "1M", "2M", "3M"]


def test_top_lists_end_with_others_and_a_total_equal_to_the_card(
    admin_client, two_months, monkeypatch
):
    monkeypatch.setattr("billing.selectors.dashboard.TOP", 2)
    figures = dashboard(admin_client, "2026-10").context["figures"]
    (card,) = figures["currencies"]
    for key in ("top_pis", "top_projects"):
        rows = figures[key]
        named, others, total = rows[:2], rows[2], rows[3]
        assert len(rows) == 4 and all(r.get("kind") is None for r in named)
        assert others["kind"] == "others" and others["label"].endswith(" others")
        assert total["kind"] == "total"
        assert sum(r["billable"].value for r in (*named, others)) == card["billable"].value
        assert total["billable"].value == card["billable"].value
        assert sum(r["count"] for r in (*named, others)) == card["billable_count"]
