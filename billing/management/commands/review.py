"""openchargeback review list | approve | reject | return | reassign: the review queue, for cron."""

from __future__ import annotations

from django.core.management.base import CommandError

from billing.management.base import BillingCommand, clip, period_key
from billing.models import BillingPeriod, Charge, Flag
from billing.selectors import review_queryset, review_rows
from billing.services import (
    PeriodError,
    ReviewError,
    charge_approve,
    charge_reassign,
    charge_reject,
    charge_return,
)
from billing.services.periods import guard_refusals


class Command(BillingCommand):
    help = "List flagged charges; approve, reject, return them to the queue or reassign them."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        listing = self.add_subcommand(sub, "list", help="Charges waiting for a decision.")
        listing.add_argument("-p", "--period", metavar="YYYY-MM", type=period_key)
        listing.add_argument("--reason", metavar="R", help=f"One of: {', '.join(_codes())}.")
        listing.add_argument(
            "--status",
            default="flagged",
            choices=["flagged", "approved", "rejected", "all"],
            help="Default: flagged (waiting).",
        )
        listing.add_argument("--json", action="store_true")

        approve = self.add_subcommand(
            sub, "approve", help="Approve flagged charges: by --id, or all of -p [--reason]."
        )
        self._selection(approve)
        approve.add_argument("--note", default="")

        reject = self.add_subcommand(sub, "reject", help="Reject charges (never billed).")
        self._selection(reject)
        reject.add_argument("--note", required=True, help="Why (required).")

        back = self.add_subcommand(
            sub, "return", help="Return rejected charges to the queue (open periods only)."
        )
        self._selection(back)
        back.add_argument("--note", default="")

        reassign = self.add_subcommand(
            sub,
            "reassign",
            help="Set PI, project and/or fund/org on charges: by --id, or all of -p [--reason].",
        )
        self._selection(reassign)
        reassign.add_argument("--pi", dest="pi_email", default="", metavar="EMAIL")
        reassign.add_argument("--project", dest="project_id", default="", metavar="ID")
        reassign.add_argument("--fund-org", dest="fund_org", default="", metavar="FUND_ORG")
        reassign.add_argument(
            "--save-mapping",
            action="store_true",
            help="Also save the attribution as the account-map entry of the selection's one "
            "source and sub-account, so the next delivery is attributed automatically.",
        )
        reassign.add_argument("--note", default="")

    @staticmethod
    def _selection(parser):
        parser.add_argument(
            "--id", dest="ids", type=int, nargs="+", action="extend", metavar="N", default=[]
        )
        parser.add_argument("-p", "--period", metavar="YYYY-MM", type=period_key)
        parser.add_argument("--reason", metavar="R")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        if options["action"] == "list":
            return self.handle_list(options)
        charges = self.selection(options)
        action = options["action"]
        service = {
            "approve": charge_approve,
            "reject": charge_reject,
            "return": charge_return,
            "reassign": charge_reassign,
        }[action]
        kwargs = {}
        if action in ("approve", "reassign"):
            kwargs["config"] = self.load_config(options)
        if action == "reassign":
            kwargs.update(
                {k: options[k] for k in ("pi_email", "project_id", "fund_org", "save_mapping")}
            )
        try:
            with guard_refusals():
                result = service(
                    charges=charges,
                    acting_user=self.acting_user(options),
                    note=options["note"],
                    **kwargs,
                )
        except (ReviewError, PeriodError) as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            data = result.as_dict()
            if action == "reassign":
                mapping = result.account_mapping
                data["account_mapping"] = mapping.pk if mapping else None
            return self.print_json(data)
        amounts = ", ".join(f"{c} {a}" for c, a in result.billed.items()) or "nothing"
        verb = {
            "approve": "Approved",
            "reject": "Rejected",
            "return": "Returned",
            "reassign": "Reassigned",
        }[action]
        self.stdout.write(self.style.SUCCESS(f"{verb} {result.count:,} charge(s): {amounts}."))
        if result.account_mapping is not None:
            mapping = result.account_mapping
            self.stdout.write(f"Saved the account-map entry for {mapping.account_id}.")
        if result.skipped:
            self.stdout.write(
                self.style.WARNING(f"Left as they were: {result.skipped:,} ({result.skipped_why}).")
            )

    def selection(self, options):
        ids, period, reason = options["ids"], options["period"], options["reason"]
        if bool(ids) == bool(period):
            raise CommandError("choose charges with --id N … or with -p YYYY-MM [--reason R]")
        if reason and not period:
            raise CommandError("--reason goes with -p YYYY-MM")
        if ids:
            charges = Charge.objects.filter(pk__in=ids)
            missing = sorted(set(ids) - set(charges.values_list("pk", flat=True)))
            if missing:
                raise CommandError(f"no charge with id {', '.join(map(str, missing))}")
            return charges
        self.period(period)
        try:
            # Reassigning by filter changes the queue (flagged charges) only, never every charge
            # of the month; the other actions apply to the statuses they decide on.
            status = "flagged" if options["action"] == "reassign" else "all"
            return review_queryset(period_key=period, reason=reason, status=status)
        except ValueError as exc:
            raise CommandError(f"--reason: {exc}") from None

    @staticmethod
    def period(key):
        if not BillingPeriod.objects.filter(key=key).exists():
            raise CommandError(f"period {key} does not exist")

    def handle_list(self, options):
        if options["period"]:
            self.period(options["period"])
        try:
            charges = review_queryset(
                period_key=options["period"], reason=options["reason"], status=options["status"]
            )
        except ValueError as exc:
            raise CommandError(f"--reason: {exc}") from None
        rows = review_rows(charges.iterator(chunk_size=2000))
        if options["json"]:
            return self.print_json(rows)
        if not rows:
            self.stdout.write("Nothing to review.")
            return
        self.stdout.write(
            f"{'id':>9} {'period':<8} {'billed':>14} {'cur':<4} {'pi':<30} {'project':<20} reasons"
        )
        for r in rows:
            self.stdout.write(
                f"{r['id']:>9} {r['period']:<8} {r['billed']:>14} {r['currency']:<4} "
                f"{clip(r['pi_email'] or '-', 30):<30} {clip(r['project_id'] or '-', 20):<20} "
                f"{','.join(r['reasons'])}"
            )
        self.stdout.write(f"{len(rows):,} charge(s).")


def _codes():
    return [flag.code for flag in Flag]
