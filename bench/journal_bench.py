"""Journal benchmark: the GL export of a period of N synthetic charges (default 1,000,000).

    python bench/journal_bench.py [--rows 1000000] [--db sqlite] [--db postgres] [--repeat 3]
                                  [--workdir DIR]

Generates a synthetic FOCUS month (bench/focus_synth.py), splits it by provider into three
sources (aws, azure, hpc, so statements span several sources and the allocation has work to
do), imports it once per database, then times `manage.py export_journal -f gl --json` in its
own process, --repeat times: wall time including start-up, the process's peak RSS and CPU time. Each
run is checked: debits equal credits, and repeated runs give the same SHA-256. With --workdir
the generated files and the SQLite database are kept and reused by the next run (the
PostgreSQL database is reused when it already holds the month). Not part of the test suite.
Each repeat also runs the same export in a child that times Django's start-up and the command
apart (wall and CPU of each). Target (issue 13): 1.5 s or less for 1,000,000 charges, start-up
included, on both databases.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from focus_synth import generate  # noqa: E402

MONTH = "2025-01"
CONFIG = """
currency: USD
sources:
  - {name: aws, credit_fund_org: IT-CLOUD-AWS, account_code: "54100"}
  - {name: azure, credit_fund_org: IT-CLOUD-AZURE, account_code: "54100"}
  - {name: hpc, credit_fund_org: RC-HPC-OPS, account_code: "54200"}
review:
  fund_org_patterns: ['^[A-Z]{2,6}-[A-Z0-9-]+$']
journal:
  default_account: "54000"
"""
PREFIX_SOURCE = {"AWS": "aws", "AZ": "azure", "HPC": "hpc"}
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = os.environ.get("BENCH_PG_DATABASE", "oc_journals")
# Runs the export as a child and reports its wall time, peak RSS and CPU time (user + system).
WRAPPER = (
    "import resource,subprocess,sys,time;"
    "t=time.perf_counter();p=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
    "e=time.perf_counter()-t;"
    "u=resource.getrusage(resource.RUSAGE_CHILDREN);"
    "sys.stdout.write(p.stdout);sys.stderr.write(p.stderr);"
    "print(f'@@ {e} {u.ru_maxrss} {u.ru_utime + u.ru_stime}',file=sys.stderr);"
    "sys.exit(p.returncode)"
)
# The same export in a child that times its two halves: Django's start-up (settings, apps, the
# admin's autodiscovery: what every `openchargeback` command pays) and the command itself.
SPLIT = (
    "import io,os,sys,time;t0=time.perf_counter();c0=time.process_time();"
    "os.environ.setdefault('DJANGO_SETTINGS_MODULE','openchargeback.settings');"
    "import django;django.setup();t1=time.perf_counter();c1=time.process_time();"
    "from django.core.management import call_command;"
    "call_command(*sys.argv[1:],stdout=io.StringIO());"
    "t2=time.perf_counter();c2=time.process_time();"
    "print(f'@@ {t1-t0} {c1-c0} {t2-t1} {c2-c1}')"
)


def run(cmd, env, check=True):
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if check and proc.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{proc.stderr[-3000:]}")
    return proc


def split_files(rows: int, workdir: Path) -> dict[str, Path]:
    """The synthetic month, split by provider (InvoiceId prefix) into one file per source."""
    paths = {source: workdir / f"{source}_{MONTH}_{rows}.csv" for source in PREFIX_SOURCE.values()}
    if all(p.exists() for p in paths.values()):
        return paths
    whole = workdir / f"synthetic_{rows}.csv"
    t0 = time.perf_counter()
    generate(whole, rows, month=MONTH, seed=1)
    with open(whole, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        invoice = header.index("InvoiceId")
        outs = {s: open(p, "w", encoding="utf-8", newline="") for s, p in paths.items()}
        writers = {s: csv.writer(f) for s, f in outs.items()}
        for w in writers.values():
            w.writerow(header)
        for row in reader:
            writers[PREFIX_SOURCE[row[invoice].split("-")[0]]].writerow(row)
        for f in outs.values():
            f.close()
    whole.unlink()
    print(f"generated and split {rows:,} rows in {time.perf_counter() - t0:.1f}s", flush=True)
    return paths


def database(kind: str, workdir: Path, rows: int) -> tuple[str, bool]:
    """(DATABASE_URL, already holds the month)."""
    if kind == "sqlite":
        path = workdir / f"journal_bench_{rows}.sqlite3"
        return f"sqlite:///{path}", path.exists()
    import psycopg

    url = f"postgres://postgres@127.0.0.1:5432/{PG_DATABASE}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)
        ).fetchone()
    if exists:
        try:
            with psycopg.connect(url) as conn:
                n = conn.execute(
                    "SELECT count(*) FROM billing_charge c JOIN billing_billingperiod p "
                    "ON p.id = c.period_id WHERE p.key = %s",
                    (MONTH,),
                ).fetchone()[0]
            if n >= rows * 0.99:
                return url, True
        except psycopg.Error:
            pass
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE}")
        conn.execute(f"CREATE DATABASE {PG_DATABASE}")
    return url, False


def bench(kind: str, rows: int, repeat: int, workdir: Path, files: dict[str, Path]) -> dict:
    url, loaded = database(kind, workdir, rows)
    env = dict(os.environ, DATABASE_URL=url, OPENCHARGEBACK_HOME=str(workdir / f"home-{kind}"))
    # Production settings need a secret key; a throwaway one for the benchmark's processes.
    env.setdefault("DJANGO_SECRET_KEY", "bench-only-" + secrets.token_urlsafe(30))
    config = workdir / "journal_bench.yaml"
    config.write_text(CONFIG)
    python = sys.executable
    # Always: a database made by an older version gets this version's schema and indexes.
    run([python, "manage.py", "migrate", "-v0"], env)
    if not loaded:
        t0 = time.perf_counter()
        for source, path in files.items():
            run(
                [python, "manage.py", "ingest", str(path), "-s", source, "-c", str(config)],
                env,
            )
        print(f"[{kind}] imported in {time.perf_counter() - t0:.1f}s", flush=True)
    runs = []
    for _ in range(repeat):
        load = os.getloadavg()[0]
        proc = run(
            [
                python,
                "-c",
                WRAPPER,
                python,
                "manage.py",
                "export_journal",
                "-p",
                MONTH,
                "-f",
                "gl",
                "-c",
                str(config),
                "--json",
            ],
            env,
        )
        seconds, max_rss_kb, cpu = proc.stderr.strip().splitlines()[-1].split()[1:]
        out = json.loads(proc.stdout)
        assert out["debit_total"] == out["credit_total"], out
        runs.append(
            {
                "seconds": round(float(seconds), 2),
                "peak_mb": int(int(max_rss_kb) / 1024),
                "client_cpu_s": round(float(cpu), 2),
                "load_1min": round(load, 2),
                "lines": out["rows"],
                "sha256": out["files"][0]["sha256"][:16],
            }
        )
        split = run(
            [python, "-c", SPLIT, "export_journal", "-p", MONTH, "-f", "gl", "-c", str(config)],
            env,
        )
        startup, startup_cpu, export, export_cpu = map(
            float, split.stdout.strip().splitlines()[-1].split()[1:]
        )
        runs[-1].update(
            startup_s=round(startup, 2),
            startup_cpu_s=round(startup_cpu, 2),
            export_s=round(export, 2),
            export_cpu_s=round(export_cpu, 2),
            load_1min_after=round(os.getloadavg()[0], 2),
        )
        print(f"[{kind}] {json.dumps(runs[-1])}", flush=True)
    charges = run(
        [
            python,
            "manage.py",
            "shell",
            "-c",
            "from billing.models import Charge as C;"
            f"print(C.objects.filter(period__key='{MONTH}',"
            "review_status__in=C.BILLABLE_STATUSES).count())",
        ],
        env,
    ).stdout.strip()
    shas = {r["sha256"] for r in runs}
    return {
        "db": kind,
        "billable_charges": int(charges.splitlines()[-1]),
        "gl_lines": runs[0]["lines"],
        "debit_total": out["debit_total"],
        "seconds": [r["seconds"] for r in runs],
        "startup_s": [r["startup_s"] for r in runs],
        "export_s": [r["export_s"] for r in runs],
        "best_seconds": min(r["seconds"] for r in runs),
        "peak_mb": max(r["peak_mb"] for r in runs),
        "same_bytes_every_run": len(shas) == 1,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgres"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", help="Keep (and reuse) generated files and databases here.")
    args = parser.parse_args()
    workdir = Path(args.workdir or Path(tempfile.gettempdir()) / "ocb-journal-bench")
    workdir.mkdir(parents=True, exist_ok=True)
    files = split_files(args.rows, workdir)
    results = defaultdict(dict)
    for kind in args.db or ["sqlite", "postgres"]:
        results[kind] = bench(kind, args.rows, args.repeat, workdir, files)
        print(json.dumps(results[kind]), flush=True)
    print(f"(this machine: {os.cpu_count()} cores; uptime load {os.getloadavg()})")


if __name__ == "__main__":
    main()
