"""The `openchargeback` command: Django's management commands under the product's name.

`openchargeback ingest …` is `python manage.py ingest …`. Command names may be written with
hyphens, as the earlier tool's CLI had them (`export-journal` runs `export_journal`).
`openchargeback serve` is the development server (accounts/management/commands/serve.py),
`openchargeback version` prints the product's version. A command that needs tables, run
before `migrate`, says to run `migrate` instead of printing a traceback.
"""

import atexit
import gc
import os
import sys


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openchargeback.settings")
    # When the command is done (Django has closed its database connections), freeze what the
    # process still holds: the interpreter's teardown then doesn't collect it cycle by cycle only
    # for the process to end (0.06-0.1 s after a journal export). Registered first, it runs last,
    # after logging's and any other exit handler; sys.stdout and sys.stderr are flushed after it,
    # and the commands close the files they write.
    atexit.register(gc.freeze)
    from django.core.management import execute_from_command_line

    argv = list(sys.argv if argv is None else argv)
    if len(argv) > 1 and not argv[1].startswith("-"):
        name = argv[1]
        argv[1] = name.replace("-", "_")
    if argv[1:] in (["version"], ["--version"]):
        # Django answers both itself with its own version, before any command runs.
        print(f"OpenChargeback {product_version()}")
        return
    from django.core.exceptions import ImproperlyConfigured
    from django.db import DatabaseError

    from .migrated import NOT_MIGRATED, is_missing_table

    try:
        execute_from_command_line(argv)
    except ImproperlyConfigured as exc:  # the environment, not a bug: say what to set
        sys.stderr.write(f"configuration: {exc}\n")
        sys.exit(1)
    except DatabaseError as exc:
        if not is_missing_table(exc):
            raise
        sys.stderr.write(f"CommandError: {NOT_MIGRATED}\n  ({exc})\n")
        sys.exit(1)
    except BrokenPipeError:  # output piped into `head`, which stopped reading: not an error
        sys.stderr.close()
        sys.exit(0)


def product_version() -> str:
    """The installed package's version (pyproject.toml), not Django's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("openchargeback")
    except PackageNotFoundError:  # run from a checkout that was never installed
        import tomllib
        from pathlib import Path

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"]
