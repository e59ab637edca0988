"""The statement PDF as a reader sees it: its extracted text."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from billing.models import PI, Project
from statements.figures import Line, Section, StatementFigures, _allocate
from statements.pdf import PdfData, quantity_text, render_pdf
from statements.services import statement_generate

from .conftest import pdf_pages, pdf_text

D = Decimal


def test_reference_statement_shows_what_the_issue_asks(january, config):
    result = statement_generate(period_key="2025-01", config=config)
    frin = next(s for s in result.statements if s["pi_email"] == "frin.bumberly@example.edu")
    text = pdf_text(frin["pdf"])
    for expected in [
        "Example University Research Computing",
        frin["number"],
        "January 2025 (2025-01)",
        "Issue date",
        "frin.bumberly@example.edu",
        "cfd-turbulence",
        "ENGR-STARTUP",
        "USD 3,665.00",  # list
        "USD 3,660.00",  # discount
        "USD 5.00",  # amount due
        "99.86%",
        "covered USD 3,660.00 (99.86%) of the list price of USD 3,665.00",
        "Charges by service",
        "HPC Cluster",
        "Detail by resource",
        "cfd-les-runs",
        "Contact rc-billing@example.edu",
        "Page 1 of 1",
    ]:
        assert expected in text, expected
    zorp = next(s for s in result.statements if s["project"] == "genomics-sequencing")
    text = pdf_text(zorp["pdf"])
    assert "NSF-DBI-2025-0410" in text and "Grant number" in text
    assert "REQ-2025-00077" in text


pytestmark = pytest.mark.django_db(transaction=True)


def _project_with_lines(make_charges, n: int):
    pi = PI.objects.create(email="big@example.edu", name="Bea Big")
    project = Project.objects.create(code="big-project")
    costs = [D("1234.5678901234") + i for i in range(n)]
    charges = make_charges(
        costs,
        pi=pi,
        project=project,
        fund_org="BIG-1",
        service_name="Amazon EC2",
        list_cost=D("2000"),
        consumed_quantity=D("1.5"),
        consumed_unit="Hours",
    )
    from billing.models import Charge

    for i, c in enumerate(charges):  # one resource each: n detail lines
        Charge.objects.filter(pk=c.pk).update(
            resource_id=f"i-{i:05d}", resource_name=f"node-{i:05d}"
        )
    return costs


@pytest.mark.parametrize("n", [100, 5000])
def test_big_projects_run_to_several_pages_with_headers_and_numbers(make_charges, config, n):
    costs = _project_with_lines(make_charges, n)
    result = statement_generate(period_key="2025-01", config=config)
    (s,) = result.statements
    pages = pdf_pages(s["pdf"])
    assert len(pages) > 1 + n // 60
    total = len(pages)
    for number, page in enumerate(pages, start=1):
        assert f"Page {number} of {total}" in page
        assert "DRAFT" in page
    # The detail table's header is repeated on every page it runs over.
    detail_pages = [p for p in pages[1:] if "node-" in p]
    assert detail_pages and all("Resource" in p and "Due (USD)" in p for p in detail_pages)
    due = sum(costs, D(0)).quantize(D("0.01"))
    text = "\n".join(pages)
    assert f"USD {due:,.2f}" in text
    assert f"node-{n - 1:05d}" in text and "1.5 Hours" in text
    assert s["amount_due"] == str(due)


def _figures(lines: int) -> StatementFigures:
    f = StatementFigures(1, 1, "X-1", "USD", pi_email="a@example.edu", project_code="p")
    section = Section("usage", "Amazon EC2", "Amazon EC2")
    for i in range(lines):
        section.lines.append(
            Line(
                "Amazon EC2",
                f"i-{i}",
                f"vm-{i}",
                "Hours",
                D("720"),
                720,
                D("0.0416666667") * 720,
                D("0.05") * 720,
            )
        )
    f.sections.append(section)
    _allocate(f)
    return f


def test_a_one_page_statement_is_deterministic():
    f = _figures(15)
    data = PdfData(
        institution="RC",
        number="ST-1",
        period_key="2025-01",
        issued_on=date(2025, 2, 1),
        currency="USD",
        pi_email="a@example.edu",
        project_code="p",
        fund_org="X-1",
        list_amount=f.list_amount,
        due_amount=f.due_amount,
        sections=f.sections,
    )
    first = render_pdf(data)
    assert render_pdf(data) == first  # same statement, same bytes, same hash
    assert len(pdf_pages(first)) == 1
    # Its speed is bench/statements_bench.py's to measure, not a test's.


def test_quantities_are_readable():
    assert quantity_text(D("1234567.5000"), "GB-Hours") == "1,234,567.5 GB-Hours"
    assert quantity_text(D("0.0004"), "Hours") == "0 Hours"
    assert quantity_text(None, "Hours") == ""


def test_a_group_summing_to_minus_0_004_shows_0_00_never_minus(make_charges, config):
    pi = PI.objects.create(email="zero@example.edu", name="Zed Zero")
    project = Project.objects.create(code="zero-project")
    make_charges(
        [D("1.006"), D("-1.010")],
        pi=pi,
        project=project,
        fund_org="ZERO-1",
        service_name="Amazon EC2",
    )

    result = statement_generate(period_key="2025-01", config=config)

    (s,) = result.statements
    text = pdf_text(s["pdf"])
    assert s["amount_due"] == "0.00"
    assert "-0.00" not in text
    assert "USD 0.00" in text
