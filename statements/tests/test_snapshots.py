"""Statements keep the text they print: renaming a PI or a project later changes no issued
statement (PDF data, portal, admin list, email)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import PI, Project
from billing.services import period_close
from statements.models import Statement, StatementEmail
from statements.selectors import statement_pdf_data
from statements.services import email_resend, statement_generate

from .conftest import mailed

pytestmark = pytest.mark.django_db(transaction=True)


def test_renaming_a_project_and_pi_after_sending_changes_no_issued_statement(
    make_charges, config_path, settings, admin_client
):
    from billing.config import load_config

    pi = PI.objects.create(email="ada@example.edu", name="Ada Lovelace")
    project = Project.objects.create(code="engines", name="Analytical Engines")
    make_charges([Decimal("12.34")], pi=pi, project=project, fund_org="ENGR-A1")
    period_close(key="2025-01")
    statement_generate(period_key="2025-01", send=True, config=load_config(config_path))
    statement = Statement.objects.get()
    assert (statement.pi_name, statement.project_code) == ("Ada Lovelace", "engines")

    Project.objects.filter(pk=project.pk).update(code="renamed", name="Something else")
    PI.objects.filter(pk=pi.pk).update(name="Someone Else")
    statement = Statement.objects.get()
    data = statement_pdf_data(statement)
    assert (data.pi_name, data.project_code, data.project_name) == (
        "Ada Lovelace",
        "engines",
        "Analytical Engines",
    )
    page = admin_client.get("/admin/statements/statement/").content.decode()
    assert "engines" in page and "renamed" not in page
    email_resend(email=StatementEmail.objects.get(), actor="test")
    body = mailed(settings.EMAIL_FILE_PATH)[-1].as_string()
    assert "engines" in body and "Ada Lovelace" in body
    assert "renamed" not in body and "Someone Else" not in body
