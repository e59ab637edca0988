"""`openchargeback export-journal`: what it prints, where it writes, how it fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management.base import CommandError

from journals.models import JournalExport

from .conftest import read_dicts


def test_json_output_and_default_location(samples, config_path, run, instance_dir):
    out = json.loads(run("export_journal", "-p", "2025-01", "-c", config_path, "--json"))

    assert out["rows"] == 20
    assert out["debit_total"] == out["credit_total"] == {"USD": "20227.00"}
    path = Path(out["file"])
    assert path.is_file() and path.is_relative_to(instance_dir / "journals" / "2025-01")
    assert out["files"][0]["sha256"] == JournalExport.objects.get().sha256
    assert out["kind"] == "gl" and out["template"] == "gl"
    assert out["flagged_not_exported"] == 0


def test_output_file_template_name_and_user(samples, config_path, run, tmp_path, django_user_model):
    django_user_model.objects.create_user("fran")
    target = tmp_path / "out" / "summary.csv"
    target.parent.mkdir()

    text = run(
        "export_journal",
        "-p",
        "2025-01",
        "-f",
        "summary",
        "-o",
        target,
        "-c",
        config_path,
        "--user",
        "fran",
    )

    assert f"file: {target}" in text
    assert "USD: 10 rows, debits 20227.00, credits 20227.00" in text
    assert len(read_dicts(target)) == 10
    assert JournalExport.objects.get().actor == "fran"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("-p", "2025-01", "-f", "sap"), "no journal template named 'sap'"),
        (("-p", "2024-12"), "period 2024-12 does not exist"),
        (("-p", "2025-01", "--user", "nobody"), "no user named 'nobody'"),
    ],
)
def test_errors_are_messages_not_tracebacks(samples, config_path, run, args, words):
    with pytest.raises(CommandError, match=words):
        run("export_journal", *args, "-c", config_path)
    assert not JournalExport.objects.exists()


def test_flagged_charges_are_reported(load_rows, small_config_path, run):
    load_rows([{}, {"Tags": {"project_id": "x"}}])
    text = run("export_journal", "-p", "2025-01", "-c", small_config_path)
    assert "1 charge(s) still await review and are not in the journal" in text


def test_dry_run_checks_and_writes_nothing(samples, config_path, run, instance_dir):
    from accounts.models import AuditEvent

    out = json.loads(
        run("export_journal", "-p", "2025-01", "-c", config_path, "--dry-run", "--json")
    )
    assert not (instance_dir / "journals").exists()
    real = json.loads(run("export_journal", "-p", "2025-01", "-c", config_path, "--json"))

    assert out["status"] == "dry-run" and real["status"] == "exported"
    assert out["debit_total"] == {"USD": "20227.00"} and out["rows"] == 20
    assert out["files"][0]["sha256"] == real["files"][0]["sha256"]
    assert JournalExport.objects.count() == 1
    assert AuditEvent.objects.filter(action="journal.export").count() == 1
    files = [p for p in (instance_dir / "journals").rglob("*") if p.is_file()]
    assert files == [Path(real["file"])]


def test_dry_run_refusal_is_the_same_refusal(load_rows, small_config_path, run, instance_dir):
    load_rows([{}], source="nofund")
    with pytest.raises(CommandError, match="has no credit fund/org"):
        run("export_journal", "-p", "2025-01", "-c", small_config_path, "--dry-run")
    assert not (instance_dir / "journals").exists()
