"""Slurm conversion speed: N sacct job lines → priced FOCUS rows (target: 1,000,000 in ≤ 30 s).

    python bench/slurm_convert_bench.py [--jobs 1000000] [--per-job] [--keep DIR]

Writes a synthetic `sacct --parsable2` extract once (kept in DIR and reused): 2,000 accounts,
five partitions, a quarter of the jobs on GPUs of two types, 3 % crossing the month end, 5 %
pending and 5 % failed. Prices with stored rates in a throwaway SQLite database, one of them
changing mid-month, then times `convert` alone (read, split, aggregate, price, write) and
prints the time, peak memory (the process's max RSS; --tracemalloc adds Python's own peak) and
the load average.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = "JobID|Account|User|Partition|State|Start|End|AllocCPUS|AllocTRES"
PARTITIONS = ["standard", "largemem", "gpu", "short", "long"]


def write_extract(path: Path, jobs: int) -> None:
    rng = random.Random(14)  # fixed: the same file every run
    with open(path, "w") as out:
        out.write(HEADER + "\n")
        for job in range(jobs):
            account = f"acct{rng.randrange(2000):04d}"
            partition = PARTITIONS[job % 5]
            roll = rng.random()
            day = rng.randrange(1, 31)
            start_s = rng.randrange(86400)
            duration = rng.randrange(60, 36 * 3600)
            if roll < 0.05:
                out.write(f"{job}|{account}|u|{partition}|PENDING|Unknown|Unknown|4|\n")
                continue
            state = "FAILED" if roll < 0.10 else "COMPLETED"
            if roll > 0.97:  # crosses the month end
                day, start_s = 30, 86400 - 3600
            hh, mm, ss = start_s // 3600, start_s // 60 % 60, start_s % 60
            start = f"2026-11-{day:02d}T{hh:02d}:{mm:02d}:{ss:02d}"
            end_s = start_s + duration
            eday = day + end_s // 86400
            end_s %= 86400
            month, eday = (11, eday) if eday <= 30 else (12, eday - 30)
            end = f"2026-{month:02d}-{eday:02d}T{end_s // 3600:02d}:{end_s // 60 % 60:02d}:{end_s % 60:02d}"
            cpus = rng.choice((1, 2, 4, 8, 16, 32))
            tres = f"billing={cpus},cpu={cpus},mem={cpus * 4}G,node=1"
            if partition == "gpu":
                kind, n = rng.choice(("a100", "v100")), rng.choice((1, 2, 4))
                tres += f",gres/gpu={n},gres/gpu:{kind}={n}"
            out.write(f"{job}|{account}|u|{partition}|{state}|{start}|{end}|{cpus}|{tres}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--per-job", action="store_true")
    parser.add_argument("--keep", default="/tmp/ocb-slurm-bench")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="Also trace Python's peak (slows it 2-3×)."
    )
    args = parser.parse_args()
    keep = Path(args.keep)
    keep.mkdir(parents=True, exist_ok=True)
    extract = keep / f"sacct-{args.jobs}.txt"
    if not extract.exists():
        t = time.perf_counter()
        write_extract(extract, args.jobs)
        print(f"wrote {extract} ({extract.stat().st_size / 1e6:.0f} MB) in "
              f"{time.perf_counter() - t:.1f} s")  # fmt: skip
    db = keep / "rates.sqlite3"
    db.unlink(missing_ok=True)
    os.environ["DATABASE_URL"] = f"sqlite:///{db}"
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-" + os.urandom(16).hex())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openchargeback.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from datetime import date
    from decimal import Decimal

    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from billing.models import Rate
    from billing.usage import convert_file

    for key, price in [("standard", "0.02"), ("largemem", "0.05"), ("gpu", "0.01"),
                       ("short", "0.02"), ("long", "0.015")]:  # fmt: skip
        Rate.objects.create(service="hpc-cpu", key=key, unit="core-hour",
                            effective_from=date(2026, 1, 1), list_price=Decimal(price),
                            allowance_quantity=Decimal(1000), allowance_per="pi")  # fmt: skip
    Rate.objects.create(service="hpc-cpu", key="standard", unit="core-hour",
                        effective_from=date(2026, 11, 16), list_price=Decimal("0.025"))  # fmt: skip
    Rate.objects.create(service="hpc-gpu", key="a100", unit="gpu-hour",
                        effective_from=date(2026, 1, 1), list_price=Decimal("1.50"))  # fmt: skip
    Rate.objects.create(service="hpc-gpu", key="v100", unit="gpu-hour",
                        effective_from=date(2026, 1, 1), list_price=Decimal("0.80"),
                        subsidy_percent=Decimal(100))  # fmt: skip

    out = keep / "out.focus.csv"
    if args.tracemalloc:
        tracemalloc.start()
    t, cpu = time.perf_counter(), time.process_time()
    conversion = convert_file("slurm", extract, period="2026-11",
                              options={"per_job": args.per_job})  # fmt: skip
    with open(out, "w", newline="") as handle:
        rows = conversion.write(handle)
    elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
    peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else 0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = os.getloadavg()
    print(f"jobs read {conversion.notes['jobs_read']:,}, billed {conversion.notes['jobs_billed']:,}, "
          f"split at month end {conversion.notes.get('jobs_split_at_month_end', 0):,}")  # fmt: skip
    print(f"FOCUS rows written {rows:,}{' (per job)' if args.per_job else ''}")
    print(f"convert time {elapsed:.1f} s wall, {cpu:.1f} s CPU (target ≤ 30 s for 1,000,000 jobs)")
    traced = f"peak Python memory {peak / 1e6:.0f} MB (tracemalloc), " if peak else ""
    print(f"{traced}max RSS {rss:.0f} MB (the whole process, Django included)")
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
