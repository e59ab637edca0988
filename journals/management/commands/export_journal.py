"""openchargeback export-journal -p YYYY-MM [-f detail|summary|gl|TEMPLATE] [-o FILE] [--json]"""

from __future__ import annotations

from django.core.management.base import CommandError

from billing.management.base import BillingCommand, period_key
from journals.services import JournalRefused, journal_export


class Command(BillingCommand):
    help = (
        "Export a period's journal with a template: general ledger (balanced debits and "
        "credits), detail (one row per charge) or summary (one row per statement). Writes one "
        "file per currency, records and audits the export; refuses, writing nothing, when the "
        "journal would not balance or a source or fund/org is not set up for it."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("-p", "--period", required=True, metavar="YYYY-MM", type=period_key)
        parser.add_argument(
            "-f",
            "--format",
            default="gl",
            metavar="TEMPLATE",
            help="A journal template's name, or a kind: detail, summary, gl (default: gl).",
        )
        parser.add_argument(
            "-o",
            "--output",
            metavar="FILE",
            help="Where to write (with several currencies, -CUR is added before the suffix). "
            "Default: INSTANCE_DIR/journals/PERIOD/….",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Make every check and show rows, totals and checksums; write and record nothing.",
        )
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args, **options):
        config = self.load_config(options)
        acting_user = self.acting_user(options)
        try:
            result = journal_export(
                period_key=options["period"],
                template=options["format"],
                output=options["output"],
                acting_user=acting_user,
                config=config,
                dry_run=options["dry_run"],
            )
        except JournalRefused as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            return self.print_json(result.as_dict())
        draft = " (draft: the period is still open)" if result.period_status == "open" else ""
        title = f"Journal {result.period}, template {result.template} ({result.kind}){draft}"
        if result.dry_run:
            self.stdout.write(f"{title}: dry run, nothing written")
        else:
            self.stdout.write(self.style.SUCCESS(title))
        for f in result.files:
            self.stdout.write(
                f"  {f['currency']}: {f['rows']:,} rows, debits {f['debit_total']}, "
                f"credits {f['credit_total']}"
            )
            self.stdout.write(f"  file: {f['file']}{' (not written)' if result.dry_run else ''}")
            self.stdout.write(f"  sha256: {f['sha256']}")
        if result.flagged:
            self.stdout.write(
                self.style.WARNING(
                    f"  {result.flagged:,} charge(s) still await review and are not in the journal."
                )
            )
