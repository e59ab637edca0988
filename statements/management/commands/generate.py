"""openchargeback generate -p YYYY-MM [--pi EMAIL] [--dry-run] [--send] [--resend] [--json]"""

from __future__ import annotations

import time

from django.core.management.base import CommandError

from billing.management.base import BillingCommand, period_key
from statements.models import StatementRun
from statements.selectors import run_progress
from statements.services import StatementError, email_counts, statement_generate

# A statement's fate in a generation (GenerationPlan.changes' keys), as the dry run words it.
WOULD = {
    "new": "new",
    "replaced": "replaced in place (not sent yet)",
    "revised": "revises",
    "unchanged": "unchanged",
    "removed": "would be removed",
}
EXPLAIN = {
    "new": "new",
    "replaced": "replaced (not sent yet: same number, new figures)",
    "revised": "revised (sent: a new -R number replaces it)",
    "unchanged": "unchanged",
    "removed": "removed (no billable charges left, never sent)",
}


def change_summary(changes: dict[str, int], *, dry_run: bool) -> str:
    """'Changes: 1 revised (sent: …), 8 unchanged.' Only the kinds that happen."""
    parts = [f"{n} {EXPLAIN[kind]}" for kind, n in changes.items() if n]
    head = "Would change" if dry_run else "Changes"
    return f"{head}: {', '.join(parts) if parts else 'none'}."


class Command(BillingCommand):
    help = (
        "Generate the period's statements (drafts while it is open, final once closed), "
        "render their PDFs and, with --send, email each PI once."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("-p", "--period", required=True, metavar="YYYY-MM", type=period_key)
        parser.add_argument("--pi", metavar="EMAIL", help="Only this PI's statements.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Show the statements; write and send nothing."
        )
        parser.add_argument(
            "--send", action="store_true", help="Email each PI their statements not yet sent."
        )
        parser.add_argument(
            "--resend",
            action="store_true",
            help="With --send: email statements that were already sent, again.",
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=0,
            metavar="SECONDS",
            help="With workers: wait up to this long for rendering and sending to finish.",
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args, **options):
        config = self.load_config(options)
        acting_user = self.acting_user(options)
        try:
            result = statement_generate(
                period_key=options["period"],
                pi_email=options.get("pi"),
                dry_run=options["dry_run"],
                send=options["send"],
                resend=options["resend"],
                acting_user=acting_user,
                config=config,
            )
        except StatementError as exc:
            raise CommandError(str(exc)) from None
        if result.run_id and options["wait"] > 0:
            self._wait(result, options["wait"])
        data = result.as_dict()
        if options["json"]:
            return self.print_json(data)
        self._print_text(data)

    def _wait(self, result, seconds: float) -> None:
        from statements.services import generate_finish as _finish

        run = StatementRun.objects.get(pk=result.run_id)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not run_progress(run)["done"]:
            time.sleep(0.5)
        _finish(result)
        result.emails = email_counts(run)

    def _print_text(self, data: dict) -> None:
        kind = "draft statements" if data["draft"] else "statements"
        head = "Would generate" if data["status"] == "dry-run" else "Generated"
        self.stdout.write(
            f"{head} {len(data['statements'])} {kind} for {data['period']} "
            f"({data['pis']} PI{'' if data['pis'] == 1 else 's'})."
        )
        for s in data["statements"]:
            status = f"  [{s['status']}]" if "status" in s else ""
            if "change" in s:  # the dry run: what the real run will do to it
                status = f"  [{WOULD[s['change']]}{' ' + s['replaces'] if 'replaces' in s else ''}]"
            self.stdout.write(
                f"  {s['number']:<22} {s['pi_email']:<34} {s['project']:<24} {s['fund_org']:<18} "
                f"list {s['list']:>12}  discount {s['discount']:>12}  due {s['amount_due']:>12} "
                f"{s['currency']}{status}"
            )
        self.stdout.write(
            "  " + change_summary(data["changes"], dry_run=data["status"] == "dry-run")
        )
        for currency, total in data["total_due"].items():
            billable = data["billable_total"].get(currency, "0")
            self.stdout.write(f"  total due {currency} {total} (billable, exact: {billable})")
        excluded = data["excluded"]
        if excluded.get("count"):
            amounts = ", ".join(f"{c} {a}" for c, a in excluded["amount"].items())
            self.stdout.write(f"  left out: {excluded['count']} charge(s), {amounts}")
            for status, bucket in excluded["by_status"].items():
                amounts = ", ".join(f"{c} {a}" for c, a in bucket["amount"].items())
                self.stdout.write(f"    {status}: {bucket['count']} charge(s), {amounts}")
            for code, bucket in excluded["by_reason"].items():
                amounts = ", ".join(f"{c} {a}" for c, a in bucket["amount"].items())
                self.stdout.write(
                    f"    reason {code} ({bucket['label']}): {bucket['count']}, {amounts}"
                )
        emails = data["emails"]
        if any(emails.values()):
            self.stdout.write(
                f"  emails: queued {emails['queued']}, sent {emails['sent']}, "
                f"failed {emails['failed']}"
            )
        for number in data.get("orphaned", []):
            self.stdout.write(
                self.style.WARNING(
                    f"  {number} was sent and has no billable charges any more: revised to show "
                    "nothing due"
                )
            )
