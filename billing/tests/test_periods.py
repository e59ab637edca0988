"""The `periods` command: list, show (text and JSON), close, reopen with a reason, and the audit
trail of each transition."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.management.base import CommandError

from accounts.models import AuditEvent
from billing.models import BillingPeriod, Charge

from .conftest import db_state

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def january(ingest, write_focus):
    """2025-01 with three charges, one flagged (no tags), and one 2024-12 charge."""
    ingest(
        write_focus(
            [
                {"BilledCost": "10.00", "ListCost": "12.00"},
                {"BilledCost": "2.50", "ListCost": "3.00", "Tags": ""},
                {"BilledCost": "0.00000080000", "ListCost": ""},
                {"BillingPeriodStart": "2024-12-01", "BilledCost": "99.00"},
            ]
        ),
        source="aws",
    )


def test_list_with_no_periods(run):
    assert "No periods yet" in run("periods", "list")
    assert run("periods", "list", "--json").strip() == "[]"


def test_list_shows_each_period_with_counts(run, run_json, january):
    rows = run_json("periods", "list")
    text = run("periods", "list")

    assert rows == [
        {"period": "2025-01", "status": "open", "charges": 3, "flagged": 1},
        {"period": "2024-12", "status": "open", "charges": 1, "flagged": 0},
    ]
    lines = text.splitlines()
    assert lines[1].split() == ["2025-01", "open", "3", "1"]
    assert lines[2].split() == ["2024-12", "open", "1", "0"]


def test_show_json(run_json, january):
    summary = run_json("periods", "show", "2025-01")

    assert {"period", "status", "charges", "flagged", "totals"} <= set(summary)
    assert summary["period"] == "2025-01"
    assert summary["status"] == "open"
    assert summary["charges"] == 3
    assert summary["flagged"] == 1
    usd = summary["totals"]["USD"]
    assert {"billed", "list", "flagged_billed"} <= set(usd)
    assert D(usd["billed"]) == D("12.50000080000")
    assert D(usd["list"]) == D("15.00")
    assert D(usd["flagged_billed"]) == D("2.50")
    assert list(summary["totals"]) == ["USD"]


def test_show_excludes_rejected_charges_from_totals(run_json, january):
    # Setup: a reviewer's rejection (the review service is not under test here).
    Charge.objects.filter(billed_cost=D("2.50")).update(review_status="rejected")

    summary = run_json("periods", "show", "2025-01")

    assert summary["charges"] == 2
    assert summary["flagged"] == 0
    assert D(summary["totals"]["USD"]["billed"]) == D("10.00000080000")


def test_show_text(run, january):
    out = run("periods", "show", "2025-01")

    assert "Period 2025-01 (open)" in out
    assert "billed 12.50000080000" in out
    assert "flagged 2.50" in out


def test_show_unknown_period_is_refused(run):
    with pytest.raises(CommandError, match="2031-05 does not exist"):
        run("periods", "show", "2031-05")


def test_close_records_an_audit_event_and_stops_imports(
    run, run_json, january, ingest, write_focus
):
    out = run("periods", "close", "2025-01", "--reason", "invoiced")

    assert "Period 2025-01 is closed." in out
    period = BillingPeriod.objects.get(key="2025-01")
    assert period.status == "closed"
    assert period.closed_at is not None
    event = AuditEvent.objects.get(action="period.close")
    assert event.object_type == "billing.BillingPeriod"
    assert event.object_id == str(period.pk)
    assert event.before == {"status": "open"}
    assert event.after == {"status": "closed"}
    assert event.reason == "invoiced"
    assert event.actor
    assert run_json("periods", "show", "2025-01")["status"] == "closed"
    with pytest.raises(CommandError, match="2025-01"):
        ingest(write_focus([{}], name="late.csv"), source="aws")
    # Other months are not affected.
    assert BillingPeriod.objects.get(key="2024-12").status == "open"


def test_close_with_a_named_user_records_that_user(run, january, django_user_model):
    user = django_user_model.objects.create_user(username="controller")

    # --user belongs to the command, so it comes before the action.
    run("periods", "--user", "controller", "close", "2025-01")

    event = AuditEvent.objects.get(action="period.close")
    assert event.user == user
    assert event.actor == "controller"


def test_close_twice_is_refused(run, january):
    run("periods", "close", "2025-01")
    before = db_state()

    with pytest.raises(CommandError, match="closed"):
        run("periods", "close", "2025-01")
    assert db_state() == before
    assert AuditEvent.objects.filter(action="period.close").count() == 1


def test_close_unknown_period_is_refused(run):
    with pytest.raises(CommandError, match="does not exist"):
        run("periods", "close", "2031-05")
    assert not BillingPeriod.objects.exists()


def test_close_malformed_period_is_refused(run):
    with pytest.raises(CommandError, match="YYYY-MM"):
        run("periods", "close", "2025-13")


def test_reopen_needs_a_reason(run, january):
    run("periods", "close", "2025-01")

    with pytest.raises(CommandError, match="--reason"):
        run("periods", "open", "2025-01")
    with pytest.raises(CommandError, match="--reason"):
        run("periods", "open", "2025-01", "--reason", "   ")
    assert BillingPeriod.objects.get(key="2025-01").status == "closed"
    assert not AuditEvent.objects.filter(action="period.reopen").exists()

    out = run("periods", "open", "2025-01", "--reason", "late AWS credit")

    assert "Period 2025-01 is open." in out
    period = BillingPeriod.objects.get(key="2025-01")
    assert period.status == "open"
    assert period.closed_at is None
    event = AuditEvent.objects.get(action="period.reopen")
    assert event.reason == "late AWS credit"
    assert event.before == {"status": "closed"}
    assert event.after == {"status": "open"}


def test_reopened_period_takes_imports_again(run, january, ingest, write_focus):
    run("periods", "close", "2025-01")
    run("periods", "open", "2025-01", "--reason", "late AWS credit")

    receipt = ingest(write_focus([{"BilledCost": "-1.00"}], name="credit.csv"), source="aws")

    assert receipt["status"] == "replaced"
    assert Charge.objects.filter(period__key="2025-01").count() == 1


def test_open_creates_a_period(run, run_json):
    out = run("periods", "open", "2025-03")

    assert "Period 2025-03 is open." in out
    assert run_json("periods", "show", "2025-03") == {
        "period": "2025-03",
        "status": "open",
        "charges": 0,
        "flagged": 0,
        "rejected": 0,
        "totals": {},
    }
    assert AuditEvent.objects.filter(action="period.open").count() == 1


def test_open_an_open_period_is_refused(run, january):
    with pytest.raises(CommandError, match="already open"):
        run("periods", "open", "2025-01")


def test_finalized_period_can_never_be_reopened(run, january):
    # Setup: finalizing belongs to the statements app; the status is all that matters here.
    BillingPeriod.objects.filter(key="2025-01").update(status="finalized")

    with pytest.raises(CommandError, match="finalized"):
        run("periods", "open", "2025-01", "--reason", "please")
    with pytest.raises(CommandError, match="finalized"):
        run("periods", "close", "2025-01")
    assert BillingPeriod.objects.get(key="2025-01").status == "finalized"
