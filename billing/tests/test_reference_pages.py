"""Sources and projects with their month totals and last import: the admin's list and change
pages, and `openchargeback sources list|show`."""

from __future__ import annotations

import json

import pytest
from django.core.management.base import CommandError

from billing.models import Import, Project, Source

pytestmark = pytest.mark.django_db

TAGS = json.dumps({"pi_email": "ada@example.edu", "project_id": "engines", "fund_org": "MATH-1843"})
OTHER = json.dumps({"pi_email": "ada@example.edu", "project_id": "looms", "fund_org": "MATH-1843"})


@pytest.fixture
def months(ingest, write_focus):
    """aws: 2025-01 (1,234.5 + 0.004, one untagged row flagged) and 2025-02 (7.125); hpc: one
    2025-02 row for another project."""
    ingest(
        write_focus(
            [
                {"BilledCost": "1234.5", "Tags": TAGS, "ResourceId": "a"},
                {"BilledCost": "0.004", "Tags": TAGS, "ResourceId": "b"},
                {"BilledCost": "5", "Tags": "{}", "ResourceId": "c"},
            ],
            name="aws-jan.csv",
        ),
        source="aws",
    )
    feb = {"BillingPeriodStart": "2025-02-01T00:00:00Z", "BillingPeriodEnd": "2025-03-01T00:00:00Z"}
    ingest(
        write_focus([{**feb, "BilledCost": "7.125", "Tags": TAGS}], name="aws-feb.csv"),
        source="aws",
    )
    ingest(
        write_focus([{**feb, "BilledCost": "3", "Tags": OTHER}], name="hpc-feb.csv"),
        source="hpc",
    )


def test_source_list_shows_the_latest_month_and_last_import(admin_client, months):
    Source.objects.create(name="azure", display_name="Added in the admin")
    page = admin_client.get("/admin/billing/source/").content.decode()
    aws_row = next(line for line in page.split("<tr") if ">aws<" in line)
    assert "2025-02 USD" in aws_row and ">7.13<" in aws_row and 'title="7.125"' in aws_row
    assert "never" not in aws_row
    azure_row = next(line for line in page.split("<tr") if ">azure<" in line)
    assert "never" in azure_row


def test_source_page_shows_its_month_totals_and_last_import(admin_client, months):
    aws = Source.objects.get(name="aws")
    latest = Import.objects.filter(source=aws).latest("created_at")
    page = admin_client.get(f"/admin/billing/source/{aws.pk}/change/").content.decode()
    table = page[page.index('class="month-totals"') :]
    rows = table.split("<tr>")[2:4]
    assert "2025-02" in rows[0] and ">7.13<" in rows[0]
    # 2025-01: three charges, one flagged; billed 1,239.504 → 1,239.50; billable 1,234.504.
    assert "2025-01" in rows[1]
    assert ">3<" in rows[1] and ">1<" in rows[1]
    assert ">1,239.50<" in rows[1] and 'title="1239.504"' in rows[1]
    assert ">1,234.50<" in rows[1] and 'title="1234.504"' in rows[1]
    assert f"/admin/billing/import/{latest.pk}/change/" in page


def test_project_pages_show_their_months_and_the_import_that_last_wrote_them(admin_client, months):
    listing = admin_client.get("/admin/billing/project/").content.decode()
    looms_row = next(line for line in listing.split("<tr") if ">looms<" in line)
    assert "2025-02 USD" in looms_row and ">3.00<" in looms_row

    engines = Project.objects.get(code="engines")
    page = admin_client.get(f"/admin/billing/project/{engines.pk}/change/").content.decode()
    table = page[page.index('class="month-totals"') :]
    assert ">1,234.50<" in table and ">7.13<" in table
    feb_aws = Import.objects.filter(source__name="aws").latest("created_at")
    assert f"/admin/billing/import/{feb_aws.pk}/change/" in page


def test_sources_list_and_show(run, run_json, config_path, months):
    listed = run_json("sources", "list", "-c", config_path)
    assert [s["name"] for s in listed] == ["aws", "azure", "hpc", "it_storage", "storage"]
    aws = listed[0]
    assert aws["defined_in"] == "configuration and database"
    assert aws["credit_fund_org"] == "IT-CLOUD-AWS"
    assert aws["last_import"].startswith("#")
    assert listed[1]["defined_in"] == "configuration" and listed[1]["last_import"] is None

    shown = run_json("sources", "show", "aws", "-c", config_path)
    assert [(m["period"], m["charges"], m["billed"]) for m in shown["months"]] == [
        ("2025-02", 1, "7.125"),
        ("2025-01", 3, "1239.504"),
    ]
    text = run("sources", "show", "aws", "-c", config_path)
    assert "Amazon Web Services" in text
    assert "USD     1,239.50" in text

    with pytest.raises(CommandError, match="no source named 'gcp' .*known: aws, azure"):
        run("sources", "show", "gcp", "-c", config_path)


def test_a_rejected_charge_leaves_a_sources_months_as_it_leaves_the_period(
    run_json, config_path, months
):
    from billing.models import Charge
    from billing.selectors import period_totals
    from billing.services import charge_reject

    result = charge_reject(
        charges=Charge.objects.filter(resource_id="c"), actor="finance", note="untagged test row"
    )
    assert result.count == 1
    shown = run_json("sources", "show", "aws", "-c", config_path)
    january = next(m for m in shown["months"] if m["period"] == "2025-01")
    # The flagged 5 rejected: 1,234.5 + 0.004 = 1,234.504 in two charges.
    assert (january["charges"], january["billed"]) == (2, "1234.504")
    period = Charge.objects.get(resource_id="c").period
    everything = period_totals(period)["USD"]["billed"]  # aws only in January
    assert str(everything) == january["billed"]
