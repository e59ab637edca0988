"""Review patterns benchmark: the admin's "test against this period" over a month of N charges,
and what reading the patterns adds to every import.

    python bench/patterns_bench.py [--rows 100000]

Runs on a fresh SQLite database in a temporary OPENCHARGEBACK_HOME (unset DATABASE_URL). The
preview counts per distinct (service, resource id, resource name) and per distinct fund/org, so
its cost follows the month's resources, not its rows. Prints seconds and the load average. Not
part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="ocb-patterns-bench-"))
    os.environ.pop("DATABASE_URL", None)
    os.environ["OPENCHARGEBACK_HOME"] = str(home)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openchargeback.settings")
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    import django

    django.setup()
    from django.core.management import call_command
    from focus_synth import generate

    from billing.config import parse_config
    from billing.models import BillingPeriod, Charge, ReviewPattern
    from billing.services import import_files
    from billing.services.patterns import review_patterns_preview, with_review_patterns

    call_command("migrate", verbosity=0)
    path = home / "bench.csv"
    generate(path, args.rows, month="2026-10", seed=7)
    config = parse_config({"sources": [{"name": "bench", "pattern": "bench"}]})
    import_files(paths=[path], source="bench", config=config)
    for pattern in ("gpu", "^i-0", "test", "(?i)sandbox", "[0-9]{6}$"):
        ReviewPattern.objects.create(kind="flag", pattern=pattern)
    for pattern in (r"^[A-Z]{2,6}-[A-Z0-9-]+$", r"^[A-Z]+-\d+$"):
        ReviewPattern.objects.create(kind="fund_org", pattern=pattern)
    period = BillingPeriod.objects.get(key="2026-10")
    charges = Charge.objects.filter(period=period).count()
    resources = (
        Charge.objects.filter(period=period)
        .values("service_name", "resource_id", "resource_name")
        .distinct()
        .count()
    )

    started = time.perf_counter()
    preview = review_patterns_preview(period=period)
    preview_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(100):
        with_review_patterns(config)
    read_ms = (time.perf_counter() - started) * 1000 / 100

    print(f"charges {charges:,}, distinct resources {resources:,}, patterns {len(preview.rows)}")
    print(
        f"preview: {preview_seconds:.2f} s (flagged by flag patterns {preview.flagged_by_flag_patterns:,})"
    )
    print(
        f"with_review_patterns: {read_ms:.2f} ms per call (once per import, review decision, journal)"
    )
    print(
        "load average: "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
        + f" on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
