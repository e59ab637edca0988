"""The randomized invariant checks, for longer than CI runs them (issue 11, item 8).

Runs journals/tests/test_chaos.py's driver through pytest (it makes and drops its own test
database) and prints the figures: operations, rounds of interleaved operations, refusals by kind,
invariant checks, violations, and the load average before and after.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/oc_bench \\
        .venv/bin/python bench/chaos_bench.py --minutes 10 --threads 4 --seed 7

Without a PostgreSQL DATABASE_URL it runs the sequential driver (--operations) on SQLite.
--skip late,tie leaves out known defects' triggers (see journals/tests/chaos.py), and
--keep-going counts every violation instead of stopping at the first.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--ops-per-round", type=int, default=3)
    parser.add_argument("--operations", type=int, default=1000, help="sequential (SQLite) run")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--skip", default="", help="comma-separated operation kinds to leave out")
    parser.add_argument("--keep-going", action="store_true")
    args = parser.parse_args()

    postgres = os.environ.get("DATABASE_URL", "").startswith("postgres")
    env = {
        **os.environ,
        "CHAOS_SEED": str(args.seed),
        "CHAOS_SECONDS": str(args.minutes * 60),
        "CHAOS_THREADS": str(args.threads),
        "CHAOS_OPS_PER_ROUND": str(args.ops_per_round),
        "CHAOS_OPERATIONS": str(args.operations),
        "CHAOS_SKIP": args.skip,
        "CHAOS_KEEP_GOING": "1" if args.keep_going else "",
    }
    test = "concurrent" if postgres else "random"
    what = f"{args.threads} threads, {args.minutes} min" if postgres else f"{args.operations} ops"
    print(f"chaos bench: {'PostgreSQL' if postgres else 'SQLite'}, seed {args.seed}, {what}")
    print(f"loadavg before: {loadavg()}")
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "journals/tests/test_chaos.py",
            "-k",
            test,
            "-s",
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - started
    lines = proc.stdout.splitlines()
    shown = [
        line
        for line in lines
        if line.startswith(("chaos seed", "  refused", "  VIOLATION", "    e.g."))
    ]
    print("\n".join(shown) or proc.stdout[-4000:])
    if proc.returncode:
        failure = [line for line in lines if line.startswith("E ")][:40]
        print("\n".join(failure))
    print(f"wall {elapsed:.0f} s; loadavg after: {loadavg()}; pytest exit {proc.returncode}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
