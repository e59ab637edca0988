"""openchargeback cycle -p YYYY-MM [--inbox DIR] [--template gl] [--wait S] [--finalize] [--json]"""

from __future__ import annotations

from pathlib import Path

from billing.management.base import BillingCommand
from journals.cycle import ACT, DONE, run_cycle


class Command(BillingCommand):
    help = (
        "Run the month end as far as it goes without a person: import the inbox, stop if anything "
        "is flagged, else close, generate and send the statements, export the journal. Safe to "
        "run again at any time. Exit status 0: done; 2: a person must act (the report says "
        "what); 1: a step was refused."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("-p", "--period", required=True, metavar="YYYY-MM")
        parser.add_argument(
            "--inbox",
            metavar="DIR",
            help="Folder holding one folder per month (default: $OPENCHARGEBACK_INBOX, "
            "else <instance>/inbox).",
        )
        parser.add_argument(
            "--template", default="gl", help="Journal template to export (default: gl)."
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=600,
            metavar="SECONDS",
            help="How long to wait for the statement emails (default 600).",
        )
        parser.add_argument(
            "--finalize",
            action="store_true",
            help="Finalize the month at the end when nothing stands in the way.",
        )
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args, **options):
        config = self.load_config(options)
        report = run_cycle(
            period_key=options["period"],
            config=config,
            inbox=Path(options["inbox"]) if options["inbox"] else None,
            template=options["template"],
            wait_seconds=options["wait"],
            finalize=options["finalize"],
        )
        if options["json"]:
            self.print_json(report.as_dict())
        else:
            self.print_report(report)
        if report.exit_code:
            raise SystemExit(report.exit_code)

    def print_report(self, report) -> None:
        self.stdout.write(f"Cycle {report.period}")
        for step in report.steps:
            details = {k: v for k, v in step.items() if k not in ("step", "result") and v}
            extra = (
                "  " + ", ".join(f"{k} {_text(v)}" for k, v in details.items()) if details else ""
            )
            self.stdout.write(f"  {step['step']:<11}{step['result']}{extra}")
        self.stdout.write(f"  month is {report.status}")
        if report.outcome == DONE:
            self.stdout.write(self.style.SUCCESS("done"))
        elif report.outcome == ACT:
            self.stdout.write(self.style.WARNING(f"a person must act: {report.action}"))
        else:
            self.stderr.write(self.style.ERROR(f"refused: {report.action}"))


def _text(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)
