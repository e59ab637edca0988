"""The web application under load: gunicorn, N logged-in people, a month of M charges.

    python bench/load_bench.py [--rows 1000000] [--users 50] [--seconds 120] [--workers N]
                               [--threads N] [--database NAME] [--prepare-only]
                               [--locust /tmp/locust-venv/bin/locust]

Target (issue 13): 50 concurrent logged-in users on loopback, each pausing 2 s between pages,
browsing the admin dashboard, the charge list with filters, the review queue and the PI portal,
with 1,000,000 charges in the period: 95th percentile under 300 ms and no errors, on a 2-core
machine; and the first dashboard view after an import under 1 s without workers.

What it does, on PostgreSQL (database --database, default ocb_load_bench_<rows>; the month is
kept and reused):
1. imports a synthetic month (bench/focus_synth.py) once, flags 2% of it for review;
2. makes 5 finance staff logins and 100 PI portal logins (one per PI with charges);
3. appends a one-row file to the month (an import changes its figures) and times the first
   dashboard view after it, through the test client, without workers; then the view with the
   figures' cache emptied (nothing warmed);
4. starts gunicorn (gunicorn.conf.py, with --workers/--threads when given) on a free port and runs
   locust headless (half staff, half PIs) for --seconds, then prints p50/p95/p99, requests and
   errors per page and overall, with the load average before and after.

Locust lives outside the application's virtualenv (it brings gevent):
    python3 -m venv /tmp/locust-venv && /tmp/locust-venv/bin/pip install locust
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB = "ocb_load_bench"  # + the month's size: a run on another size never reuses this one
PASSWORD = "load-bench-password-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} (5 min {five:.2f}) on {os.cpu_count()} cores"


def children_cpu() -> float:
    """CPU seconds of every finished child process (and theirs): gunicorn's workers, locust."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_cpu() -> tuple[int, int]:
    """(busy, total) clock ticks of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def database_cpu(database: str) -> float:
    """CPU seconds so far of the PostgreSQL backends connected to `database` (gunicorn's
    persistent connections, CONN_MAX_AGE): read just before gunicorn stops, it is their CPU
    over the run, less that of connections a restarted worker closed earlier."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace")
            # "postgres: [cluster: ]user database host(port) state"
            if not (command.startswith("postgres: ") and f" postgres {database} " in command):
                continue
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            continue
    return total / ticks


def environment(keep: Path, database: str) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
        "DATABASE_CONN_MAX_AGE": "60",
        "OPENCHARGEBACK_HOME": str(keep / "home"),
        "DJANGO_SECRET_KEY": "load-bench-only-" + "x" * 40,
        "DJANGO_SECURE_SSL_REDIRECT": "0",  # plain HTTP on loopback
        "DJANGO_SECURE_COOKIES": "0",
        "DJANGO_SECURE_HSTS_SECONDS": "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "OPENCHARGEBACK_BASE_URL": "http://127.0.0.1",
        "DJANGO_SETTINGS_MODULE": "openchargeback.settings",
        "OPENCHARGEBACK_LOGIN_FAILURE_LIMIT": "1000",
    }


def prepare(rows: int, keep: Path, database: str) -> dict:
    """The month, its flags and the logins; returns what the locustfile needs."""
    import psycopg

    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname=%s", [database]).fetchone():
            c.execute(f"CREATE DATABASE {database}")
    os.environ.update(environment(keep, database))
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    import django

    django.setup()
    from django.core.management import call_command
    from django.db.models import Count
    from focus_synth import generate

    from accounts.models import User
    from billing.config import parse_config
    from billing.models import PI, BillingPeriod, Charge, Flag
    from billing.services import import_files

    call_command("migrate", verbosity=0)
    # Production serves hashed static files (whitenoise): collected once, as a deployment does.
    call_command("collectstatic", interactive=False, verbosity=0)
    config = parse_config({"sources": [{"name": "bench", "pattern": "bench"}]})
    if not BillingPeriod.objects.filter(key="2026-10").exists():
        path = keep / f"load-{rows}.csv"
        if not path.exists():
            generate(path, rows, month="2026-10", seed=3)
        t0 = time.perf_counter()
        import_files(paths=[path], source="bench", period="2026-10", config=config)
        print(f"imported {rows:,} rows in {time.perf_counter() - t0:.1f} s ({load()})")
        ids = list(Charge.objects.filter(review_status="clean").values_list("id", flat=True)[::50])
        Charge.objects.filter(id__in=ids).update(
            review_status="flagged", flags=int(Flag.PATTERN_MATCH)
        )
    period = BillingPeriod.objects.get(key="2026-10")
    staff = []
    for n in range(5):
        name = f"finance{n}"
        user = User.objects.filter(username=name).first()
        if user is None:
            user = User.objects.create_superuser(name, f"{name}@example.edu", PASSWORD)
        staff.append([name, PASSWORD])
    pis = []
    busiest = (
        PI.objects.filter(charges__period=period).annotate(n=Count("charges")).order_by("-n")[:100]
    )
    for pi in busiest:
        if pi.user_id is None:
            user = User.objects.create_user(f"pi{pi.pk}", pi.email, PASSWORD)
            PI.objects.filter(pk=pi.pk).update(user=user)
            pi.user = user
        pis.append([pi.user.username, PASSWORD, pi.pk, pi.email])

    # The first dashboard view after an import, without workers: one late row appended to the
    # month the dashboard shows (its figures change), then the first view, nothing cleared.
    # Then the same view with the figures' cache emptied: what a view computes when nothing
    # warmed them (as after a review decision without workers).
    from django.core.cache import cache
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()
    one = keep / "bench-one-row.csv"
    generate(one, 1, month="2026-10", seed=int(time.time()) % 100_000)
    t0 = time.perf_counter()
    import_files(paths=[one], source="bench", period="2026-10", append=True, config=config)
    imported = time.perf_counter() - t0
    client = Client()
    client.force_login(User.objects.get(username="finance0"))
    t0 = time.perf_counter()
    response = client.get("/admin/")
    first = time.perf_counter() - t0
    assert response.status_code == 200, response.status_code
    cache.clear()
    t0 = time.perf_counter()
    client.get("/admin/")
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    client.get("/admin/")
    cached = time.perf_counter() - t0
    print(
        f"one-row import into the shown month: {imported:.3f} s; first dashboard view after "
        f"it, no workers: {first:.3f} s; with the cache emptied: {cold:.3f} s; then "
        f"{cached:.3f} s cached ({load()})"
    )
    charges = Charge.objects.filter(period=period).count()
    summary = {"charges": charges, "first_dashboard_s": round(first, 3)}
    return {
        "summary": summary,
        "period_id": period.pk,
        "staff": staff,
        "pis": pis,
        "charges": charges,
        "first_dashboard_s": round(first, 3),
        "cold_dashboard_s": round(cold, 3),
        "one_row_import_s": round(imported, 3),
    }


def serve(keep: Path, database: str, port: int, workers, threads) -> subprocess.Popen:
    """gunicorn with the repository's gunicorn.conf.py (read from the working directory, as a
    deployment does), on a free port; --workers/--threads override the file's."""
    gunicorn = [str(Path(sys.executable).parent / "gunicorn")]
    args = ["openchargeback.wsgi:application", "--bind", f"127.0.0.1:{port}"]
    if workers:
        args += ["--workers", str(workers)]
    if threads:
        args += ["--threads", str(threads), "--worker-class", "gthread"]
    args += ["--log-level", "warning"]
    proc = subprocess.Popen(gunicorn + args, cwd=ROOT, env=environment(keep, database))
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("gunicorn did not start")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--workers", type=int, help="default: gunicorn.conf.py's")
    parser.add_argument("--threads", type=int, help="default: gunicorn.conf.py's")
    parser.add_argument("--keep", default="/tmp/ocb-load-bench")
    parser.add_argument("--locust", default="/tmp/locust-venv/bin/locust")
    parser.add_argument(
        "--database", help=f"PostgreSQL database to keep the month in (default {DB}_<rows>)"
    )
    parser.add_argument(
        "--prepare-only", action="store_true", help="make the month and logins, then stop"
    )
    args = parser.parse_args()
    keep = Path(args.keep)
    keep.mkdir(parents=True, exist_ok=True)
    database = args.database or f"{DB}_{args.rows}"
    world = prepare(args.rows, keep, database)
    if args.prepare_only:
        print(json.dumps(world["summary"]))
        return

    port = free_port()
    cpu0 = children_cpu()
    server = serve(keep, database, port, args.workers, args.threads)
    before = load()
    busy0, total0 = machine_cpu()
    out = keep / "locust"
    env = {
        **os.environ,
        "OC_PERIOD_ID": str(world["period_id"]),
        "OC_STAFF": json.dumps(world["staff"]),
        "OC_PIS": json.dumps(world["pis"]),
    }
    locust_cpu = db_cpu = 0.0
    try:
        cpu1 = children_cpu()
        subprocess.run(
            [
                args.locust,
                "-f",
                str(ROOT / "bench" / "locustfile.py"),
                "--headless",
                "--users",
                str(args.users),
                "--spawn-rate",
                "10",
                "--run-time",
                f"{args.seconds}s",
                "--host",
                f"http://127.0.0.1:{port}",
                "--csv",
                str(out),
                "--only-summary",
                "--loglevel",
                "WARNING",
            ],
            env=env,
            check=False,
        )
        locust_cpu = children_cpu() - cpu1
        busy1, total1 = machine_cpu()
        db_cpu = database_cpu(database)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    after = load()
    server_cpu = children_cpu() - cpu0 - locust_cpu
    machine_busy = (busy1 - busy0) / max(total1 - total0, 1)

    with open(f"{out}_stats.csv", newline="") as handle:
        stats = list(csv.DictReader(handle))
    print(f"\n{'page':<28}{'requests':>9}{'errors':>8}{'p50':>7}{'p95':>7}{'p99':>7}  (ms)")
    for row in stats:
        print(
            f"{row['Name'][:27]:<28}{row['Request Count']:>9}{row['Failure Count']:>8}"
            f"{row['50%']:>7}{row['95%']:>7}{row['99%']:>7}"
        )
    failures = Path(f"{out}_failures.csv")
    if failures.exists():  # what each kind of error was (status 0: no answer)
        with open(failures, newline="") as handle:
            for row in csv.DictReader(handle):
                print(f"error x{row['Occurrences']}: {row['Name']}: {row['Error'][:200]}")
    total = next(r for r in stats if r["Name"] == "Aggregated")
    if not int(total["Request Count"]):
        raise SystemExit("no request was made: see locust's messages above")
    print(
        json.dumps(
            {
                "charges": world["charges"],
                "users": args.users,
                "seconds": args.seconds,
                "gunicorn": (
                    f"{args.workers or os.environ.get('GUNICORN_WORKERS', 2 * os.cpu_count() + 1)}"
                    f" workers x {args.threads or os.environ.get('GUNICORN_THREADS', 1)} threads"
                ),
                "requests": int(total["Request Count"]),
                "errors": int(total["Failure Count"]),
                "p50_ms": int(total["50%"]),  # locust's percentiles are whole milliseconds
                "p95_ms": int(total["95%"]),
                "p99_ms": int(total["99%"]),
                "first_dashboard_s": world["first_dashboard_s"],
                "cold_dashboard_s": world["cold_dashboard_s"],
                "one_row_import_s": world["one_row_import_s"],
                # CPU seconds over the run: locust (same machine), gunicorn (master + workers);
                # the rest of the machine's busy time is PostgreSQL and other processes.
                "locust_cpu_s": round(locust_cpu, 1),
                "gunicorn_cpu_s": round(server_cpu, 1),
                "postgres_cpu_s": round(db_cpu, 1),
                "machine_busy": f"{machine_busy:.0%} of {os.cpu_count()} cores",
            }
        )
    )
    print(f"before: {before}; after: {after}")


if __name__ == "__main__":
    main()
