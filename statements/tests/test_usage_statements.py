"""Statements of converted HPC usage: the list price, the subsidy and allowance lines, the amount
due, in the PDF, the stored lines and the portal's sections. Figures worked by hand below."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal

import pytest
from django.core.management import call_command

from billing.models import AccountMapping, Rate, Source
from statements.models import Statement, StatementLine
from statements.selectors import statement_sections
from statements.services import statement_generate

from .conftest import pdf_text

pytestmark = pytest.mark.django_db(transaction=True)  # rendering runs after commit
D = Decimal

SACCT = """JobID|Account|User|Partition|State|Start|End|AllocCPUS|AllocTRES
1|ada-lab|ada|free|COMPLETED|2026-11-02T00:00:00|2026-11-02T10:00:00|4|cpu=4
2|grace-lab|grace|standard|COMPLETED|2026-11-03T00:00:00|2026-11-03T10:00:00|4|cpu=4
"""


@pytest.fixture
def hpc_month(tmp_path, config):
    Rate.objects.create(service="hpc-cpu", key="free", unit="core-hour",
                        effective_from=date(2026, 1, 1), list_price=D("0.05"),
                        subsidy_percent=D(100))  # fmt: skip
    Rate.objects.create(service="hpc-cpu", key="standard", unit="core-hour",
                        effective_from=date(2026, 1, 1), list_price=D("0.02"),
                        allowance_quantity=D(30), allowance_per="pi")  # fmt: skip
    hpc = Source.objects.create(name="hpc")
    AccountMapping.objects.create(source=hpc, account_id="ada-lab", pi_email="ada@example.edu",
                                  project_id="engines", fund_org="MATH-1843")  # fmt: skip
    AccountMapping.objects.create(source=hpc, account_id="grace-lab",
                                  pi_email="grace@example.edu", project_id="compilers",
                                  fund_org="NAVY-1952")  # fmt: skip
    path = tmp_path / "sacct.txt"
    path.write_text(SACCT)
    call_command("ingest", "--from", "slurm", str(path), "-s", "hpc", "-p", "2026-11",
                 stdout=io.StringIO())  # fmt: skip
    return statement_generate(period_key="2026-11", config=config)


def test_a_fully_subsidised_project_shows_list_subsidy_and_nothing_due(hpc_month):
    ada = next(s for s in hpc_month.statements if s["pi_email"] == "ada@example.edu")
    text = pdf_text(ada["pdf"])
    # 4 CPUs × 10 h = 40 core-hours × 0.05 = 2.00 at list; 100 % subsidy; 0.00 due.
    assert "USD 2.00" in text and "USD 0.00" in text
    assert "Subsidy (100%)" in text
    statement = Statement.objects.get(number=ada["number"])
    assert (statement.list_amount, statement.due_amount) == (D("2.00"), D("0.00"))
    reduction = StatementLine.objects.get(statement=statement, kind="reduction")
    assert (reduction.label, reduction.discount_amount) == ("Subsidy (100%)", D("2.00"))
    assert (reduction.list_amount, reduction.due_amount) == (0, 0)


def test_an_allowance_has_its_own_line(hpc_month):
    grace = next(s for s in hpc_month.statements if s["pi_email"] == "grace@example.edu")
    text = pdf_text(grace["pdf"])
    # 40 core-hours × 0.02 = 0.80 at list; the first 30 free (0.60); 0.20 due.
    assert "Allowance: first 30 core-hours included" in text
    statement = Statement.objects.get(number=grace["number"])
    assert (statement.list_amount, statement.due_amount) == (D("0.80"), D("0.20"))
    sections = statement_sections(statement)
    [reduction] = sections[0].reductions
    assert (reduction.kind, reduction.amount, reduction.quantity) == ("allowance", D("0.60"), 30)
    assert sections[0].discount_amount == D("0.60")
