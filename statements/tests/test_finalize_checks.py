"""Finalize checks are registered with billing by statements and journals (billing imports
neither), and finalize waits for statement emails in flight."""

from __future__ import annotations

from pathlib import Path

import pytest

from billing.models import BillingPeriod
from billing.services import PeriodError, period_finalize
from billing.services import periods as period_services
from journals.selectors import period_has_journal
from statements.models import Statement, StatementEmail, StatementRun
from statements.selectors import period_emails_settled, period_has_statements


def test_billing_services_import_neither_statements_nor_journals():
    services = Path(period_services.__file__).resolve().parent
    for path in services.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for app in ("statements", "journals"):
            assert f"from {app}" not in text and f"import {app}" not in text, path


def test_statements_and_journals_register_their_checks():
    checks = [check for check, _ in period_services._FINALIZE_CHECKS]
    assert period_has_statements in checks
    assert period_emails_settled in checks
    assert period_has_journal in checks
    before = len(period_services._FINALIZE_CHECKS)
    period_services.register_finalize_check(period_has_journal, "again")
    assert len(period_services._FINALIZE_CHECKS) == before


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["pending", "queued", "sending"])
def test_finalize_refused_while_statement_emails_are_in_flight(status, monkeypatch):
    from billing.models import PI, Project

    period = BillingPeriod.objects.create(key="2025-01", status="closed")
    monkeypatch.setattr(
        period_services,
        "_FINALIZE_CHECKS",
        [
            (check, message)
            for check, message in period_services._FINALIZE_CHECKS
            if check is period_emails_settled
        ],
    )
    pi = PI.objects.create(email="ada@example.edu")
    project = Project.objects.create(code="engines")
    run = StatementRun.objects.create(period=period, actor="test")
    statement = Statement.objects.create(
        period=period, pi=pi, project=project, fund_org="A-1", currency="USD",
        number="ST-202501-00001", base_number="ST-202501-00001", issued_on="2025-02-01",
        list_amount=1, discount_amount=0, due_amount=1, is_draft=False, status="queued",
    )  # fmt: skip
    email = StatementEmail.objects.create(run=run, pi=pi, to_address=pi.email, status=status)
    email.statements.add(statement)
    with pytest.raises(PeriodError, match="statement emails are still waiting or being sent"):
        period_finalize(key="2025-01")
    StatementEmail.objects.filter(pk=email.pk).update(status="sent")
    assert period_finalize(key="2025-01").status == "finalized"
