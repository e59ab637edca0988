"""`openchargeback health`: the checks of /health from a shell; exit 0 when healthy, else 1."""

import json

from django.core.management.base import BaseCommand, CommandError

from openchargeback.health import run_checks


class Command(BaseCommand):
    help = (
        "Check that the database answers and the broker (when one is set) accepts a connection, "
        "as /health does; print the result as JSON and exit 1 when a check failed."
    )
    requires_system_checks = []

    def handle(self, *args, **options):
        healthy, body = run_checks()
        self.stdout.write(json.dumps(body))
        if not healthy:
            raise CommandError(
                "unhealthy: "
                + ", ".join(name for name, value in body["checks"].items() if value == "failed")
            )
