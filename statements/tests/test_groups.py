"""statements.groups: the one home of a statement group and its rounded figures."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import PI, BillingPeriod, Project
from statements.figures import statement_figures
from statements.groups import PartSpec, statement_groups

D = Decimal


@pytest.mark.django_db
def test_groups_round_once_and_parts_allocate_to_the_statement(make_charges):
    pi = PI.objects.create(email="ada@example.edu", name="Ada")
    project = Project.objects.create(code="engines", name="Engines")
    make_charges([D("0.005")] * 3, pi=pi, project=project, fund_org="A-1", service_name="A")
    make_charges([D("0.005")] * 3, pi=pi, project=project, fund_org="A-1", service_name="B")
    make_charges([D("-0.004")], pi=pi, project=project, fund_org="B-2", service_name="A")
    period = BillingPeriod.objects.get(key="2025-01")
    spec = PartSpec(values={"service": "service_name"}, key=lambda row: row["service"])
    groups = statement_groups(period, parts=spec)
    figures = {f.key: f for f in statement_figures(period)}
    assert list(groups) == list(figures)  # same groups, same order
    for key, g in groups.items():
        assert (g.due_amount, g.list_amount) == (figures[key].due_amount, figures[key].list_amount)
        assert sum(g.allocation().values()) == g.due_amount
    a1 = groups[(pi.pk, project.pk, "A-1", "USD")]
    # 0.015 + 0.015 = 0.03 due; each part alone would round to 0.02 (0.04 in all).
    assert a1.due_amount == D("0.03") and a1.charge_count == 6
    assert a1.allocation() == {"A": D("0.02"), "B": D("0.01")}
    assert (a1.pi_email, a1.project_code, a1.project_name) == (
        "ada@example.edu",
        "engines",
        "Engines",
    )
    assert groups[(pi.pk, project.pk, "B-2", "USD")].due_amount == D("0.00")
