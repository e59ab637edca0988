"""Admin page timings on a period of N charges (target: every page under 0.5 s at 10,000,000).

    python bench/admin_pages_bench.py [--rows 1000000] [--db sqlite|postgres] [--keep DIR]
    python bench/admin_pages_bench.py --rows 10000000 --db postgres   # 1M imported, 9 copies

Imports a synthetic month once with the real importer (at most --import-rows of it, 1,000,000 by
default) and flags 2% of it for review, then, when --rows is larger, fills the same period up to
--rows with copies of those charges made in SQL (INSERT … SELECT): each copy has its own
fingerprints, line numbers and resource ids, and the same PIs, projects, fund/orgs, flags and
amounts, so the month still looks like one real month of 500 PIs and ~1,500 projects with 2%
untagged and 2% more flagged, at N rows. Then ANALYZE. The database is kept (SQLite: a file in
DIR; PostgreSQL: the database $BENCH_PG_DATABASE_<rows>, default ocb_pages_bench_<rows>) and
reused on the next run. Then requests each page through Django's test client as a superuser,
five times, and prints the median and worst time per page, and the load average. Not part of
the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
PG_BASE = os.environ.get("BENCH_PG_DATABASE", "ocb_pages_bench")

# Every column of billing_charge but id, and what a copy numbered :k puts in the three that must
# differ: a new fingerprint of 32 hex characters (PostgreSQL: the md5 of the original and the
# copy's number; SQLite has no md5, so 128 random bits; the unique (period, source, fingerprint)
# index refuses a collision), the line number shifted past the original file's, and the resource
# id suffixed (credits have none and keep none).
COPY_EXPRESSIONS = {
    "postgresql": {
        "fingerprint": "md5(fingerprint || ':{k}')",
        "line_number": "line_number + {k} * {lines}",
        "resource_id": "CASE WHEN resource_id = '' THEN '' ELSE resource_id || '-c{k}' END",
    },
    "sqlite": {
        "fingerprint": "lower(hex(randomblob(16)))",
        "line_number": "line_number + {k} * {lines}",
        "resource_id": "CASE WHEN resource_id = '' THEN '' ELSE resource_id || '-c{k}' END",
    },
}


def fill_with_copies(period, rows: int) -> None:
    """Copy the period's imported charges in SQL until it holds `rows` charges."""
    from django.core.cache import cache
    from django.db import connection, transaction

    from billing.models import Charge

    have = Charge.objects.filter(period=period).count()
    if have >= rows:
        return
    base = Charge.objects.filter(period=period).order_by("id")
    first, last = (
        base.values_list("id", flat=True).first(),
        base.values_list("id", flat=True).last(),
    )
    lines = max(base.values_list("line_number", flat=True).order_by("-line_number")[:1])
    columns = [f.column for f in Charge._meta.concrete_fields if f.column != "id"]
    expressions = COPY_EXPRESSIONS[connection.vendor]
    table = Charge._meta.db_table
    k = 0
    t0 = time.perf_counter()
    while have < rows:
        k += 1
        take = min(rows - have, last - first + 1)
        select = ", ".join(expressions.get(c, c).format(k=k, lines=lines) for c in columns)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) SELECT {select} FROM {table} "
                f"WHERE period_id = %s AND id BETWEEN %s AND %s ORDER BY id",
                [period.pk, first, first + take - 1],
            )
            have += cursor.rowcount
        print(f"copy {k}: {have:,} charges ({time.perf_counter() - t0:.0f}s)", flush=True)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}" if connection.vendor == "postgresql" else "ANALYZE")
    cache.clear()  # figures cached for the imported rows only; copies write no Import
    print(f"filled to {have:,} charges in {time.perf_counter() - t0:.0f}s (and ANALYZE)")


def explain_slow_queries(client, pages: dict, threshold: float) -> None:
    """Each page once more, its queries captured; the slow ones explained as they ran."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for name, url in pages.items():
        with CaptureQueriesContext(connection) as captured:
            client.get(url)
        for query in captured.captured_queries:
            if float(query["time"]) < threshold:
                continue
            print(f"--- {name}: {float(query['time']):.3f}s\n{query['sql']}")
            prefix = (
                "EXPLAIN (ANALYZE, BUFFERS) "
                if connection.vendor == "postgresql"
                else ("EXPLAIN QUERY PLAN ")
            )
            with connection.cursor() as cursor:
                cursor.execute(prefix + query["sql"])
                for row in cursor.fetchall():
                    print("   ", " | ".join(str(v) for v in row))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--keep", default="/tmp/ocb-pages-bench")
    parser.add_argument(
        "--import-rows",
        type=int,
        default=1_000_000,
        help="rows imported with the real importer; the rest are SQL copies of them",
    )
    parser.add_argument("--only", help="time only the pages whose name contains this")
    parser.add_argument("--skip", help="leave out the pages whose name contains this")
    parser.add_argument("--repeat", type=int, default=5, help="requests per page (median)")
    parser.add_argument(
        "--explain",
        type=float,
        metavar="SECONDS",
        help="after timing, request each page once more and EXPLAIN ANALYZE its queries slower "
        "than SECONDS",
    )
    parser.add_argument(
        "--vacuum",
        action="store_true",
        help="VACUUM ANALYZE the charges first (PostgreSQL), as autovacuum would after an import: "
        "until then, index-only scans still read the table to check each row's visibility",
    )
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="build (or check) the database and stop: build outside the shared lock, time inside",
    )
    args = parser.parse_args()
    import_rows = min(args.rows, args.import_rows)
    pg_database = f"{PG_BASE}_{args.rows}"
    keep = Path(args.keep)
    keep.mkdir(parents=True, exist_ok=True)
    if args.db == "sqlite":
        os.environ["DATABASE_URL"] = f"sqlite:///{keep / f'pages-{args.rows}.sqlite3'}"
    else:
        os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{pg_database}"
    os.environ["OPENCHARGEBACK_HOME"] = str(keep / f"home-{args.db}-{args.rows}")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-" + os.urandom(16).hex())
    os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")  # the test client speaks HTTP
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openchargeback.settings")
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver")
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    if args.db == "postgres":
        import psycopg

        with psycopg.connect(
            "postgres://postgres@127.0.0.1:5432/postgres", autocommit=True
        ) as conn:
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname=%s", [pg_database]
            ).fetchone():
                conn.execute(f"CREATE DATABASE {pg_database}")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment
    from focus_synth import generate

    from accounts.models import User
    from billing.config import parse_config
    from billing.models import BillingPeriod, Charge, Flag
    from billing.services import import_files

    setup_test_environment()
    call_command("migrate", verbosity=0)
    # Production settings serve hashed static names: the pages need the manifest.
    call_command("collectstatic", interactive=False, verbosity=0)
    if not BillingPeriod.objects.filter(key="2026-10").exists():
        path = keep / f"pages-{import_rows}.csv"
        if not path.exists():
            generate(path, import_rows, month="2026-10", seed=3)
        t0 = time.perf_counter()
        config = parse_config({"sources": [{"name": "bench", "pattern": "bench"}]})
        import_files(paths=[path], source="bench", config=config)
        print(f"imported {import_rows:,} rows in {time.perf_counter() - t0:.1f}s")
        clean = Charge.objects.filter(review_status="clean")
        ids = list(clean.values_list("id", flat=True)[::50])
        Charge.objects.filter(id__in=ids).update(
            review_status="flagged", flags=int(Flag.PATTERN_MATCH)
        )
    period = BillingPeriod.objects.get(key="2026-10")
    fill_with_copies(period, args.rows)
    if args.vacuum and connection.vendor == "postgresql":
        t0 = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM (ANALYZE) {Charge._meta.db_table}")
        print(f"VACUUM (ANALYZE) in {time.perf_counter() - t0:.0f}s")
    if args.prepare_only:
        return
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser(
        "bench", "bench@example.edu", "bench"
    )
    client = Client()
    client.force_login(user)
    middle = Charge.objects.filter(period=period).order_by("id").values_list("id", flat=True)
    sample = (
        Charge.objects.filter(id__gte=(middle.first() + middle.last()) // 2)
        .exclude(pi=None)
        .exclude(resource_id="")
        .order_by("id")[0]
    )
    pi_email = sample.pi.email if sample.pi else ""
    project_code = sample.project.code if sample.project else ""
    flagged = Charge.objects.filter(period=period, review_status="flagged").order_by("id")
    queued = flagged.filter(id__gte=sample.pk).exclude(pi=None).first() or flagged.first()
    charges = "/admin/billing/charge/"
    queue = "/admin/billing/reviewitem/"
    period_q = f"period__id__exact={period.pk}"
    pages = {
        "dashboard": "/admin/",
        "charges": charges,
        "charges, period": f"{charges}?{period_q}",
        "charges, period+flagged": f"{charges}?{period_q}&review_status__exact=flagged",
        "charges, flagged": f"{charges}?review_status__exact=flagged",
        "charges, rejected": f"{charges}?review_status__exact=rejected",
        "charges, reason no PI": f"{charges}?reason=no_pi",
        "charges, reason pattern": f"{charges}?{period_q}&reason=pattern_match",
        "charges, source": f"{charges}?source__id__exact={sample.source_id}",
        "charges, category credit": f"{charges}?category=Credit",
        "charges, service": f"{charges}?service={quote(sample.service_name)}",
        "charges, PI": f"{charges}?pi_email={quote(pi_email)}",
        "charges, PI+period": f"{charges}?pi_email={quote(pi_email)}&{period_q}",
        "charges, project": f"{charges}?project_id={quote(project_code)}",
        "charges, search resource": f"{charges}?q={quote(sample.resource_id)}",
        "charges, search fund/org": f"{charges}?q={quote(sample.fund_org)}",
        "charges, search sub-account": f"{charges}?q={quote(sample.sub_account_id)}",
        "charges, search nothing": f"{charges}?q=no-such-identifier",
        "charges, by id ascending": f"{charges}?o=0",
        "charges, by resource id": f"{charges}?o=1",
        "charges, by fund/org": f"{charges}?o=5",
        "charges, by status": f"{charges}?o=6",
        "charges, page 50": f"{charges}?p=50",
        "charges, page 101 (past cap)": f"{charges}?p=101",
        "charge detail": f"{charges}{sample.pk}/change/",
        "review queue": queue,
        "review queue, period": f"{queue}?{period_q}",
        "review queue, reason no PI": f"{queue}?reason=no_pi",
        "review queue, source": f"{queue}?source__id__exact={sample.source_id}",
        "review queue, service": f"{queue}?service={quote(queued.service_name)}",
        "review queue, PI": f"{queue}?pi_email={quote(queued.pi.email if queued.pi else '')}",
        "review queue, project": (
            f"{queue}?project_id={quote(queued.project.code if queued.project else '')}"
        ),
        "review queue, search": f"{queue}?q={quote(queued.resource_id)}",
        "review queue, approved": f"{queue}?status=approved",
        "review queue, all": f"{queue}?status=all",
        "review queue, all, search resource": f"{queue}?status=all&q={quote(sample.resource_id)}",
        "review queue, all, search fund/org": f"{queue}?status=all&q={quote(sample.fund_org)}",
        "review queue, all, search by billed": (
            f"{queue}?status=all&q={quote(sample.fund_org)}&o=3"
        ),
        # The queue has actions, so its columns count from 1 (0 is the checkbox).
        "review queue, by resource id": f"{queue}?o=2",
        "review queue, by billed": f"{queue}?o=3",
        "review queue, by billed desc": f"{queue}?o=-3",
        "review queue, page 50": f"{queue}?p=50",
        "review item detail": f"{queue}{queued.pk}/change/",
        "periods": "/admin/billing/billingperiod/",
        "period detail": f"/admin/billing/billingperiod/{period.pk}/change/",
        "imports": "/admin/billing/import/",
        "audit": "/admin/accounts/auditevent/",
    }
    if args.only:
        pages = {name: url for name, url in pages.items() if args.only in name}
    if args.skip:
        pages = {name: url for name, url in pages.items() if args.skip not in name}
    with connection.cursor() as cursor:
        indexes = sorted(
            name
            for name, info in connection.introspection.get_constraints(
                cursor, Charge._meta.db_table
            ).items()
            if info["index"]
        )
    print(f"{Charge.objects.count():,} charges; indexes on charges: {', '.join(indexes)}")
    load_before = os.getloadavg()[0]
    cpu_before = time.process_time()
    results = {}
    for name, url in pages.items():
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            response = client.get(url)
            times.append(time.perf_counter() - t0)
            if response.status_code != 200:
                raise SystemExit(f"{name}: {url} -> {response.status_code}")
        results[name] = {
            "median_s": round(statistics.median(times), 3),
            "max_s": round(max(times), 3),
        }
        print(f"{name:<28} median {statistics.median(times):.3f}s  worst {max(times):.3f}s")
    if args.explain is not None:
        explain_slow_queries(client, pages, args.explain)
    print(json.dumps({"db": args.db, "charges": Charge.objects.count(), "pages": results}))
    print(
        f"(load {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, on {os.cpu_count()} "
        f"cores; this process's CPU {time.process_time() - cpu_before:.1f}s)"
    )


if __name__ == "__main__":
    main()
