"""What every command and web process loads before it does anything (issue 13: the journal
export of a million charges in 1.5 s, start-up included).

The import engine (numpy, pyarrow), the PDF renderer (reportlab) and Celery (kombu) are loaded
by the code that uses them, not by Django's start-up, the admin's autodiscovery or the system
checks. Checked in a fresh process, as a command runs: a test process has loaded them all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("pyarrow", "numpy", "pandas", "reportlab", "PIL", "celery", "kombu")

# Start-up as `openchargeback export-journal -p 2025-01` meets it: settings, apps and the admin's
# autodiscovery (django.setup), the system checks (they import the URLconf and every view), the
# command and its arguments. The database is empty, so the command stops at "run migrate".
EXPORT_JOURNAL = f"""
import sys
import django
django.setup()
from django.core import checks
assert not [m for m in checks.run_checks() if m.is_serious()]
from openchargeback.cli import main
try:
    main(["openchargeback", "export-journal", "-p", "2025-01"])
except SystemExit:
    pass
print(" ".join(name for name in {HEAVY!r} if name in sys.modules))
"""

# Loaded on first use, they still bind as before: the tasks to the project's Celery app (its
# broker and eager setting), and the names the packages re-export.
ON_FIRST_USE = """
import django
django.setup()
import billing.tasks, journals.tasks, statements.tasks
from celery.app.utils import find_app
import openchargeback
from openchargeback.celery import app
from billing import services
from billing.ingest import pipeline
tasks = [billing.tasks.warm_period_figures, billing.tasks.import_files_task,
         statements.tasks.render_statements_task, journals.tasks.cycle_last_month]
print(all(t.app is app for t in tasks), app.conf.task_always_eager)
print(find_app("openchargeback") is app, openchargeback.celery_app is app)
print(services.import_files is pipeline.import_files,
      services.ImportResult is pipeline.ImportResult)
"""


# What the process holds when it ends, seen by an exit handler registered before the command's
# (exit handlers run last registered first, so this one runs after the command's own).
AT_EXIT = """
import atexit, gc

def leaving():
    print(gc.get_freeze_count() > 0)

atexit.register(leaving)
from openchargeback.cli import main
main(["openchargeback", "periods", "list"])
"""


def run(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """`code` in a fresh process, on an empty SQLite database under tmp_path, without a broker."""
    drop = ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "OPENCHARGEBACK_CONFIG")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        DJANGO_DEBUG="1",
        DJANGO_SETTINGS_MODULE="openchargeback.settings",
        OPENCHARGEBACK_HOME=str(tmp_path / "instance"),
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_command_starts_without_the_import_engine_the_pdf_renderer_or_celery(tmp_path):
    done = run(EXPORT_JOURNAL, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "migrate" in done.stderr  # the command ran as far as the database
    assert done.stdout.split() == [], f"loaded at start-up: {done.stdout}"


def test_what_is_loaded_on_first_use_binds_as_before(tmp_path):
    done = run(ON_FIRST_USE, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "True True",
        "True True",
        "True True",
    ]


def test_a_command_leaves_no_teardown_to_collect(tmp_path):
    """After the command, the CLI freezes what the process holds, so the interpreter's teardown
    doesn't collect it object by object (0.06-0.1 s after a journal export)."""
    done = run(AT_EXIT, tmp_path)
    assert "migrate" in done.stderr  # the command ran
    assert done.stdout.split() == ["True"], done.stderr


def test_a_relative_instance_folder_is_made_absolute_and_warns_nothing(tmp_path):
    """The quick start prints `OPENCHARGEBACK_HOME=instance …` to run the instance again: a
    relative folder is taken from the working directory once, and the file cache, built from it,
    gives no caches.W003 warning on every command."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(DJANGO_DEBUG="1", OPENCHARGEBACK_HOME="instance")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from openchargeback.cli import main;"
        "main(['openchargeback', 'shell', '-v0', '-c',"
        " 'from django.conf import settings; print(settings.INSTANCE_DIR)'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(REPO)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "instance")
    assert "W003" not in done.stderr, done.stderr
