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


@pytest.mark.django_db
def test_statements_check_before_any_statement_exists_answers_without_adding_up_the_month():
    """A month being worked on has no statements: the check (on its period page every visit)
    answers from whether anything is billable, without the GROUP BY over the month's charges,
    and gives the same answer the full check gives."""
    from datetime import UTC, datetime

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from billing.models import PI, Charge, Import, ImportFile, Project, Source

    period = BillingPeriod.objects.create(key="2025-03", status="open")
    with CaptureQueriesContext(connection) as empty:
        assert period_has_statements(period) is True  # nothing billable, nothing to state
    source = Source.objects.create(name="aws")
    record = Import.objects.create(source=source, outcome=Import.Outcome.IMPORTED, actor="test")
    file = ImportFile.objects.create(
        import_run=record, name="aws.csv", sha256="0" * 64, size_bytes=0, rows=0
    )
    pi = PI.objects.create(email="ada@example.edu")
    project = Project.objects.create(code="engines")
    common = dict(
        source=source, period=period, import_file=file, line_number=2, billed_cost=1,
        list_cost=1, billing_currency="USD", pi=pi, project=project, fund_org="A-1",
        billing_period_start=datetime(2025, 3, 1, tzinfo=UTC),
    )  # fmt: skip
    Charge.objects.create(fingerprint="f" * 32, review_status="flagged", flags=1, **common)
    assert period_has_statements(period) is True  # a flagged charge is not billed
    Charge.objects.create(fingerprint="e" * 32, review_status="clean", **common)
    with CaptureQueriesContext(connection) as billable:
        assert period_has_statements(period) is False  # billable, and no statement yet
    for captured in (empty, billable):
        sql = " ".join(q["sql"] for q in captured.captured_queries).upper()
        assert "GROUP BY" not in sql and "SUM(" not in sql, sql
