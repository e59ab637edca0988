"""Admin page timings on a period of N charges (target: every page under 0.5 s at 1,000,000).

    python bench/admin_pages_bench.py [--rows 1000000] [--db sqlite|postgres] [--keep DIR]

Imports a synthetic month once (kept in DIR with --keep, and reused on the next run), flags 2%
of it for review, then requests each page through Django's test client as a superuser, five
times, and prints the median and worst time per page. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_URL = "postgres://postgres@127.0.0.1:5432/ocb_pages_bench"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--keep", default="/tmp/ocb-pages-bench")
    args = parser.parse_args()
    keep = Path(args.keep)
    keep.mkdir(parents=True, exist_ok=True)
    if args.db == "sqlite":
        os.environ["DATABASE_URL"] = f"sqlite:///{keep / f'pages-{args.rows}.sqlite3'}"
    else:
        os.environ["DATABASE_URL"] = PG_URL
    os.environ["OPENCHARGEBACK_HOME"] = str(keep / "home")
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
                "SELECT 1 FROM pg_database WHERE datname='ocb_pages_bench'"
            ).fetchone():
                conn.execute("CREATE DATABASE ocb_pages_bench")
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import setup_test_environment
    from focus_synth import generate

    from accounts.models import User
    from billing.config import parse_config
    from billing.models import BillingPeriod, Charge, Flag
    from billing.services import import_files

    setup_test_environment()
    call_command("migrate", verbosity=0)
    if not BillingPeriod.objects.filter(key="2026-10").exists():
        path = keep / f"pages-{args.rows}.csv"
        if not path.exists():
            generate(path, args.rows, month="2026-10", seed=3)
        t0 = time.perf_counter()
        config = parse_config({"sources": [{"name": "bench", "pattern": "bench"}]})
        import_files(paths=[path], source="bench", config=config)
        print(f"imported {args.rows:,} rows in {time.perf_counter() - t0:.1f}s")
        clean = Charge.objects.filter(review_status="clean")
        ids = list(clean.values_list("id", flat=True)[::50])
        Charge.objects.filter(id__in=ids).update(
            review_status="flagged", flags=int(Flag.PATTERN_MATCH)
        )
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser(
        "bench", "bench@example.edu", "bench"
    )
    client = Client()
    client.force_login(user)
    sample = Charge.objects.order_by("id")[args.rows // 2]
    pi_email = sample.pi.email if sample.pi else ""
    project_code = sample.project.code if sample.project else ""
    period = BillingPeriod.objects.get(key="2026-10")
    pages = {
        "dashboard": "/admin/",
        "charges": "/admin/billing/charge/",
        "charges, period": f"/admin/billing/charge/?period__id__exact={period.pk}",
        "charges, period+flagged": (
            f"/admin/billing/charge/?period__id__exact={period.pk}&review_status__exact=flagged"
        ),
        "charges, PI": f"/admin/billing/charge/?pi_email={pi_email}",
        "charges, project": f"/admin/billing/charge/?project_id={project_code}",
        "charges, search resource": f"/admin/billing/charge/?q={sample.resource_id}",
        "charges, search fund/org": f"/admin/billing/charge/?q={sample.fund_org}",
        "charges, by resource id": "/admin/billing/charge/?o=1",
        "charges, page 50": "/admin/billing/charge/?p=50",
        "charge detail": f"/admin/billing/charge/{sample.pk}/change/",
        "review queue": "/admin/billing/reviewitem/",
        "review queue, period": f"/admin/billing/reviewitem/?period__id__exact={period.pk}",
        "review queue, PI": f"/admin/billing/reviewitem/?pi_email={pi_email}",
        "review queue, search": f"/admin/billing/reviewitem/?q={sample.resource_id}",
        "periods": "/admin/billing/billingperiod/",
        "period detail": f"/admin/billing/billingperiod/{period.pk}/change/",
        "imports": "/admin/billing/import/",
        "audit": "/admin/accounts/auditevent/",
    }
    results = {}
    for name, url in pages.items():
        times = []
        for _ in range(5):
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
    print(json.dumps({"db": args.db, "charges": Charge.objects.count(), "pages": results}))
    print(f"(load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
