"""Statements benchmark: 5,000 statements for a 1,000,000-charge period, rendered by two workers.

    python bench/statements_bench.py [--charges 1000000] [--groups 5000] [--workers 2]
                                     [--pg-database oc_statements_bench] [--redis-db 14]

Builds a fresh PostgreSQL database, writes the charges with COPY (not measured): 2,000 PIs,
`--groups` (PI, project, fund/org) groups with 10 resources each over 6 services, hourly rows
with 10-decimal costs, 1% credits, 1% flagged. Starts `--workers` real Celery worker processes
(solo pool, one task at a time each) on Redis db `--redis-db`, then measures
`statement_generate` (figures by GROUP BY, numbering, statements and lines written, tasks
enqueued) and the rendering of every PDF by the workers, until the last statement is ready.
Checks every statement's amount due against the group's exact total rounded once. Then times
one-page renders in-process. Not part of the test suite. Prints numbers and `uptime` load.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
SERVICES = [
    ("Amazon EC2", "Hours"),
    ("Amazon S3", "GB-Hours"),
    ("Azure Virtual Machines", "1 Hour"),
    ("HPC Cluster", "core-hours"),
    ("Amazon EBS", "GB-Hours"),
    ("Research Storage - Home", "TB-months"),
]


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def fresh_database(name: str) -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name]
        )
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def write_charges(n_charges: int, n_groups: int, seed: int = 7) -> None:
    """COPY n_charges rows over n_groups groups (clean, credits, 1% flagged)."""
    from django.db import connection

    from billing.models import PI, BillingPeriod, Charge, Import, ImportFile, Project, Source

    rng = random.Random(seed)
    source = Source.objects.create(name="bench")
    period = BillingPeriod.objects.create(key="2026-10")
    record = Import.objects.create(source=source, outcome="imported", actor="bench")
    file = ImportFile.objects.create(
        import_run=record, name="bench.csv", sha256="0" * 64, size_bytes=0, rows=n_charges
    )
    n_pis = min(2000, n_groups)
    PI.objects.bulk_create(
        [PI(email=f"pi{i:05d}@example.edu", name=f"PI {i:05d}") for i in range(n_pis)],
        batch_size=2000,
    )
    Project.objects.bulk_create(
        [Project(code=f"project-{g:05d}", name=f"Project {g}") for g in range(n_groups)],
        batch_size=2000,
    )
    pi_ids = dict(PI.objects.values_list("email", "id"))
    project_ids = dict(Project.objects.values_list("code", "id"))

    values = {
        "source_id": str(source.pk),
        "period_id": str(period.pk),
        "import_file_id": str(file.pk),
        "billing_period_start": "2026-10-01 00:00:00+00",
        "billing_currency": "USD",
    }
    row_columns = [
        "line_number",
        "fingerprint",
        "billed_cost",
        "list_cost",
        "charge_category",
        "service_name",
        "resource_id",
        "resource_name",
        "consumed_quantity",
        "consumed_unit",
        "pi_id",
        "project_id",
        "fund_org",
        "review_status",
        "flags",
    ]
    columns, constant = [], []
    for f in Charge._meta.concrete_fields:
        if f.primary_key or f.column in row_columns:
            continue
        if f.column in values:
            columns.append(f.column)
            constant.append(values[f.column])
        elif f.null:
            continue
        elif f.get_internal_type() == "JSONField":
            columns.append(f.column)
            constant.append("{}")
        else:
            columns.append(f.column)
            constant.append("")
    prefix = "\t".join(constant)
    per_group = n_charges // n_groups
    line = 1
    with connection.cursor() as cursor:
        raw = cursor.cursor
        sql = f"COPY billing_charge ({', '.join(columns + row_columns)}) FROM STDIN"
        with raw.copy(sql) as copy:
            for g in range(n_groups):
                pi_id = pi_ids[f"pi{g % n_pis:05d}@example.edu"]
                project_id = project_ids[f"project-{g:05d}"]
                fund = f"FUND-{g:05d}"
                chunk = []
                for k in range(per_group):
                    line += 1
                    r = k % 10
                    service, unit = SERVICES[(g + r) % len(SERVICES)]
                    units = rng.randrange(1, 5_000_000_000)  # 1e-10 dollars: up to $0.50
                    listed = units + rng.randrange(0, 1_000_000_000)
                    category, status, flags = "Usage", "clean", 0
                    if line % 100 == 0:
                        category, units, listed = "Credit", -units, -units
                    elif line % 97 == 0:
                        status, flags = "flagged", 8
                    chunk.append(
                        f"{prefix}\t{line}\t{line:032x}\t{_dec(units)}\t{_dec(listed)}\t"
                        f"{category}\t{service}\tres-{g}-{r}\tresource-{g:05d}-{r}\t"
                        f"{rng.randrange(1, 100000)}.{rng.randrange(0, 1000):03d}\t{unit}\t"
                        f"{pi_id}\t{project_id}\t{fund}\t{status}\t{flags}\n"
                    )
                copy.write("".join(chunk))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE billing_charge")
    BillingPeriod.objects.filter(pk=period.pk).update(status="closed")


def _dec(units: int) -> str:
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10**10)
    return f"{sign}{whole}.{frac:010d}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> float:
    """CPU time of every postgres process (the server is shared: an upper bound for ours)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "comm").read_text().strip().startswith("postgres"):
                    total += cpu_seconds(int(proc.name))
            except OSError:
                continue
    return total


def start_workers(n: int, env: dict, logdir: Path) -> list[subprocess.Popen]:
    procs = []
    for i in range(n):
        log = open(logdir / f"worker{i}.log", "w")  # noqa: SIM115 (closed with the process)
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "openchargeback",
                    "worker",
                    "--pool=solo",
                    "--loglevel=WARNING",
                    "--without-heartbeat",
                    "--without-gossip",
                    "--without-mingle",
                    "-n",
                    f"bench{i}@%h",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return procs


def one_page_timing(repeat: int = 200) -> dict:
    from statements.figures import Line, Section, StatementFigures, _allocate
    from statements.pdf import PdfData, render_pdf

    f = StatementFigures(1, 1, "NSF-ATM-2024", "USD")
    for s in range(3):
        section = Section("usage", SERVICES[s][0], SERVICES[s][0])
        for r in range(5):
            section.lines.append(
                Line(
                    SERVICES[s][0],
                    f"res-{s}-{r}",
                    f"resource-{s}-{r}",
                    SERVICES[s][1],
                    Decimal("720.5"),
                    720,
                    Decimal("123.4567891234"),
                    Decimal("150.0000000001"),
                )
            )
        f.sections.append(section)
    _allocate(f)
    data = PdfData(
        institution="Example University Research Computing",
        number="ST-202610-00001",
        period_key="2026-10",
        issued_on=date(2026, 11, 2),
        currency="USD",
        pi_email="pi00001@example.edu",
        pi_name="PI 1",
        project_code="project-00001",
        fund_org="FUND-00001",
        list_amount=f.list_amount,
        due_amount=f.due_amount,
        sections=f.sections,
        references=[("Grant number", "NSF-1234567")],
        contact_email="rc-billing@example.edu",
    )
    render_pdf(data)
    timings = []
    for _ in range(repeat):
        began = time.perf_counter()
        render_pdf(data)
        timings.append((time.perf_counter() - began) * 1000)
    timings.sort()
    return {
        "min_ms": timings[0],
        "median_ms": statistics.median(timings),
        "p90_ms": timings[int(len(timings) * 0.9)],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--charges", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pg-database", default="oc_statements_bench")
    parser.add_argument("--redis-db", type=int, default=14)
    parser.add_argument("--only-render-timing", action="store_true")
    parser.add_argument(
        "--reuse-data",
        action="store_true",
        help="keep the charges of the previous run (drop only the statements)",
    )
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="oc-statements-bench-"))
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-" + secrets.token_urlsafe(30))
    os.environ["OPENCHARGEBACK_HOME"] = str(home)
    os.environ["DJANGO_SETTINGS_MODULE"] = "openchargeback.settings"
    if args.only_render_timing:
        import django

        django.setup()
        print("one-page render:", {k: round(v, 2) for k, v in one_page_timing().items()})
        print("load:", load())
        return 0

    if args.reuse_data:
        os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{args.pg_database}"
    else:
        os.environ["DATABASE_URL"] = fresh_database(args.pg_database)
    # Workers keep their database connection between tasks (recommended for workers).
    os.environ.setdefault("DATABASE_CONN_MAX_AGE", "600")
    os.environ["CELERY_BROKER_URL"] = f"redis://127.0.0.1:6379/{args.redis_db}"
    os.environ.pop("CELERY_RESULT_BACKEND", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0", "--skip-checks"], cwd=ROOT, check=True
    )
    import django

    django.setup()
    import redis

    redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).flushdb()

    from django.db import connection

    from billing.config import BillingConfig
    from billing.models import Charge
    from statements.models import Statement, StatementRun
    from statements.selectors import run_progress
    from statements.services import statement_generate

    if args.reuse_data:
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE statements_statementline, statements_statementemail_statements, "
                "statements_emailattempt, statements_statementemail, statements_statement, "
                "statements_statementnumber, statements_statementrun CASCADE"
            )
    else:
        began = time.perf_counter()
        write_charges(args.charges, args.groups)
        print(
            f"wrote {args.charges:,} charges in {args.groups:,} groups "
            f"({time.perf_counter() - began:.1f} s, not measured)"
        )
    # Expected amounts due, independently: PostgreSQL's exact SUM per group, rounded half up.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.code, round(sum(c.billed_cost), 2) FROM billing_charge c "
            "JOIN billing_project p ON p.id = c.project_id "
            "WHERE c.review_status IN ('clean', 'approved') GROUP BY p.code"
        )
        expected = dict(cursor.fetchall())
    n_charges = Charge.objects.count()

    workers = start_workers(args.workers, dict(os.environ), home)
    time.sleep(4)  # let them connect
    print("load before:", load())
    try:
        pg_cpu_before = postgres_cpu()
        t0 = time.perf_counter()
        c0 = time.process_time()
        result = statement_generate(period_key="2026-10", config=BillingConfig())
        t1 = time.perf_counter()
        generate_cpu = time.process_time() - c0
        run = StatementRun.objects.get(pk=result.run_id)
        while not run_progress(run)["done"]:
            time.sleep(0.25)
            if any(proc.poll() is not None for proc in workers):
                raise SystemExit(f"a worker died; see {home}/worker*.log")
        t2 = time.perf_counter()
        print("load after:", load())
        worker_cpu = sum(cpu_seconds(proc.pid) for proc in workers)
        pg_cpu = postgres_cpu() - pg_cpu_before
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            proc.wait(timeout=60)

    statements = Statement.objects.select_related("project")
    n = statements.count()
    wrong = [s.number for s in statements if s.due_amount != expected[s.project.code]]
    not_ready = statements.exclude(status="ready").count()
    pdf_bytes = sum(f.stat().st_size for f in (home / "media").rglob("*.pdf"))
    print(f"charges              {n_charges:,}")
    print(f"statements           {n:,} ({not_ready} not ready, {len(wrong)} with a wrong amount)")
    print(f"generate (service)   {t1 - t0:.1f} s  figures by GROUP BY, numbers, rows, enqueue")
    print(
        f"render ({args.workers} workers)   {t2 - t1:.1f} s  "
        f"{(t2 - t1) / max(n, 1) * 1000 * args.workers:.1f} ms per statement per worker"
    )
    print(f"total                {t2 - t0:.1f} s  (target 30 s)")
    print(
        f"CPU seconds          generate {generate_cpu:.1f}, workers {worker_cpu:.1f} "
        f"({worker_cpu / max(n, 1) * 1000:.1f} ms per statement), PostgreSQL {pg_cpu:.1f}; "
        f"on an idle 2-core machine about {(generate_cpu + worker_cpu + pg_cpu) / 2:.0f} s"
    )
    print(f"PDFs                 {pdf_bytes / 1e6:.1f} MB")
    print(
        "one-page render:", {k: round(v, 2) for k, v in one_page_timing().items()}, "(target 25 ms)"
    )
    print("load:", load())
    shutil.rmtree(home, ignore_errors=True)
    return 0 if n == args.groups and not wrong and not not_ready else 1


if __name__ == "__main__":
    sys.exit(main())
