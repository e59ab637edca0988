"""openchargeback periods list | show | open | close | reopen | finalize YYYY-MM [--reason TEXT]"""

from __future__ import annotations

from django.core.management.base import CommandError
from django.db import OperationalError, connection

from billing.management.base import BillingCommand, period_key
from billing.models import BillingPeriod
from billing.selectors import period_list, period_summary
from billing.services import PeriodError, period_close, period_finalize, period_open
from billing.services.periods import guard_refusals


class Command(BillingCommand):
    help = "List billing periods, show one, or move one through open → closed → finalized."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        listing = self.add_subcommand(sub, "list", help="All periods with status and counts.")
        listing.add_argument("--json", action="store_true")
        show = self.add_subcommand(sub, "show", help="One period: status, counts, totals.")
        show.add_argument("period", metavar="YYYY-MM", type=period_key)
        show.add_argument("--json", action="store_true")
        for name, text in (
            ("open", "Create a period, or reopen a closed one (needs --reason)."),
            ("close", "Close an open period: it takes no more imports."),
            ("reopen", "Reopen a closed period (needs --reason; kept in the history)."),
            (
                "finalize",
                "Finalize a closed period for good (nothing flagged; statements and journal made).",
            ),
        ):
            p = self.add_subcommand(sub, name, help=text)
            p.add_argument("period", metavar="YYYY-MM", type=period_key)
            p.add_argument("--reason", default="", help="Why (required to reopen).")

    def handle(self, *args, **options):
        action = options["action"]
        if action == "list":
            return self.handle_list(options)
        if action == "show":
            return self.handle_show(options)
        acting_user = self.acting_user(options)
        service = {
            "open": period_open,
            "reopen": period_open,
            "close": period_close,
            "finalize": period_finalize,
        }[action]
        if action == "reopen" and not BillingPeriod.objects.filter(key=options["period"]).exists():
            raise CommandError(f"period {options['period']} does not exist")
        try:
            with guard_refusals():
                period = service(
                    key=options["period"], acting_user=acting_user, reason=options["reason"]
                )
        except PeriodError as exc:
            raise CommandError(str(exc)) from None
        except OperationalError as exc:
            if connection.vendor != "sqlite" or "locked" not in str(exc):
                raise
            # SQLite's busy timeout ran out while an import held the writer lock.
            raise CommandError(
                f"the database is busy (an import is running?); period {options['period']} "
                "was not changed. Run the command again."
            ) from None
        self.stdout.write(self.style.SUCCESS(f"Period {period.key} is {period.status}."))

    def handle_list(self, options):
        rows = period_list()
        if options["json"]:
            return self.print_json(rows)
        if not rows:
            self.stdout.write("No periods yet. Import a file to create one.")
            return
        self.stdout.write(f"{'period':<9}{'status':<11}{'charges':>10}{'flagged':>10}")
        for row in rows:
            self.stdout.write(
                f"{row['period']:<9}{row['status']:<11}{row['charges']:>10,}{row['flagged']:>10,}"
            )

    def handle_show(self, options):
        key = options["period"]
        period = BillingPeriod.objects.filter(key=key).first()
        if period is None:
            raise CommandError(f"period {key} does not exist")
        summary = period_summary(period)
        if options["json"]:
            return self.print_json(summary)
        self.stdout.write(f"Period {summary['period']} ({summary['status']})")
        self.stdout.write(
            f"  charges {summary['charges']:,} (not rejected), flagged {summary['flagged']:,}, "
            f"rejected {summary['rejected']:,}"
        )
        for currency, t in summary["totals"].items():
            self.stdout.write(
                f"  {currency}: billed {t['billed']}, list {t['list']}, "
                f"flagged {t['flagged_billed']}, billable {t['billable']}"
            )
