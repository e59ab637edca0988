"""Every CSV the product writes is formula-safe (openchargeback/csvsafe.py, the one rule): the
account map's import-export CSV, the audit export; numbers stay numbers; an exported account map
imports back unchanged."""

from __future__ import annotations

import csv
import io

import pytest
import tablib
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

from accounts.models import AuditEvent
from billing.admin import AccountMappingResource
from billing.models import AccountMapping
from openchargeback.csvsafe import neutralise, restore, safe_cell

pytestmark = pytest.mark.django_db

FORMULA = '=HYPERLINK("http://x","click")'


@pytest.fixture
def hostile_mapping(db):
    return AccountMapping.objects.create(
        account_id="-12.50",  # a number: stays a number
        pi_email="@SUM(1+1)@example.edu",
        project_id=FORMULA,
        fund_org="+cmd|' /C calc'!A0",
        cost_center="\uff1d1+1",  # full-width =
        note="-2+3",
    )


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_account_map_export_in_the_admin_writes_no_formula(admin_client, hostile_mapping):
    page = admin_client.get("/admin/billing/accountmapping/export/")
    fields = {
        name: "on" for name in page.context["form"].fields if name.startswith("accountmapping")
    }

    response = admin_client.post(
        "/admin/billing/accountmapping/export/",
        {"format": "0", "resource": "0", **fields},
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    (row,) = rows_of(response.content.decode("utf-8-sig"))
    assert row["project_id"] == "'" + FORMULA
    assert row["pi_email"] == "'@SUM(1+1)@example.edu"
    assert row["fund_org"] == "'+cmd|' /C calc'!A0"
    assert row["cost_center"] == "'\uff1d1+1"
    assert row["note"] == "'-2+3"
    assert row["account_id"] == "-12.50"


def test_an_exported_account_map_imports_back_unchanged(hostile_mapping):
    exported = AccountMappingResource().export()
    assert FORMULA not in [cell for row in exported for cell in row]
    before = list(AccountMapping.objects.values())

    data = tablib.Dataset().load(exported.csv, format="csv")
    result = AccountMappingResource().import_data(data, dry_run=False)

    assert not result.has_errors()
    assert list(AccountMapping.objects.values()) == before


def test_the_audit_export_is_formula_safe(admin_client):
    event = AuditEvent.objects.create(action="x", actor="\uff20admin", reason=FORMULA)

    response = admin_client.post(
        "/admin/accounts/auditevent/",
        {"action": "export_csv", ACTION_CHECKBOX_NAME: [event.pk]},
    )

    (row,) = rows_of(b"".join(response.streaming_content).decode())
    assert row["reason"] == "'" + FORMULA
    assert row["actor"] == "'\uff20admin"


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("-12.50", "-12.50"),
        ("-0.00", "-0.00"),
        ("+3", "+3"),
        ("-١٢٣", "'-١٢٣"),  # not an ASCII number: a spreadsheet doesn't read it as one
        ("\uff0dcmd", "'\uff0dcmd"),
        ("a=b", "a=b"),
    ],
)
def test_the_one_rule(cell, shown):
    assert neutralise(cell) == shown
    assert restore(neutralise(cell)) == cell
    assert safe_cell(cell + "\x00") == shown
    assert safe_cell(None) == ""
