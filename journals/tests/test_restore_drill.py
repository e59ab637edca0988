"""The restore drill: a backup of a finalized month, restored into an empty database, gives back
the same statements and, byte for byte, the same journal.

The month is run end to end through the services (import, review, close, generate and send,
export, finalize). The database is then backed up the way docs/operations.md says (pg_dump and
pg_restore on PostgreSQL, SQLite's online backup API otherwise) into a database of its own, and a
separate process, configured only through DATABASE_URL as a restored host would be, reads the
statements and renders the journal again from the restored rows. Nothing is compared with itself:
the figures come back from another database in another process.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from journals.models import JournalExport
from statements.models import Statement

from . import chaos_adapter as svc
from .chaos import focus_row, write_focus

PERIOD = "2026-03"
ADA = {"pi": "ada@example.edu", "project": "engines", "fund": "MATH-1843"}
BOB = {"pi": "bob@example.edu", "project": "looms", "fund": "PHYS-22"}

# Run in the restored database's own process: the statements on record and the journal rebuilt
# from the restored rows, with the export's own timestamp, as JSON on stdout.
READ_BACK = r"""
import json, sys
from pathlib import Path
import django
django.setup()
from billing.config import load_config
from billing.models import BillingPeriod
from journals.build import journal_build
from journals.models import JournalExport
from journals.services import _write_temp
from statements.models import Statement

period_key, folder = sys.argv[1], Path(sys.argv[2])
period = BillingPeriod.objects.get(key=period_key)
statements = {
    s.number: [str(s.list_amount), str(s.discount_amount), str(s.due_amount), s.charge_count,
               s.status, s.pi_email]
    for s in Statement.objects.filter(period=period)
}
export = JournalExport.objects.filter(period=period).latest("created_at")
journals = journal_build(
    period=period, template=export.template, config=load_config(), created_at=export.created_at
)
files = []
for journal in journals:
    temp, sha, size, rows = _write_temp(journal, export.template, folder)
    files.append({"path": str(temp), "sha256": sha, "rows": rows})
print(json.dumps({
    "status": period.status,
    "statements": statements,
    "export_sha256": export.sha256,
    "files": files,
}))
"""


@pytest.fixture
def finalized_month(month_config, tmp_path):
    from billing.config import load_config

    config_path = month_config()
    config = load_config(str(config_path))

    rows = [
        focus_row(PERIOD, "m-1", "1234.565", **ADA),
        focus_row(PERIOD, "m-2", "0.004", **ADA),
        focus_row(PERIOD, "m-3", "-12.30", **ADA),  # a credit
        focus_row(PERIOD, "m-4", "77.777", **BOB),
        focus_row(PERIOD, "m-5", "5.00", **{**BOB, "fund": "misc"}),  # fails the fund pattern
    ]
    path = write_focus(tmp_path / "aws_march.csv", rows)
    svc.import_files(paths=[path], source="aws", period=PERIOD, append=False, config=config)
    from billing.models import Charge

    svc.charge_reject(
        charges=Charge.objects.filter(resource_id="m-5"), actor="finance", note="no such fund"
    )
    svc.period_close(key=PERIOD, actor="finance")
    svc.statement_generate(period_key=PERIOD, send=True, config=config)
    export = svc.journal_export(period_key=PERIOD, template="gl", config=config)
    svc.period_finalize(key=PERIOD, actor="finance")
    return config_path, Path(export.files[0]["file"])


def _backup_and_restore(tmp_path) -> str:
    """Back the test database up and restore it into a new, empty one; returns its URL."""
    params = connection.settings_dict
    if connection.vendor == "postgresql":
        for tool in ("pg_dump", "pg_restore", "createdb", "dropdb"):
            if not shutil.which(tool):
                pytest.skip(f"{tool} is not installed")
        restored = f"{params['NAME']}_restored"
        auth = ["-h", params["HOST"] or "127.0.0.1", "-p", str(params["PORT"] or 5432)]
        auth += ["-U", params["USER"] or "postgres"]
        env = {**os.environ, "PGPASSWORD": params.get("PASSWORD") or ""}
        dump = tmp_path / "month.dump"
        subprocess.run(
            ["pg_dump", *auth, "-Fc", "-f", str(dump), params["NAME"]], check=True, env=env
        )
        subprocess.run(["dropdb", *auth, "--if-exists", restored], check=True, env=env)
        subprocess.run(["createdb", *auth, restored], check=True, env=env)
        subprocess.run(
            ["pg_restore", *auth, "--no-owner", "--exit-on-error", "-d", restored, str(dump)],
            check=True,
            env=env,
        )
        user = params["USER"] or "postgres"
        host = params["HOST"] or "127.0.0.1"
        return f"postgres://{user}@{host}:{params['PORT'] or 5432}/{restored}"
    target = tmp_path / "restored.sqlite3"
    connection.ensure_connection()
    with sqlite3.connect(target) as destination:
        connection.connection.backup(destination)
    destination.close()
    return f"sqlite:///{target}"


def _read_back(url: str, config_path: Path, folder: Path) -> dict:
    folder.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "openchargeback.settings",
        "DJANGO_DEBUG": "1",
        "OPENCHARGEBACK_CONFIG": str(config_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", READ_BACK, PERIOD, str(folder)],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.django_db(transaction=True)
def test_a_restored_backup_gives_back_the_statements_and_the_journal_bytes(
    finalized_month, tmp_path
):
    config_path, journal_file = finalized_month
    before = {
        s.number: [
            str(s.list_amount),
            str(s.discount_amount),
            str(s.due_amount),
            s.charge_count,
            s.status,
            s.pi_email,
        ]
        for s in Statement.objects.filter(period__key=PERIOD)
    }
    record = JournalExport.objects.filter(period__key=PERIOD).latest("created_at")
    # The month on record: Ada 1234.565 + 0.004 - 12.30 = 1222.269 -> 1222.27; Bob 77.777 -> 77.78.
    dues = sorted(Decimal(v[2]) for v in before.values())
    assert dues == [Decimal("77.78"), Decimal("1222.27")]

    url = _backup_and_restore(tmp_path)
    after = _read_back(url, config_path, tmp_path / "rebuilt")

    assert after["status"] == "finalized"
    assert after["statements"] == before
    assert after["export_sha256"] == record.sha256
    [rebuilt] = after["files"]
    assert rebuilt["sha256"] == record.sha256
    assert Path(rebuilt["path"]).read_bytes() == journal_file.read_bytes()
    if connection.vendor == "postgresql":
        params = connection.settings_dict
        subprocess.run(
            [
                "dropdb",
                "-h",
                params["HOST"] or "127.0.0.1",
                "-U",
                params["USER"] or "postgres",
                "--if-exists",
                f"{params['NAME']}_restored",
            ],
            check=False,
        )
