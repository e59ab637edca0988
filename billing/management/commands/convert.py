"""openchargeback convert NAME FILE --period YYYY-MM [-o OUT] [converter options]

Turns a usage export (sacct output, a storage report, token usage) into a priced FOCUS file.
"""

from __future__ import annotations

import sys

from django.core.management.base import CommandError

from billing.management.base import BillingCommand
from billing.usage import CONVERTERS, ConversionError, convert_file


class Command(BillingCommand):
    help = "Convert a usage export into priced FOCUS rows (see docs/sources.md)."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        sub = parser.add_subparsers(dest="converter", required=True, metavar="NAME")
        for name, converter in sorted(CONVERTERS.items()):
            p = self.add_subcommand(sub, name, help=converter.help)
            p.add_argument("file", metavar="FILE")
            p.add_argument("-p", "--period", required=True, metavar="YYYY-MM")
            p.add_argument(
                "-s",
                "--source",
                help="Attribute by this source's account map (and the entries for every source).",
            )
            p.add_argument(
                "-o", "--output", metavar="OUT", help="FOCUS CSV to write (default: stdout)."
            )
            if converter.add_arguments:
                converter.add_arguments(p)

    def handle(self, *args, **options):
        try:
            conversion = convert_file(
                options["converter"], options["file"], period=options["period"], options=options
            )
        except ConversionError as exc:
            raise CommandError(str(exc)) from None
        if options["output"]:
            with open(options["output"], "w", encoding="utf-8", newline="") as out:
                rows = conversion.write(out)
            target = options["output"]
        else:
            rows = conversion.write(self.stdout._out)
            target = "stdout"
        summary = ", ".join(
            f"{k} {v}" for k, v in conversion.notes.items() if not isinstance(v, (list, dict))
        )
        self.stderr.write(
            f"convert {conversion.converter}: {rows:,} FOCUS rows for {conversion.period}"
            f" → {target}" + (f" ({summary})" if summary else "")
        )
        for warning in conversion.notes.get("warnings", []):
            self.stderr.write(f"  warning: {warning}")
        sys.stdout.flush()
