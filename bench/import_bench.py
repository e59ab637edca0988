"""Import benchmark: a synthetic FOCUS file of N rows, imported on SQLite and PostgreSQL.

    python bench/import_bench.py --rows 1000000 [--db sqlite] [--db postgres] [--guards ab]
    python bench/import_bench.py --rows 10000000 --db postgres --files 4 --file /big/focus.csv

`--files N` writes the month as N files (one delivery, imported by one `ingest` command); with
`--file PATH` they are PATH.1of4.csv … and kept for the next run. For PostgreSQL it also reports
the CPU time of the import's database backend (sampled from /proc while it runs).

Each import runs as its own `manage.py ingest --json` process on a fresh database, so the
wall time includes start-up and the peak memory (max RSS) is the import's own. The receipt's
totals are checked against the exact totals the generator wrote. Prints rows/s and peak MB.
`--guards ab` alternates runs with the database guards (docs/integrity.md) installed and
dropped after migrate, to measure what they cost. `--variant NAME=FILE` (repeatable) A/Bs
schema changes the same way: each round imports once as migrated ("base") and once per variant
with FILE's SQL run after migrate (an index added or dropped), alternating the order each round.

In the same run it times the database's own bulk load of the same file, the floor an importer
can be compared with (issue 13: within 2× of it): PostgreSQL's COPY into a table typed like the
file's columns (timestamptz, numeric, jsonb, text), and, for SQLite, the csv module's rows
inserted with executemany into a table of the same shape in one transaction. It prints the
ratio ingest / bulk load. With `--table-floor` (PostgreSQL) it also times COPY of the rows the
import wrote into an empty copy of the charge table, with its indexes, checks and insert guard:
the floor of any importer that writes that table, whatever it does before writing. Not part of
the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from focus_synth import generate  # noqa: E402

CONFIG = """
currency: USD
sources:
  - {name: bench, pattern: bench, credit_fund_org: IT-BENCH, account_code: "54000"}
review:
  fund_org_patterns: ['^[A-Z]{2,6}-[A-Z0-9-]+$']
"""
# The server: BENCH_PG_SERVER (default the local one); bench/pg_tuned_server.sh starts a private
# server configured as docs/operations.md recommends for ten-million-row months.
PG_SERVER = os.environ.get("BENCH_PG_SERVER", "postgres://postgres@127.0.0.1:5432").rstrip("/")
PG_ADMIN_URL = f"{PG_SERVER}/postgres"
PG_DATABASE = os.environ.get("BENCH_PG_DATABASE", "ocb_bench")  # dropped and re-created


def run(cmd, env):
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)


def fresh_database(kind: str, workdir: Path) -> str:
    if kind == "sqlite":
        path = workdir / "bench.sqlite3"
        path.unlink(missing_ok=True)
        return f"sqlite:///{path}"
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE}")
        conn.execute(f"CREATE DATABASE {PG_DATABASE}")
    return f"{PG_SERVER}/{PG_DATABASE}"


DROP_GUARDS = (
    "from django.db import connection;"
    "from accounts.dbguards import registered_guards;"
    "c=connection.cursor();"
    "[c.execute(g.install_sql(connection.vendor)[0])"
    " for g in registered_guards(vendor=connection.vendor)]"
)


# Runs a command and reports its wall time, max RSS and CPU (user + system) on stderr.
WRAPPER = (
    "import resource,subprocess,sys,time;"
    "t=time.perf_counter();p=subprocess.run(sys.argv[1:]);"
    "e=time.perf_counter()-t;"
    "u=resource.getrusage(resource.RUSAGE_CHILDREN);"
    "print(f'{e} {u.ru_maxrss} {u.ru_utime+u.ru_stime}',file=sys.stderr);"
    "sys.exit(p.returncode)"
)


class BackendCPU:
    """CPU seconds of the PostgreSQL backends serving one database while a command runs,
    sampled from /proc every 0.2 s (same machine only; 0 where /proc can't be read)."""

    def __init__(self, database: str):
        import threading

        self.database, self.seen, self._stop = database, {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        import psycopg

        tick = os.sysconf("SC_CLK_TCK")
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            while not self._stop.wait(0.2):
                pids = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> "
                    "pg_backend_pid()",
                    [self.database],
                ).fetchall()
                for (pid,) in pids:
                    try:
                        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    except OSError:
                        continue
                    self.seen[pid] = (int(fields[11]) + int(fields[12])) / tick

    @property
    def seconds(self) -> float:
        return round(sum(self.seen.values()), 1)


def timed_ingest(kind, paths, config, env) -> dict:
    """One `manage.py ingest --json` of the files in its own process, measured."""
    python = sys.executable
    cmd = [python, "-c", WRAPPER, python, "manage.py", "ingest", *map(str, paths)]
    cmd += ["-s", "bench", "-c", str(config), "--json"]
    load_before = os.getloadavg()[0]
    if kind == "postgres":
        with BackendCPU(PG_DATABASE) as server:
            proc = run(cmd, env)
        server_cpu = server.seconds
    else:
        proc = run(cmd, env)
        server_cpu = None
    load_after = os.getloadavg()[0]
    if proc.returncode:
        raise SystemExit(f"ingest failed on {kind}:\n{proc.stderr[-3000:]}")
    elapsed, max_rss_kb, cpu = proc.stderr.strip().splitlines()[-1].split()
    return {
        "receipt": json.loads(proc.stdout),
        "seconds": round(float(elapsed), 2),
        "peak_mb": int(int(max_rss_kb) / 1024),
        "cpu_s": round(float(cpu), 1),  # the ingest process's user + system CPU time
        "server_cpu_s": server_cpu,  # PostgreSQL: the import's backend
        "load_1m": f"{load_before:.1f}->{load_after:.1f}",
    }


def bench_one(
    kind: str, paths: list[Path], expected: dict, workdir: Path, guards=True, sql: str = ""
) -> dict:
    env = dict(
        os.environ,
        DATABASE_URL=fresh_database(kind, workdir),
        OPENCHARGEBACK_HOME=str(workdir / "home"),
    )
    env.setdefault("DJANGO_SECRET_KEY", "bench-only-" + os.urandom(16).hex())
    python = sys.executable
    migrate = run([python, "manage.py", "migrate", "-v0"], env)
    if migrate.returncode:
        raise SystemExit(migrate.stderr)
    if not guards:
        dropped = run([python, "manage.py", "shell", "-c", DROP_GUARDS], env)
        if dropped.returncode:
            raise SystemExit(dropped.stderr)
    if sql:
        script = "from django.db import connection;connection.cursor().execute(open(%r).read())"
        changed = run([python, "manage.py", "shell", "-c", script % sql], env)
        if changed.returncode:
            raise SystemExit(changed.stderr)
    config = workdir / "bench.yaml"
    config.write_text(CONFIG)
    first = timed_ingest(kind, paths, config, env)
    receipt = first.pop("receipt")
    totals = receipt["totals"]["USD"]
    exact = (
        Decimal(totals["billed"]) == expected["billed"]
        and Decimal(totals["list"]) == expected["list"]
        and receipt["rows_imported"] == expected["rows"]
    )
    # The same files again must be recognised as unchanged (every row matched, none written).
    again = timed_ingest(kind, paths, config, env)
    again_receipt = again.pop("receipt")
    return {
        "db": kind,
        "guards": guards,
        "files": len(paths),
        "rows": receipt["rows_imported"],
        **first,
        "rows_per_s": int(receipt["rows_imported"] / first["seconds"]),
        "flagged": receipt["rows_flagged"],
        "totals_exact": exact,
        "totals": {"billed": totals["billed"], "list": totals["list"]},
        "reimport": again_receipt["status"],
        "reimport_totals_exact": again_receipt["totals"] == receipt["totals"],
        **{f"reimport_{key}": value for key, value in again.items()},
    }


def _column_type(name: str, vendor: str) -> str:
    if name.endswith(("Cost", "Quantity", "Price")):
        return "numeric" if vendor == "postgresql" else "NUMERIC"
    if name.endswith(("PeriodStart", "PeriodEnd")):
        return "timestamptz" if vendor == "postgresql" else "TEXT"
    if name == "Tags" and vendor == "postgresql":
        return "jsonb"
    return "text" if vendor == "postgresql" else "TEXT"


def bulk_load(kind: str, paths: list[Path], workdir: Path) -> float:
    """Seconds for the database's own bulk load of the files into a typed table."""
    import csv as csv_module

    with open(paths[0], encoding="utf-8", newline="") as handle:
        header = next(csv_module.reader(handle))
    names = [f'"{c}"' for c in header]
    if kind == "postgres":
        import psycopg

        url = fresh_database(kind, workdir)
        with psycopg.connect(url, autocommit=True) as conn:
            columns = ", ".join(
                f"{n} {_column_type(c, 'postgresql')}" for n, c in zip(names, header, strict=True)
            )
            conn.execute(f"CREATE TABLE bulk ({columns})")
            t0 = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur:
                for csv_path in paths:
                    with cur.copy("COPY bulk FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
                        with open(csv_path, "rb") as source:
                            while block := source.read(1 << 20):
                                copy.write(block)
            seconds = time.perf_counter() - t0
            count = conn.execute("SELECT count(*) FROM bulk").fetchone()[0]
        print(f"  bulk load check: {count:,} rows in the COPY table")
        return seconds
    import sqlite3

    path = workdir / "bulk.sqlite3"
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    columns = ", ".join(
        f"{n} {_column_type(c, 'sqlite')}" for n, c in zip(names, header, strict=True)
    )
    conn.execute(f"CREATE TABLE bulk ({columns})")
    insert = f"INSERT INTO bulk VALUES ({', '.join('?' * len(header))})"
    t0 = time.perf_counter()
    with conn:
        for csv_path in paths:
            with open(csv_path, encoding="utf-8", newline="") as handle:
                reader = csv_module.reader(handle)
                next(reader)
                conn.executemany(insert, reader)
    seconds = time.perf_counter() - t0
    conn.close()
    return seconds


def table_floor(workdir: Path) -> float:
    """PostgreSQL: seconds to COPY the rows the import wrote into an empty copy of the charge
    table, with its indexes, checks and insert guard: what writing the rows costs with nothing
    else of the import (no parsing of FOCUS, no attribution, no fingerprints). Run after an
    import, on its database."""
    import psycopg

    from_db = f"{PG_SERVER}/{PG_DATABASE}"
    columns = ", ".join(_insert_columns())
    rows_path = workdir / "imported-rows.csv"
    with psycopg.connect(from_db, autocommit=True) as conn:
        with conn.cursor() as cur, open(rows_path, "wb") as out:
            query = (
                f"COPY (SELECT {columns} FROM billing_charge ORDER BY id) TO STDOUT (FORMAT csv)"
            )
            with cur.copy(query) as copy:
                for data in copy:
                    out.write(data)
        conn.execute("DROP TABLE IF EXISTS floor_charge")
        conn.execute("CREATE TABLE floor_charge (LIKE billing_charge INCLUDING ALL)")
        conn.execute(
            "CREATE TRIGGER floor_guard AFTER INSERT ON floor_charge REFERENCING NEW TABLE AS "
            "oc_new FOR EACH STATEMENT EXECUTE FUNCTION oc_guard_charge_insert()"
        )
        conn.execute("CHECKPOINT")
        t0 = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(f"COPY floor_charge ({columns}) FROM STDIN (FORMAT csv)") as copy:
                with open(rows_path, "rb") as source:
                    while block := source.read(1 << 20):
                        copy.write(block)
        seconds = time.perf_counter() - t0
        conn.execute("DROP TABLE floor_charge")
    rows_path.unlink()
    return seconds


def _insert_columns() -> list[str]:
    """The importer's columns (billing/ingest/loader.py), read without importing Django."""
    import ast

    tree = ast.parse((ROOT / "billing" / "ingest" / "loader.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "INSERT_COLUMNS":
            return list(ast.literal_eval(node.value))
    raise SystemExit("INSERT_COLUMNS not found in billing/ingest/loader.py")


def _generated_parts(csv_path: Path, rows: int, files: int) -> tuple[list[Path], dict]:
    """The month as `files` files (parts of one delivery) and their exact totals, summed."""
    if files == 1:
        return [csv_path], _generated(csv_path, rows)
    paths, expected = [], {"rows": 0, "billed": Decimal(0), "list": Decimal(0)}
    for part in range(1, files + 1):
        path = csv_path.with_name(f"{csv_path.stem}.{part}of{files}{csv_path.suffix}")
        share = rows // files + (1 if part <= rows % files else 0)
        totals = _generated(path, share, part=part)
        for key in expected:
            expected[key] += totals[key]
        paths.append(path)
    return paths, expected


def _generated(csv_path: Path, rows: int, part: int = 0) -> dict:
    """Generate the file, or reuse one a previous run generated with the same row count."""
    sidecar = csv_path.with_name(csv_path.name + ".totals.json")
    if csv_path.exists() and sidecar.exists():
        saved = json.loads(sidecar.read_text())
        if saved["rows"] == rows and saved["size"] == csv_path.stat().st_size:
            return {**saved, "billed": Decimal(saved["billed"]), "list": Decimal(saved["list"])}
    expected = generate(csv_path, rows, month="2026-10", seed=1, part=part)
    sidecar.write_text(
        json.dumps(
            {
                **expected,
                "billed": str(expected["billed"]),
                "list": str(expected["list"]),
                "size": csv_path.stat().st_size,
            }
        )
    )
    return expected


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgres"])
    parser.add_argument(
        "--file",
        help="Keep the synthetic file here; reused when it exists with its totals beside it "
        "(FILE.totals.json, written by a previous run).",
    )
    parser.add_argument("--files", type=int, default=1, help="the month in this many files")
    parser.add_argument(
        "--no-bulk-load", action="store_true", help="skip timing the database's own bulk load"
    )
    parser.add_argument(
        "--table-floor",
        action="store_true",
        help="PostgreSQL: also time COPY of the imported rows into an empty copy of the charge "
        "table (its indexes, checks and guard), the floor of any importer into that table",
    )
    parser.add_argument("--guards", choices=["on", "off", "ab"], default="on")
    parser.add_argument(
        "--rounds", type=int, default=1, help="with --guards ab or --variant: A/B rounds"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="also import with FILE's SQL run after migrate, alternating with the base",
    )
    args = parser.parse_args()
    dbs = args.db or ["sqlite", "postgres"]
    with tempfile.TemporaryDirectory(prefix="ocb-bench-") as tmp:
        workdir = Path(tmp)
        csv_path = Path(args.file) if args.file else workdir / "synthetic.csv"
        t0 = time.perf_counter()
        paths, expected = _generated_parts(csv_path, args.rows, args.files)
        size = sum(path.stat().st_size for path in paths)
        print(
            f"generated {args.rows:,} rows in {len(paths)} file(s) in "
            f"{time.perf_counter() - t0:.1f}s ({size / 1e6:.0f} MB); billed {expected['billed']}, "
            f"list {expected['list']}",
            flush=True,
        )
        plan = {"on": [True], "off": [False], "ab": [True, False] * args.rounds}[args.guards]
        for kind in dbs:
            baseline = None
            if not args.no_bulk_load:
                load_before = os.getloadavg()[0]
                baseline = bulk_load(kind, paths, workdir)
                what = "COPY" if kind == "postgres" else "executemany"
                print(
                    f"{kind}: the database's own bulk load ({what}): {baseline:.2f}s "
                    f"(load {load_before:.1f}->{os.getloadavg()[0]:.1f})",
                    flush=True,
                )
            runs = [(guards, "", "") for guards in plan]
            if args.variant:
                variants = [("base", "")] + [tuple(v.split("=", 1)) for v in args.variant]
                runs = [
                    (plan[0], name, sql)
                    for r in range(args.rounds)
                    for name, sql in (variants if r % 2 == 0 else variants[::-1])
                ]
            for i, (guards, name, sql) in enumerate(runs):
                if args.guards == "ab" and i % 4 >= 2:
                    guards = not guards  # alternate which goes first: on,off,off,on,…
                result = bench_one(kind, paths, expected, workdir, guards=guards, sql=sql)
                if name:
                    result = {"variant": name, **result}
                if baseline:
                    result["bulk_load_s"] = round(baseline, 2)
                    result["ratio_to_bulk_load"] = round(result["seconds"] / baseline, 2)
                if kind == "postgres" and args.table_floor:
                    load_before = os.getloadavg()[0]
                    floor = table_floor(workdir)
                    result["table_floor_s"] = round(floor, 2)
                    result["table_floor_load_1m"] = f"{load_before:.1f}->{os.getloadavg()[0]:.1f}"
                    if baseline:
                        result["table_floor_ratio_to_bulk_load"] = round(floor / baseline, 2)
                    result["ratio_to_table_floor"] = round(result["seconds"] / floor, 2)
                print(json.dumps(result), flush=True)
    print(f"(this machine: {os.cpu_count()} cores; peak_mb is the ingest process's max RSS)")
    _ = resource


if __name__ == "__main__":
    main()
