"""The `openchargeback` command itself: the product's version, and what a command run before
`migrate` says."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def cli(*args, tmp_path) -> subprocess.CompletedProcess:
    """`openchargeback ARGS` in a fresh process, on an empty SQLite database under tmp_path."""
    drop = ("DATABASE_URL", "OPENCHARGEBACK_CONFIG")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(OPENCHARGEBACK_HOME=str(tmp_path / "instance"), DJANGO_DEBUG="1")
    return subprocess.run(
        [sys.executable, "-c", "from openchargeback.cli import main; main()", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("spelling", ["version", "--version"])
def test_version_is_the_products(tmp_path, spelling):
    result = cli(spelling, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"OpenChargeback {VERSION}\n"


@pytest.mark.parametrize(
    "args",
    [
        ("show", "ada@example.edu", "-p", "2025-01"),  # one of the product's commands
        ("sources", "list"),
        ("createsuperuser", "--noinput", "--username", "ada", "--email", "ada@example.edu"),
    ],
)
def test_a_command_before_migrate_says_to_migrate(tmp_path, args):
    result = cli(*args, tmp_path=tmp_path)
    assert result.returncode == 1
    assert "run `openchargeback migrate` first" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_secret_key_file_is_named_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.delenv("DJANGO_SECRET_KEY", raising=False)
    monkeypatch.setenv("DJANGO_SECRET_KEY_FILE", str(tmp_path / "no-such-key"))
    result = cli("periods", "list", tmp_path=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"DJANGO_SECRET_KEY_FILE={tmp_path / 'no-such-key'}: cannot read" in result.stderr


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args",
    [
        ("periods", "show", "2026-13"),
        ("periods", "close", "2026-1"),
        ("generate", "-p", "2026/10"),
        ("export_journal", "-p", "26-10"),
        ("review", "list", "-p", "Oct 2026"),
        ("show", "ada@example.edu", "-p", "2026-00"),
    ],
)
def test_every_month_argument_is_refused_by_its_format(args):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=r"must be YYYY-MM, got '"):
        call_command(*args)


@pytest.mark.django_db
def test_one_migration_not_applied_is_still_refused(monkeypatch):
    """Commands first compare the migration files with django_migrations (no migration graph to
    read); a file not recorded there sends them to the graph, which counts what is pending."""
    from django.core.management.base import CommandError
    from django.db import connection
    from django.db.migrations.recorder import MigrationRecorder

    from openchargeback import migrated

    monkeypatch.setattr(migrated, "_migrated", set())
    assert migrated.all_recorded()
    migrated.require_migrated()

    monkeypatch.setattr(migrated, "_migrated", set())
    recorded = MigrationRecorder(connection).migration_qs
    recorded.filter(app="journals").order_by("-name").first().delete()
    assert not migrated.all_recorded()
    with pytest.raises(CommandError, match=r"migrate` first \(1 migration\(s\) to apply\)"):
        migrated.require_migrated()
