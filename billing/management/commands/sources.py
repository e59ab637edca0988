"""openchargeback sources list | show NAME [--json] — the sources imports can name: where each
is defined (the configuration, the database or both), its journal credit side, its month
totals and its last import."""

from __future__ import annotations

from django.core.management.base import CommandError

from billing.management.base import BillingCommand
from billing.models import Source
from billing.money import cents_text, money_text
from billing.selectors import last_import, reference_months


class Command(BillingCommand):
    help = "List the sources, or show one with its month totals and last import."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        sub = parser.add_subparsers(dest="action", required=True, metavar="{list,show}")
        listing = self.add_subcommand(sub, "list", help="every source, configured or in use")
        listing.add_argument("--json", action="store_true")
        show = self.add_subcommand(sub, "show", help="one source in detail")
        show.add_argument("name")
        show.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        config = self.load_config(options)
        rows = Source.objects.in_bulk(field_name="name")
        names = sorted({s.name for s in config.sources} | set(rows))
        if options["action"] == "list":
            data = [self.describe(name, config, rows.get(name)) for name in names]
            if options["json"]:
                return self.print_json(data)
            if not data:
                self.stdout.write("No sources: add them to the configuration's `sources`.")
                return
            self.stdout.write(
                f"{'name':<16} {'display name':<26} {'pattern':<16} {'credit fund/org':<18} "
                f"{'account':<8} {'defined in':<18} last import"
            )
            for d in data:
                self.stdout.write(
                    f"{d['name']:<16} {d['display_name']:<26.26} {d['pattern']:<16.16} "
                    f"{d['credit_fund_org'] or '-':<18} {d['account_code'] or '-':<8} "
                    f"{d['defined_in']:<18} {d['last_import'] or 'never'}"
                )
            return
        name = options["name"]
        if name not in names:
            known = ", ".join(names) or "none"
            raise CommandError(f"no source named {name!r} (known: {known})")
        data = self.describe(name, config, rows.get(name))
        months = reference_months(source=rows[name]) if name in rows else []
        data["months"] = [
            {**m, "billed": money_text(m["billed"]), "billable": money_text(m["billable"])}
            for m in months
        ]
        if options["json"]:
            return self.print_json(data)
        for key in ("name", "display_name", "pattern", "credit_fund_org", "account_code"):
            self.stdout.write(f"{key.replace('_', ' ') + ':':<17} {data[key] or '-'}")
        self.stdout.write(f"{'defined in:':<17} {data['defined_in']}")
        self.stdout.write(f"{'last import:':<17} {data['last_import'] or 'never'}")
        if not months:
            self.stdout.write("No charges in the last 12 months.")
            return
        self.stdout.write(
            f"  {'period':<8} {'status':<10} {'charges':>9} {'flagged':>8} "
            f"{'billed':>16} {'billable':>16}"
        )
        for m in months:
            self.stdout.write(
                f"  {m['period']:<8} {m['status']:<10} {m['charges']:>9,} {m['flagged']:>8,} "
                f"{m['currency']} {cents_text(m['billed']):>12} "
                f"{m['currency']} {cents_text(m['billable']):>12}"
            )

    @staticmethod
    def describe(name, config, row) -> dict:
        configured = config.source(name)
        where = [w for w, present in (("configuration", configured), ("database", row)) if present]
        latest = last_import(source=row) if row is not None else None
        pick = configured or row
        return {
            "name": name,
            "display_name": (configured.display_name if configured else row.display_name) or name,
            "pattern": configured.pattern if configured else row.filename_pattern,
            "credit_fund_org": pick.credit_fund_org,
            "account_code": pick.account_code,
            "defined_in": " and ".join(where),
            "last_import": (
                f"#{latest.pk} {latest.created_at:%Y-%m-%d %H:%M} UTC by {latest.actor}"
                if latest
                else None
            ),
        }
