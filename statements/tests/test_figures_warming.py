"""The period page's statements check, warmed with billing's figures after every change
(`register_figures_warmer`; docs/benchmarks.md, "Session 8"): its first view after an import
adds nothing up, and what it answers is the month's current figures."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.models import BillingPeriod, Charge
from billing.services import charge_reassign
from statements.selectors import cached_group_totals, group_totals, warm_group_totals

pytestmark = pytest.mark.django_db(transaction=True)  # figures are cached only outside one

CHECK = "Final statements generated for every PI and project"


def _charge_group_bys(queries) -> list[str]:
    return [q["sql"] for q in queries if "GROUP BY" in q["sql"] and "billing_charge" in q["sql"]]


def _period_page(client, period):
    """The period page's statements check, and the GROUP BYs over charges its view ran."""
    with CaptureQueriesContext(connection) as queries:
        page = client.get(f"/admin/billing/billingperiod/{period.pk}/change/")
    assert page.status_code == 200
    (check,) = [item for item in page.context["checklist"] if item["label"] == CHECK]
    return check["ok"], _charge_group_bys(queries.captured_queries)


@pytest.fixture
def with_statements(january, run, run_json, config_path):
    """2025-01 closed with its final statements generated: the check is done."""
    run("periods", "close", "2025-01")
    run_json("generate", "-p", "2025-01", "-c", config_path)
    return BillingPeriod.objects.get(key="2025-01")


def test_the_first_view_after_an_import_reads_the_warmed_check(
    with_statements, run, ingest, write_focus, admin_client
):
    period = with_statements
    run("periods", "open", "2025-01", "--reason", "a late delivery")
    cache.clear()  # nothing left over from before
    path = write_focus([{"BilledCost": "7.25", "ResourceId": "vm-late"}], name="late.csv")
    receipt = ingest(path, source="aws", extra=("-p", "2025-01", "--append"))
    assert receipt["status"] == "imported"

    # Warmed after the import committed (no workers: in-process): nothing is added up.
    ok, group_bys = _period_page(admin_client, period)
    assert group_bys == []
    assert ok is False  # the late charge is on no statement
    # What the cache answered is the month as it is now.
    cache_answer = cached_group_totals(period)
    cache.clear()
    assert cache_answer == group_totals(period)


def test_after_a_decision_the_check_is_never_stale(
    with_statements, run, config, admin_client, admin_user, monkeypatch
):
    """Without workers a decision warms nothing: the next view adds up again and sees it. With
    workers, the task warms the new figures, and the next view adds nothing up."""
    from billing import tasks
    from billing.services import figures

    period = with_statements
    run("periods", "open", "2025-01", "--reason", "reassign two charges")
    clean = Charge.objects.filter(period=period, review_status="clean").order_by("id")
    ok, _ = _period_page(admin_client, period)
    assert ok is True  # cached now
    charge_reassign(
        charges=Charge.objects.filter(pk=clean[0].pk), config=config, fund_org="MATH-9999",
        acting_user=admin_user,
    )  # fmt: skip
    ok, group_bys = _period_page(admin_client, period)
    assert ok is False and group_bys  # the version moved: added up afresh
    assert any(key[2] == "MATH-9999" for key in cached_group_totals(period))

    monkeypatch.setattr(figures, "tasks_run_in_process", lambda: False)  # as with workers
    monkeypatch.setattr(tasks.warm_period_figures, "delay", tasks.warm_period_figures)
    charge_reassign(
        charges=Charge.objects.filter(pk=clean[1].pk), config=config, fund_org="MATH-9998",
        acting_user=admin_user,
    )  # fmt: skip
    ok, group_bys = _period_page(admin_client, period)
    assert ok is False and group_bys == []  # warmed by the task
    warm = cached_group_totals(period)
    assert any(key[2] == "MATH-9998" for key in warm)
    cache.clear()
    assert warm == group_totals(period)


def test_a_month_without_statements_is_skipped_with_one_exists(january):
    period = BillingPeriod.objects.get(key="2025-01")
    cache.clear()
    with CaptureQueriesContext(connection) as queries:
        warm_group_totals(period)
    assert _charge_group_bys(queries.captured_queries) == []
    assert len(queries.captured_queries) == 1  # is a statement on record?
