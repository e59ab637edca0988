"""The `openchargeback` command: Django's management commands under the product's name.

`openchargeback ingest …` is `python manage.py ingest …`. Command names may be written with
hyphens, as the earlier tool's CLI had them (`export-journal` runs `export_journal`).
`openchargeback serve` is the development server (accounts/management/commands/serve.py).
"""

import os
import sys


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openchargeback.settings")
    from django.core.management import execute_from_command_line

    argv = list(sys.argv if argv is None else argv)
    if len(argv) > 1 and not argv[1].startswith("-"):
        name = argv[1]
        argv[1] = name.replace("-", "_")
    execute_from_command_line(argv)
