"""openchargeback accounts list [--source S] [--json] | load FILE [--source S] [--update]"""

from __future__ import annotations

from django.core.management.base import CommandError

from billing.management.base import BillingCommand, clip
from billing.models import AccountMapping, Source
from billing.services.mappings import AccountMapError, account_map_load


class Command(BillingCommand):
    help = (
        "The account map (cloud or Slurm account → PI, project, fund/org): list it, or load "
        "entries from a CSV (the admin's export) or the earlier tool's accounts.json (audited)."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        listing = self.add_subcommand(sub, "list", help="List the account map.")
        listing.add_argument(
            "--source", help="Only this source's entries and those for every source."
        )
        listing.add_argument("--json", action="store_true")
        load = self.add_subcommand(
            sub, "load", help="Load entries from a file, all or nothing (audited)."
        )
        load.add_argument(
            "file",
            metavar="FILE",
            help="CSV with a header (source, account_id, pi_email, pi_name, project_id, "
            "fund_org, cost_center, note; account_id required), or accounts.json.",
        )
        load.add_argument(
            "--source",
            default="",
            help="The source of entries that name none (default: every source).",
        )
        load.add_argument(
            "--update",
            action="store_true",
            help="Change a stored entry that differs (default: refuse, naming the fields).",
        )

    def handle(self, *args, **options):
        acting_user = self.acting_user(options)
        if options["action"] == "load":
            try:
                loaded = account_map_load(
                    path=options["file"],
                    source=options["source"],
                    update=options["update"],
                    acting_user=acting_user,
                )
            except AccountMapError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(
                self.style.SUCCESS(
                    f"Account map from {options['file']}: {len(loaded.created)} added, "
                    f"{len(loaded.updated)} changed, {len(loaded.unchanged)} unchanged"
                )
            )
            return
        entries = AccountMapping.objects.select_related("source").order_by(
            "account_id", "source__name"
        )
        if options["source"]:
            if not Source.objects.filter(name=options["source"]).exists():
                raise CommandError(f"--source: no source named {options['source']!r}")
            entries = entries.filter(source__name=options["source"]) | entries.filter(
                source__isnull=True
            )
        rows = [
            {
                "id": m.pk,
                "source": m.source.name if m.source else "",
                "account_id": m.account_id,
                "pi_email": m.pi_email,
                "pi_name": m.pi_name,
                "project_id": m.project_id,
                "fund_org": m.fund_org,
                "cost_center": m.cost_center,
                "note": m.note,
            }
            for m in entries
        ]
        if options["json"]:
            return self.print_json(rows)
        if not rows:
            self.stdout.write("No account map entries.")
            return
        self.stdout.write(
            f"{'account':<20} {'source':<10} {'PI email':<28} {'project':<16} {'fund/org':<14} "
            "PI name"
        )
        for r in rows:
            self.stdout.write(
                f"{clip(r['account_id'], 20):<20} {clip(r['source'] or '(any)', 10):<10} "
                f"{clip(r['pi_email'], 28):<28} {clip(r['project_id'], 16):<16} "
                f"{clip(r['fund_org'], 14):<14} {r['pi_name']}".rstrip()
            )
