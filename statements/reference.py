"""A reference statement built without a database: for the layout tests and the PNGs in docs/.

Made of the same Section/Line figures the generator allocates (`_allocate` rounds once and
allocates every cent), so what it shows follows the statement rules: usage under services,
credits, a correction of an earlier month, resource names too long for their column. No random
numbers: line `i` costs what `i` says, so a render is the same every time.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

from .figures import Line, Section, StatementFigures, _allocate
from .pdf import PdfData

D = Decimal
SUBSIDY = D("0.35")  # the share of list price the reference institution covers
SERVICES = ("Amazon Elastic Compute Cloud", "HPC Cluster", "Amazon Simple Storage Service")
LONG_NAME = (
    "genomics-pipeline-variant-calling-worker-with-a-name-far-too-long-for-its-column-"
    "that-must-be-cut-with-an-ellipsis"
)


def reference_figures(lines: int, *, subsidy: Decimal = SUBSIDY) -> StatementFigures:
    """`lines` detail lines over up to three services, a credit and a correction (from 4 lines).

    `subsidy` is the share of the list price the institution covers (1 = nothing due).
    """
    f = StatementFigures(
        1,
        1,
        "NIH-R01-GM-0042",
        "USD",
        pi_email="philippa.snodgrass-vane@example.edu",
        pi_name="Philippa Snodgrass-Vane",
        project_code="genomics-sequencing",
        project_name="Population genomics sequencing",
    )
    lines = max(lines, 1)
    extra = [] if lines < 4 else ["credit", "correction"]
    usage = lines - len(extra)
    sections = {
        name: Section("usage", name, name) for name in SERVICES[: min(3, max(1, usage // 3))]
    }
    names = list(sections)
    for i in range(usage):
        service = names[i % len(names)]
        list_cost = D("1.2345678901") * (i % 97 + 1) + D(i) / 7
        billed = list_cost * (1 - subsidy)
        name = LONG_NAME if i % 11 == 3 else f"node-{i:05d}"
        unit = "Hours" if service != SERVICES[2] else "GB-Months"
        sections[service].lines.append(
            Line(service, f"i-{i:08x}", name, unit, D(i % 720) + D("0.5"), 1, billed, list_cost)
        )
    out = list(sections.values())
    if "credit" in extra:
        credit = Section("credit", "Credits")
        credit.lines.append(
            Line(SERVICES[0], "", "Research credit", "", None, 1, D(-25) * (1 - subsidy), D(-25))
        )
        out.append(credit)
    if "correction" in extra:
        fix = Section("correction", "Correction of December 2024", corrects_period="2024-12")
        fix.lines.append(
            Line(
                SERVICES[1],
                "cfd-les-runs",
                "cfd-les-runs",
                "Hours",
                D("-12"),
                1,
                D("-3.1234") * (1 - subsidy),
                D("-3.1234"),
            )
        )
        out.append(fix)
    f.sections = out
    _allocate(f)
    return f


def reference_data(lines: int = 90, *, subsidy: Decimal = SUBSIDY, **changes) -> PdfData:
    """The PDF data of a reference statement (`changes` override any PdfData field)."""
    f = reference_figures(lines, subsidy=subsidy)
    data = PdfData(
        institution="Example University Research Computing",
        number="ST-2025-01-00042",
        period_key="2025-01",
        issued_on=date(2025, 2, 3),
        currency=f.currency,
        pi_email=f.pi_email,
        pi_name=f.pi_name,
        project_code=f.project_code,
        project_name=f.project_name,
        fund_org=f.fund_org,
        list_amount=f.list_amount,
        due_amount=f.due_amount,
        sections=f.sections,
        references=[("Grant number", "R01 GM123456")],
        contact_email="rc-billing@example.edu",
    )
    return replace(data, **changes)
