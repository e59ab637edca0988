"""openchargeback show PI_EMAIL -p YYYY-MM [--json] — one PI's month at a glance."""

from __future__ import annotations

from django.core.management.base import CommandError

from billing.management.base import BillingCommand, period_key
from billing.models import PI, BillingPeriod
from billing.selectors import pi_period_overview


class Command(BillingCommand):
    help = "A PI's projects, charges and totals for a period: billable, flagged and rejected."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("email", metavar="PI_EMAIL")
        parser.add_argument("-p", "--period", required=True, metavar="YYYY-MM", type=period_key)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        email = options["email"].strip().lower()
        period = BillingPeriod.objects.filter(key=options["period"]).first()
        if period is None:
            raise CommandError(f"period {options['period']} does not exist")
        pi = PI.objects.filter(email=email).first()
        if pi is None:
            raise CommandError(f"no PI with email {email}")
        data = pi_period_overview(email=email, period=period)
        data["pi_name"] = pi.name
        if options["json"]:
            return self.print_json(data)
        self.stdout.write(f"{pi.name or email} <{email}>, period {period.key} ({period.status})")
        if not data["projects"]:
            self.stdout.write("  No charges this period.")
            return
        self.stdout.write(
            f"  {'project':<24} {'fund/org':<18} {'charges':>8} {'billable':>14} "
            f"{'flagged':>8} {'flagged amt':>14} {'rejected':>8}"
        )
        for p in data["projects"]:
            self.stdout.write(
                f"  {(p['project_id'] or '-'):<24.24} {(p['fund_org'] or '-'):<18.18} "
                f"{p['charges']:>8,} {p['currency']} {p['billable']:>10} {p['flagged']:>8,} "
                f"{p['flagged_billed']:>14} {p['rejected']:>8,}"
            )
        for currency, t in data["totals"].items():
            self.stdout.write(
                f"  Total {currency}: billable {t['billable']}, "
                f"flagged (not billable until approved) {t['flagged_billed']}"
            )
