"""Each page of the load test (bench/locustfile.py), one at a time, in-process, under production
settings (DEBUG off) on the month bench/load_bench.py prepared: wall and CPU time per request,
queries per request, and optionally cProfile's top functions.

    python bench/page_profile.py --database ocweb_load [--repeat 10] [--profile 25]
                                 [--keep /tmp/ocb-load-bench] [--cold-dashboard]

Run bench/load_bench.py --prepare-only first (it makes the month and the logins). Each page is
requested once to warm up (connections, templates, the figures' cache), then --repeat times;
the median and the CPU time per request are printed. --cold-dashboard also times the
dashboard with the figures' cache emptied first, as the first view after an import without
workers. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]


@contextmanager
def captured(connection):
    """Every query the block runs: (seconds, sql)."""
    queries = []

    def wrapper(execute, sql, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            queries.append((time.perf_counter() - t0, sql))

    with connection.execute_wrapper(wrapper):
        yield queries


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--keep", default="/tmp/ocb-load-bench")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--profile", type=int, default=0, help="print N top functions per page")
    parser.add_argument("--only", default="", help="pages whose name contains this")
    parser.add_argument("--cold-dashboard", action="store_true")
    args = parser.parse_args()

    from load_bench import environment, load

    os.environ.update(environment(Path(args.keep), args.database))
    import django

    django.setup()
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from accounts.models import User
    from billing.models import PI, BillingPeriod, Charge

    setup_test_environment()
    period = BillingPeriod.objects.get(key="2026-10")
    staff = User.objects.get(username="finance0")
    pi = (
        PI.objects.filter(user__isnull=False, charges__period=period)
        .order_by("-pk")
        .distinct()
        .first()
    )
    admin = "/admin/"
    pages = [
        ("admin dashboard", staff, admin),
        ("charges, period", staff, f"{admin}billing/charge/?period__id__exact={period.pk}"),
        (
            "charges, period + flagged",
            staff,
            f"{admin}billing/charge/?period__id__exact={period.pk}&review_status__exact=flagged",
        ),
        ("charges, PI", staff, f"{admin}billing/charge/?pi_email={pi.email}"),
        ("charges, page 20", staff, f"{admin}billing/charge/?p=20"),
        ("review queue", staff, f"{admin}billing/reviewitem/?period__id__exact={period.pk}"),
        ("portal home", pi.user, "/portal/"),
        ("portal statements", pi.user, f"/portal/pi/{pi.pk}/"),
        ("portal open month", pi.user, f"/portal/pi/{pi.pk}/open/"),
    ]
    charges = Charge.objects.filter(period=period).count()
    print(f"{charges:,} charges in {period.key}; {load()}")
    clients = {}
    print(f"\n{'page':<28}{'median ms':>10}{'CPU ms':>8}{'queries':>8}{'KB':>6}")
    for name, user, url in pages:
        if args.only and args.only not in name:
            continue
        client = clients.get(user.pk)
        if client is None:
            client = clients[user.pk] = Client()
            client.force_login(user)
        response = client.get(url, follow=True)  # as locust does: the portal home redirects
        assert response.status_code == 200, (name, response.status_code)
        with captured(connection) as queries:
            client.get(url, follow=True)
        walls, cpus = [], []
        for _ in range(args.repeat):
            c0, t0 = time.process_time(), time.perf_counter()
            client.get(url, follow=True)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        print(
            f"{name:<28}{statistics.median(walls) * 1000:>10.1f}"
            f"{statistics.mean(cpus) * 1000:>8.1f}{len(queries):>8}"
            f"{len(response.content) // 1024:>6}"
        )
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(3):
                client.get(url, follow=True)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.profile)
            print(out.getvalue())
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.profile)
            print(out.getvalue())
            for seconds, sql in sorted(queries, reverse=True)[:5]:
                print(f"   {seconds * 1000:.1f} ms  {sql[:300]}")
    if args.cold_dashboard:
        client = clients.get(staff.pk) or Client()
        client.force_login(staff)
        times = []
        for _ in range(3):
            cache.clear()
            c0, t0 = time.process_time(), time.perf_counter()
            with captured(connection) as queries:
                response = client.get(admin)
            times.append((time.perf_counter() - t0, time.process_time() - c0, len(queries)))
            assert response.status_code == 200
        for wall, cpu, n in times:
            print(
                f"cold dashboard: {wall * 1000:.0f} ms wall, {cpu * 1000:.0f} ms CPU, {n} queries"
            )
        if args.profile:
            for seconds, sql in sorted(queries, reverse=True)[:8]:
                print(f"   {seconds * 1000:.1f} ms  {sql[:400]}")
    print(load())


if __name__ == "__main__":
    main()
