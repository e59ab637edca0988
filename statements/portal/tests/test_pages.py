"""What the owner sees on each portal page: the statement's figures and lines, the open month
with its flagged charges marked, and the CSV of her own charges (exact, formula-safe)."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from statements.models import StatementLine

pytestmark = pytest.mark.django_db


def _text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def test_statement_list_shows_list_discount_due_and_pdf(world, client):
    client.force_login(world.ada_user)
    page = _text(client.get(f"/portal/pi/{world.ada.pk}/"))
    s = world.ada_statement
    # list = 3 × 2,000.00 + 7.25 (no ListCost: billed); due = 1,271.7599 rounded once.
    assert s.list_amount == Decimal("6007.25") and s.due_amount == Decimal("1271.76")
    assert "USD 6,007.25" in page and "USD 4,735.49" in page and "USD 1,271.76" in page
    assert f"/portal/statements/{s.pk}/pdf/" in page
    assert world.bob_statement.number not in page and "99.99" not in page


def test_statement_detail_lines_add_up_to_the_totals(world, client):
    client.force_login(world.ada_user)
    page = _text(client.get(f"/portal/statements/{world.ada_statement.pk}/"))
    assert world.ada_statement.number in page and "MATH-1843" in page
    assert "Compute" in page and "Storage" in page and "engine-sim-01" in page
    lines = StatementLine.objects.filter(statement=world.ada_statement, kind="detail")
    assert sum(line.due_amount for line in lines) == world.ada_statement.due_amount
    for line in lines:
        assert f"{line.due_amount:,.2f}" in page


def test_open_month_marks_flagged_charges_under_review(world, client):
    client.force_login(world.ada_user)
    page = _text(client.get(f"/portal/pi/{world.ada.pk}/open/"))
    assert "2025-02" in page
    # 3.333 + 3.333 = 6.666 → 6.67 billable so far; the flagged 50.00 is under review.
    assert '<th scope="row" colspan="3">Billable so far</th><td class="num">6.67</td>' in page
    assert "under review" in page and "1 charge is being checked" in page
    assert "Under review (not billed yet)" in page and "50.00" in page
    # January is on its statement: not repeated here.
    assert "2025-01" not in page


def test_csv_has_only_her_charges_exact_and_formula_safe(world, client, make_charges):
    client.force_login(world.delegate)
    response = client.get(f"/portal/pi/{world.ada.pk}/charges/2025-01.csv")
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    body = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert len(rows) == 4
    assert {r["billed_cost"] for r in rows} == {"10.005", "20.0049", "1234.5", "7.25"}
    assert sum(Decimal(r["billed_cost"]) for r in rows) == Decimal("1271.7599")
    assert {r["project_id"] for r in rows} == {"engines"}
    # A cell a spreadsheet would run as a formula, delivered this month, is written as text.
    make_charges(
        [Decimal("1.00")],
        period=world.february,
        pi=world.ada,
        project=world.ada_statement.project,
        fund_org="MATH-1843",
        service_name="Storage",
        resource_id='=HYPERLINK("http://evil")',
        billing_period_start=datetime(2025, 2, 1, tzinfo=UTC),
    )
    feb = b"".join(
        client.get(f"/portal/pi/{world.ada.pk}/charges/2025-02.csv").streaming_content
    ).decode()
    feb_rows = list(csv.DictReader(io.StringIO(feb)))
    evil = next(r for r in feb_rows if r["service"] == "Storage")
    assert evil["resource_id"] == '\'=HYPERLINK("http://evil")'
    statuses = [r["status"] for r in feb_rows]
    assert sorted(statuses) == ["billable", "billable", "billable", "under review"]


def test_csv_of_an_unknown_period_is_a_404(world, client):
    client.force_login(world.ada_user)
    assert client.get(f"/portal/pi/{world.ada.pk}/charges/2024-13.csv").status_code == 404


def test_profile_lists_delegates_and_grants_with_an_email(
    world, client, mailoutbox, django_capture_on_commit_callbacks
):
    client.force_login(world.ada_user)
    page = _text(client.get("/portal/profile/"))
    assert "grants@example.edu" in page and "former@example.edu" in page and "revoked" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/portal/profile/delegates/", {"email": "Lab.Manager@Example.edu"})
    assert response.status_code == 302
    assert [m.to for m in mailoutbox] == [["lab.manager@example.edu"]]
    assert "/accounts/password/reset/" in mailoutbox[0].body
    again = client.post("/portal/profile/delegates/", {"email": "lab.manager@example.edu"})
    assert again.status_code == 400 and b"already a delegate" in again.content
    self_grant = client.post("/portal/profile/delegates/", {"email": "ada@example.edu"})
    assert self_grant.status_code == 400


def test_pages_load_no_inline_script_and_send_a_strict_csp(world, client):
    client.force_login(world.ada_user)
    for url in (
        f"/portal/pi/{world.ada.pk}/",
        f"/portal/statements/{world.ada_statement.pk}/",
        f"/portal/pi/{world.ada.pk}/open/",
        "/portal/profile/",
    ):
        response = client.get(url)
        assert b"<script" not in response.content
        csp = response["Content-Security-Policy"]
        assert (
            "script-src 'self'" in csp
            and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
        )
        assert response["X-Frame-Options"] == "DENY"
