"""Finalizing a period: when it's allowed, and that afterwards every write path refuses."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management.base import CommandError

from billing.ingest.errors import ImportRefused
from billing.models import BillingPeriod, Charge
from billing.services import (
    PeriodError,
    charge_approve,
    charge_reassign,
    charge_reject,
    charge_return,
    import_files,
    period_close,
    period_finalize,
    period_open,
)
from billing.services import periods as period_services
from billing.tasks import import_files_task

from .conftest import GOOD_TAGS, db_state

pytestmark = pytest.mark.django_db


@pytest.fixture
def month(ingest, write_focus):
    ingest(
        write_focus(
            [
                {"BilledCost": "10.00", "ResourceId": "clean", "Tags": GOOD_TAGS},
                {"BilledCost": "7.25", "ResourceId": "untagged", "Tags": ""},
            ]
        ),
        source="aws",
    )
    return BillingPeriod.objects.get(key="2025-01")


@pytest.fixture
def statements_and_journal_exist(monkeypatch):
    """Stand in for the statements and journal checks (their own tests cover them)."""
    monkeypatch.setattr(
        period_services,
        "_FINALIZE_CHECKS",
        [(lambda period: True, "statements"), (lambda period: True, "journal")],
    )


@pytest.fixture
def finalized(month, statements_and_journal_exist):
    charge_reject(charges=Charge.objects.filter(resource_id="untagged"), note="not ours")
    period_close(key="2025-01")
    period_finalize(key="2025-01", reason="signed off")
    return BillingPeriod.objects.get(key="2025-01")


def test_only_a_closed_period_can_be_finalized(month, statements_and_journal_exist):
    with pytest.raises(PeriodError, match="only a closed period"):
        period_finalize(key="2025-01")


def test_finalize_refused_while_anything_is_flagged(month, statements_and_journal_exist):
    period_close(key="2025-01")
    with pytest.raises(PeriodError, match="1 charge.* still flagged"):
        period_finalize(key="2025-01")
    assert BillingPeriod.objects.get(key="2025-01").status == "closed"


def test_finalize_refused_without_statements_and_journal(month, monkeypatch):
    monkeypatch.setattr(
        period_services,
        "_FINALIZE_CHECKS",
        [(lambda p: False, "no statements yet"), (lambda p: False, "no journal yet")],
    )
    charge_reject(charges=Charge.objects.filter(resource_id="untagged"), note="x")
    period_close(key="2025-01")
    with pytest.raises(PeriodError, match="no statements yet; no journal yet"):
        period_finalize(key="2025-01")


def test_finalize_is_audited(finalized):
    from accounts.models import AuditEvent

    event = AuditEvent.objects.get(action="period.finalize")
    assert (event.before, event.after, event.reason) == (
        {"status": "closed"},
        {"status": "finalized"},
        "signed off",
    )
    assert finalized.finalized_at is not None


# ---- every write path refuses a finalized period -----------------------------------------


def test_service_import_refused(finalized, write_focus, config):
    before = db_state()
    with pytest.raises(ImportRefused, match="finalized"):
        import_files(paths=[write_focus([{}])], source="aws", config=config)
    assert db_state() == before


def test_command_line_import_refused(finalized, write_focus, ingest):
    before = db_state()
    with pytest.raises(CommandError, match="finalized"):
        ingest(write_focus([{}]), source="aws")
    assert db_state() == before


def test_celery_task_import_refused(finalized, write_focus, config_path):
    before = db_state()
    with pytest.raises(ImportRefused, match="finalized"):
        # apply(): run the task here, as a worker would, even when a broker is configured.
        import_files_task.apply(
            kwargs={"paths": [str(write_focus([{}]))], "source": "aws", "config_path": config_path}
        ).get()
    assert db_state() == before


@pytest.mark.parametrize(
    "decide",
    [
        lambda qs, config: charge_approve(charges=qs),
        lambda qs, config: charge_reject(charges=qs, note="late"),
        lambda qs, config: charge_return(charges=qs),
        lambda qs, config: charge_reassign(charges=qs, config=config, fund_org="ENG-1"),
    ],
    ids=["approve", "reject", "return", "reassign"],
)
def test_review_services_refused(finalized, config, decide):
    before = db_state()
    with pytest.raises(PeriodError, match="finalized"):
        decide(Charge.objects.all(), config)
    assert db_state() == before


def test_review_command_refused(finalized, run):
    with pytest.raises(CommandError, match="finalized"):
        run("review", "reject", "-p", "2025-01", "--note", "late")
    with pytest.raises(CommandError, match="finalized"):
        run("review", "return", "--id", Charge.objects.get(resource_id="untagged").pk)


@pytest.mark.parametrize(
    "transition",
    [
        lambda: period_open(key="2025-01", reason="oops"),
        lambda: period_close(key="2025-01"),
        lambda: period_finalize(key="2025-01"),
    ],
    ids=["reopen", "close", "finalize"],
)
def test_period_services_refused(finalized, transition):
    with pytest.raises(PeriodError):
        transition()
    assert BillingPeriod.objects.get(key="2025-01").status == "finalized"


def test_periods_command_refused(finalized, run):
    with pytest.raises(CommandError, match="finalized"):
        run("periods", "reopen", "2025-01", "--reason", "oops")


@pytest.fixture
def boss(client, django_user_model, settings, config_path):
    settings.OPENCHARGEBACK_CONFIG = config_path
    client.force_login(django_user_model.objects.create_superuser("boss", "b@example.edu", "pw"))
    return client


def test_admin_review_action_refused(finalized, boss):
    pk = Charge.objects.get(resource_id="untagged").pk
    page = boss.post(
        "/admin/billing/reviewitem/?status=all",
        {"action": "return_to_queue", ACTION_CHECKBOX_NAME: [pk], "post": "yes"},
        follow=True,
    )
    assert "finalized" in page.content.decode()
    assert Charge.objects.get(pk=pk).review_status == "rejected"


def test_admin_period_action_and_edit_refused(finalized, boss):
    page = boss.post(
        "/admin/billing/billingperiod/",
        {"action": "reopen", ACTION_CHECKBOX_NAME: [finalized.pk], "post": "yes", "reason": "x"},
        follow=True,
    )
    assert "finalized" in page.content.decode()
    edit = boss.post(f"/admin/billing/billingperiod/{finalized.pk}/change/", {"key": "2025-02"})
    assert edit.status_code == 403
    assert BillingPeriod.objects.get(pk=finalized.pk).status == "finalized"


def test_review_command_refused_by_the_database_when_the_service_check_is_missing(
    finalized, run, monkeypatch
):
    """The database guard is the backstop: a service that forgot `period_writable` still gets a
    sentence naming the finalized period, not a traceback, and nothing changes."""
    from billing.services import review as review_services

    monkeypatch.setattr(
        review_services, "period_writable", lambda pk, **kw: BillingPeriod.objects.get(pk=pk)
    )
    before = db_state()
    with pytest.raises(CommandError, match="refused by the database: finalized period"):
        run("review", "reject", "--id", Charge.objects.get(resource_id="clean").pk, "--note", "x")
    assert db_state() == before
