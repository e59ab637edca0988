"""openchargeback ingest FILE [FILE …] -s SOURCE [-p YYYY-MM] [--append] [--dry-run] [--json]
openchargeback ingest --from slurm FILE -s SOURCE -p YYYY-MM [converter options]"""

from __future__ import annotations

import sys

from django.core.management.base import CommandError
from django.utils.formats import number_format

from billing.ingest.errors import ImportRefused
from billing.management.base import BillingCommand
from billing.services import import_files
from billing.usage import CONVERTERS
from billing.usage.imports import add_converter_arguments, usage_import


class Command(BillingCommand):
    help = (
        "Import FOCUS billing files (.csv, .csv.gz, .parquet) for one source. By default the files "
        "replace that source's charges for each month they contain; --append adds them instead."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("files", nargs="+", metavar="FILE")
        parser.add_argument("-s", "--source", required=True, help="Source name, e.g. aws.")
        parser.add_argument(
            "-p",
            "--period",
            metavar="YYYY-MM",
            help="The month being imported; rows from other months are flagged for review.",
        )
        parser.add_argument(
            "--append",
            action="store_true",
            help="Add the rows to their months instead of replacing them (sources split in parts).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Show the receipt; write nothing."
        )
        parser.add_argument(
            "--json", action="store_true", help="Print the receipt as one JSON object."
        )
        parser.add_argument(
            "--from",
            dest="input_format",
            default="focus",
            choices=["focus", *sorted(CONVERTERS)],
            help="Convert a usage export first (docs/sources.md); needs -p. Default: FOCUS files.",
        )
        add_converter_arguments(parser)

    def handle(self, *args, **options):
        config = self.load_config(options)
        acting_user = self.acting_user(options)
        bar = None
        if sys.stderr.isatty():  # progress only for a person watching, never in logs or pipes
            from tqdm import tqdm

            bar = tqdm(
                unit=" rows", unit_scale=True, desc="importing", file=sys.stderr, leave=False
            )
        try:
            if options["input_format"] != "focus":
                if len(options["files"]) != 1:
                    raise CommandError(f"--from {options['input_format']}: one file at a time")
                result = usage_import(
                    converter=options["input_format"],
                    path=options["files"][0],
                    source=options["source"],
                    period=options["period"],
                    options=options,
                    append=options["append"],
                    dry_run=options["dry_run"],
                    acting_user=acting_user,
                    config=config,
                    progress=bar.update if bar else None,
                )
            else:
                result = self.import_focus(options, acting_user, config, bar)
        except ImportRefused as exc:
            raise CommandError(str(exc)) from None
        finally:
            if bar:
                bar.close()
        if options["json"]:
            self.print_json(result.as_dict())
        else:
            self.print_receipt(result)

    def import_focus(self, options, acting_user, config, bar):
        return import_files(
            paths=options["files"],
            source=options["source"],
            period=options["period"],
            append=options["append"],
            dry_run=options["dry_run"],
            acting_user=acting_user,
            config=config,
            progress=bar.update if bar else None,
        )

    def print_receipt(self, r) -> None:
        status = (
            r.status
            if r.status != "dry-run"
            else f"dry run (would be {r.would_be}); nothing written"
        )
        title = f"Import #{r.import_id}" if r.import_id else "Import"
        self.stdout.write(self.style.SUCCESS(f"{title} — source {r.source}: {status}"))
        for f in r.files:
            self.stdout.write(
                f"  file     {f['name']}  ({f['rows']:,} rows, sha256 {f['sha256'][:12]}…)"
            )
        if r.conversion:
            card = r.conversion.get("rate_card", {})
            notes = r.conversion.get("notes", {})
            self.stdout.write(
                f"  convert  {r.conversion['converter']} for {r.conversion['period']}: rate card "
                f"{card.get('origin', '')} version {card.get('version', '')}, "
                f"{len(r.conversion.get('allowances', []))} allowance(s) applied"
            )
            for warning in notes.get("warnings", []):
                self.stdout.write(f"  warning  {warning}")
        for name in r.skipped_files:
            self.stdout.write(f"  skipped  {name}  (already imported for this source)")
        self.stdout.write(f"  periods  {', '.join(r.periods) or '-'}")
        self.stdout.write(
            f"  rows     read {r.rows_read:,}, imported {r.rows_imported:,}, "
            f"flagged {r.rows_flagged:,}"
            f" | added {r.rows_added:,}, removed {r.rows_removed:,}, unchanged {r.rows_unchanged:,}"
        )
        if r.totals:
            self.stdout.write(f"  {'currency':<9}{'billed':>22}{'list':>22}{'flagged billed':>22}")
            for currency, t in r.totals.items():
                self.stdout.write(
                    f"  {currency:<9}{_money(t['billed']):>22}{_money(t['list']):>22}"
                    f"{_money(t['flagged_billed']):>22}"
                )
        changes = [f"{cur} {_money(v, signed=True)}" for cur, v in r.billed_change.items()]
        if changes and r.status in ("replaced", "dry-run"):
            self.stdout.write(f"  billed change for these months: {', '.join(changes)}")
        # Each month on its own line: a month's removals never hide behind another's additions.
        for key, c in r.changes.items():
            billed = ", ".join(
                f"{cur} {_money(v, signed=True)}" for cur, v in c["billed_change"].items()
            )
            self.stdout.write(
                f"  {key}  added {c['rows_added']:,}, removed {c['rows_removed']:,}, "
                f"unchanged {c['rows_unchanged']:,}"
                + (f" | billed change {billed}" if billed else "")
            )


def _money(text: str, signed: bool = False) -> str:
    """Exact amount with thousands separators; never rounded."""
    sign = "-" if text.startswith("-") else ("+" if signed else "")
    whole, _, fraction = text.lstrip("-").partition(".")
    whole = number_format(int(whole), force_grouping=True) if whole else "0"
    return f"{sign}{whole}{'.' + fraction if fraction else ''}"
