"""Bulk review benchmark: approve N flagged charges at once (target: 100,000 in 5 s or less).

    python bench/review_bench.py [--rows 100000] [--db sqlite] [--db postgres]

Each database gets a fresh schema. The synthetic file is imported, every attributed charge is
then marked flagged (reason: a flag pattern) in bench set-up, and the timed part is one call of
the review service over the whole period, exactly what the admin's "select all" approval does,
including the decision↔charge history rows and the audit event. Prints seconds and checks the
counts. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = os.environ.get("BENCH_PG_DATABASE", "ocb_review_bench")  # dropped and re-created


def child(rows: int, workdir: Path) -> dict:
    """Runs inside a process whose DATABASE_URL points at a fresh database."""
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openchargeback.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from focus_synth import generate

    from accounts.models import AuditEvent
    from billing.config import parse_config
    from billing.models import BillingPeriod, Charge, Flag, ReviewDecision
    from billing.services import charge_approve, import_files

    call_command("migrate", verbosity=0)
    path = workdir / "review.csv"
    generate(path, rows, month="2026-10", seed=7)
    config = parse_config(
        {"sources": [{"name": "bench", "pattern": "bench"}], "review": {"fund_org_patterns": []}}
    )
    import_files(paths=[path], source="bench", config=config)
    period = BillingPeriod.objects.get(key="2026-10")
    attributed = Charge.objects.filter(period=period, review_status="clean")
    flagged = attributed.update(review_status="flagged", flags=int(Flag.PATTERN_MATCH))
    if connection.vendor == "postgresql":
        # What autovacuum does between an import and a review session: reclaim the set-up
        # UPDATE's dead rows and gather statistics.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE billing_charge")
    connection.close()  # start the timed part on a fresh connection, like a request would

    t0 = time.perf_counter()
    # The queue's approvable charges (fund/org present and passing): approval refuses a
    # selection holding one that can't be billed as it is.
    queue = Charge.objects.filter(period=period, flags=int(Flag.PATTERN_MATCH))
    result = charge_approve(charges=queue, note="bench")
    seconds = time.perf_counter() - t0

    decision = ReviewDecision.objects.get()
    return {
        "db": connection.vendor,
        "flagged": flagged,
        "approved": result.count,
        "seconds": round(seconds, 2),
        "charges_per_s": int(result.count / seconds),
        "history_rows": decision.charges.count(),
        "still_flagged": Charge.objects.filter(period=period, review_status="flagged").count(),
        "audited": AuditEvent.objects.filter(action="charge.approve").count(),
        "billed": result.billed,
    }


def fresh_database(kind: str, workdir: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'review.sqlite3'}"
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE}")
        conn.execute(f"CREATE DATABASE {PG_DATABASE}")
    return f"postgres://postgres@127.0.0.1:5432/{PG_DATABASE}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgres"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-" + os.urandom(16).hex())
    if args.child:
        print(json.dumps(child(args.rows, Path(args.child))))
        return
    for kind in args.db or ["sqlite", "postgres"]:
        with tempfile.TemporaryDirectory(prefix="ocb-review-") as tmp:
            env = dict(
                os.environ,
                DATABASE_URL=fresh_database(kind, Path(tmp)),
                OPENCHARGEBACK_HOME=str(Path(tmp) / "home"),
            )
            proc = subprocess.run(
                [sys.executable, __file__, "--rows", str(args.rows), "--child", tmp],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode:
                raise SystemExit(proc.stderr[-3000:])
            print(proc.stdout.strip().splitlines()[-1])
    print(f"(this machine: {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
