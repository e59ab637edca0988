"""`openchargeback accounts`: the account map on the command line. A file (the admin's CSV or the
earlier tool's accounts.json) is loaded whole or not at all, every bad row named by its line;
each entry is saved with its audit event, as in the admin."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import AuditEvent
from billing.admin import AccountMappingResource
from billing.models import AccountMapping, Source

pytestmark = pytest.mark.django_db

EARLIER = {
    "accounts": {
        "smithPrj": {"piEmail": "smith@example.edu", "projectId": "smith-lab",
                     "fundOrg": "NIH-2024-001", "costCenter": "CC-9"},
        "adaLab": {"piEmail": "ada@example.edu", "piName": "Ada Lovelace", "projectId": "engines",
                   "fundOrg": "MATH-1843"},
    }
}  # fmt: skip


def run(*args) -> str:
    out = io.StringIO()
    call_command("accounts", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_the_earlier_tools_accounts_json_loads_audited_and_lists(tmp_path):
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps(EARLIER, indent=2))
    assert "2 added, 0 changed, 0 unchanged" in run("load", str(path))
    smith = AccountMapping.objects.get(account_id="smithPrj")
    assert (smith.source, smith.pi_email, smith.project_id, smith.fund_org, smith.cost_center) == (
        None, "smith@example.edu", "smith-lab", "NIH-2024-001", "CC-9"
    )  # fmt: skip
    saves = AuditEvent.objects.filter(action="account_mapping.save")
    assert sorted(e.after["account_id"] for e in saves) == ["adaLab", "smithPrj"]
    assert AuditEvent.objects.get(action="account_mapping.import").details == {
        "created": 2, "updated": 0, "unchanged": 0
    }  # fmt: skip
    assert "0 added, 0 changed, 2 unchanged" in run("load", str(path))

    listing = run("list")
    assert "adaLab" in listing and "Ada Lovelace" in listing and "(any)" in listing
    rows = json.loads(run("list", "--json"))
    assert [r["account_id"] for r in rows] == ["adaLab", "smithPrj"]


def test_bad_rows_are_refused_with_their_lines_and_nothing_is_loaded(tmp_path):
    Source.objects.create(name="aws")
    path = tmp_path / "map.csv"
    path.write_text(
        "source,account_id,pi_email,fund_org\n"
        "aws,111122223333,ada@example.edu,MATH-1843\n"
        ",,bob@example.edu,PHYS-1\n"  # line 3: no account
        "gcp,444455556666,cy@example.edu,X-1\n"  # line 4: no such source
        "aws,777788889999,not-an-email,X-2\n"  # line 5
        "aws,111122223333,ada@example.edu,MATH-1843\n"  # line 6: twice
        "aws,1,2\n"  # line 7: short
    )
    with pytest.raises(CommandError) as refused:
        run("load", str(path))
    message = str(refused.value)
    assert "nothing was loaded" in message
    for line in (
        "line 3: account_id: This field cannot be blank.",
        "line 4: no source named 'gcp'",
        "line 5: pi_email: Enter a valid email address.",
        "line 6: account '111122223333' again (first on line 2)",
        "line 7: 3 fields, the header has 4",
    ):
        assert line in message
    assert not AccountMapping.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="account_mapping").exists()

    path.write_text("account,pi_email\n1,a@example.edu\n")
    with pytest.raises(CommandError, match="line 1: the header must name account_id"):
        run("load", str(path))


def test_an_accounts_json_entry_with_other_keys_is_refused_naming_the_known_ones(tmp_path):
    """The earlier tool's keys are camelCase: a file written with the CSV's column names is
    refused by its line, with the keys the format knows, and loads nothing."""
    path = tmp_path / "accounts.json"
    path.write_text(
        '{"accounts": {\n'
        '  "smithPrj": {"piEmail": "smith@example.edu", "projectId": "smith-lab"},\n'
        '  "curieLab": {"pi_email": "curie@example.edu", "project_id": "radium"}\n'
        "}}\n"
    )
    with pytest.raises(CommandError) as refused:
        run("load", str(path))
    assert (
        "line 3: unknown key(s) pi_email, project_id; known: piEmail, piName, projectId, "
        "fundOrg, costCenter, note"
    ) in str(refused.value)
    assert not AccountMapping.objects.exists()


def test_a_changed_entry_needs_update_and_a_missing_column_changes_nothing(tmp_path):
    aws = Source.objects.create(name="aws")
    AccountMapping.objects.create(
        source=aws, account_id="111122223333", pi_email="ada@example.edu", project_id="engines",
        fund_org="MATH-1843",
    )  # fmt: skip
    path = tmp_path / "map.csv"
    path.write_text("account_id,fund_org\n111122223333,MATH-2000\n")
    with pytest.raises(CommandError, match=r"fund_org 'MATH-1843' → 'MATH-2000'"):
        run("load", str(path), "--source", "aws")
    assert "0 added, 1 changed" in run("load", str(path), "--source", "aws", "--update")
    entry = AccountMapping.objects.get()
    assert (entry.fund_org, entry.project_id, entry.pi_email) == (
        "MATH-2000", "engines", "ada@example.edu"
    )  # fmt: skip
    change = AuditEvent.objects.get(action="account_mapping.save")
    assert (change.before["fund_org"], change.after["fund_org"]) == ("MATH-1843", "MATH-2000")
    assert change.details == {"changed": ["fund_org"]}


def test_the_admins_csv_export_loads_back_unchanged(tmp_path):
    aws = Source.objects.create(name="aws")
    AccountMapping.objects.create(
        source=aws, account_id="111122223333", pi_email="ada@example.edu", pi_name="Ada",
        fund_org="=HYPERLINK(1)", note="-rm",
    )  # fmt: skip
    path = tmp_path / "export.csv"
    path.write_text(AccountMappingResource().export().csv)
    assert "0 added, 0 changed, 1 unchanged" in run("load", str(path))
