"""openchargeback rates load FILE [--update] | rates list [--service S] [--json]"""

from __future__ import annotations

from django.core.management.base import CommandError

from billing.management.base import BillingCommand
from billing.models import Rate
from billing.money import money_text
from billing.services.rates import RateError, rates_load
from billing.usage.pricing import decimal_text


class Command(BillingCommand):
    help = "Rate cards of usage sources: load a YAML rate card, or list the stored rates."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        sub = parser.add_subparsers(dest="action", required=True)
        load = self.add_subcommand(sub, "load", help="Load rates from a YAML file (audited).")
        load.add_argument("file", metavar="FILE")
        load.add_argument(
            "--update",
            action="store_true",
            help="Change a stored rate whose terms differ (default: refuse, naming both).",
        )
        listing = self.add_subcommand(sub, "list", help="List the stored rates.")
        listing.add_argument("--service", help="Only this service, e.g. hpc-cpu.")
        listing.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        acting_user = self.acting_user(options)
        if options["action"] == "load":
            try:
                loaded = rates_load(
                    path=options["file"], update=options["update"], acting_user=acting_user
                )
            except RateError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(
                self.style.SUCCESS(
                    f"Rates from {options['file']}: {len(loaded.created)} added, "
                    f"{len(loaded.updated)} changed, {len(loaded.unchanged)} unchanged"
                )
            )
            return
        rates = Rate.objects.all()
        if options["service"]:
            rates = rates.filter(service=options["service"])
        rows = [
            {
                "id": r.pk,
                "service": r.service,
                "key": r.key,
                "unit": r.unit,
                "effective_from": r.effective_from.isoformat(),
                # Exact text: a price as written, quantities without a column's padding zeros
                "list_price": money_text(r.list_price),
                "currency": r.currency,
                "multiplier": decimal_text(r.multiplier),
                "pricing_unit": r.pricing_unit or r.unit,
                "subsidy_percent": decimal_text(r.subsidy_percent),
                "allowance": decimal_text(r.allowance_quantity),
                "allowance_per": r.allowance_per,
                "active": r.active,
            }
            for r in rates
        ]
        if options["json"]:
            self.print_json(rows)
            return
        if not rows:
            self.stdout.write("No rates.")
            return
        for r in rows:
            allowance = (
                f", first {r['allowance']} {r['unit']}s {r['allowance_per']}/month free"
                if r["allowance_per"]
                else ""
            )
            self.stdout.write(
                f"#{r['id']:<4} {r['service']}/{r['key']} from {r['effective_from']}: "
                f"{r['list_price']} {r['currency']} per {r['pricing_unit']}"
                + (f" (×{r['multiplier']} per {r['unit']})" if r["multiplier"] != "1" else "")
                + f", subsidy {r['subsidy_percent']}%{allowance}"
                + ("" if r["active"] else " [inactive]")
            )
