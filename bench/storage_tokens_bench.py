"""Storage and token converters: time and peak memory on synthetic month-long exports.

    python bench/storage_tokens_bench.py [--paths 10000] [--users 5000] [--types 8]

Storage: `--paths` paths sampled nightly for 31 days (one CSV line per path per night).
Tokens: a ChatGPT Edu export with one line per user, usage type and day. Each conversion runs in
a child process (so its peak RSS is its own), prices against an in-memory rate card and writes the
FOCUS rows to /dev/null. Prints lines, FOCUS rows, wall and CPU seconds, lines/s, peak MB and the load
average before and after. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import os, sys, time, json, resource
sys.path.insert(0, {root!r})
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openchargeback.settings")
import django
django.setup()
from datetime import date
from decimal import Decimal
from billing.usage import convert_file
from billing.usage.pricing import RateCard, RateSpec
rates = [
    RateSpec("storage", "standard", "TB-month", date(2026, 1, 1), Decimal("10.00"),
             subsidy_percent=Decimal(25), allowance_quantity=Decimal("0.5"), allowance_per="pi"),
    RateSpec("storage", "standard", "TB-month", date(2026, 1, 16), Decimal("12.00")),
    RateSpec("tokens", "credits", "credit", date(2026, 1, 1), Decimal("0.05"),
             allowance_quantity=Decimal(200), allowance_per="project"),
    RateSpec("tokens", "codex", "credit", date(2026, 1, 1), Decimal("0.05"),
             subsidy_percent=Decimal(100)),
]
t = time.perf_counter()
start = resource.getrusage(resource.RUSAGE_SELF)
cpu0 = start.ru_utime + start.ru_stime
conversion = convert_file({name!r}, {path!r}, period="2026-01",
                          options={{"card": RateCard(rates, origin="bench"), "stored_accounts": {{}}}})
with open(os.devnull, "w") as out:
    rows = conversion.write(out)
elapsed = time.perf_counter() - t
usage = resource.getrusage(resource.RUSAGE_SELF)
cpu = usage.ru_utime + usage.ru_stime - cpu0
print(json.dumps({{"rows": rows, "seconds": elapsed, "cpu": cpu, "peak_mb": usage.ru_maxrss / 1024}}))
"""


def storage_file(path: Path, paths: int) -> int:
    lines = 0
    with path.open("w") as out:
        out.write("path,bytes_used,sampled_at\n")
        for day in range(1, 32):
            for p in range(paths):
                size = (p * 7919 + day * 104729) % 50_000_000_000_000
                out.write(f"/ifs/research/lab-{p:05d},{size},2026-01-{day:02d}T02:00:00Z\n")
                lines += 1
    return lines


def tokens_file(path: Path, users: int, types: int) -> int:
    kinds = ["codex"] + [f"chat.kind-{k}" for k in range(types - 1)]
    lines = 0
    with path.open("w") as out:
        out.write(
            "date_partition,account_id,account_user_id,email,name,public_id,usage_type,"
            "usage_credits,usage_quantity,usage_units\n"
        )
        for day in range(1, 32):
            for u in range(users):
                for kind in kinds:
                    credits = f"{(u * 31 + day) % 997}.{(u + day) % 1000:03d}"
                    out.write(
                        f"1/{day}/2026,ws,u{u},user{u}@example.edu,User {u},user-{u},{kind},"
                        f"{credits},1,counts\n"
                    )
                    lines += 1
    return lines


def run(name: str, path: Path) -> dict:
    code = CHILD.format(root=str(ROOT), name=name, path=str(path))
    env = dict(os.environ, DJANGO_DEBUG=os.environ.get("DJANGO_DEBUG", "1"))
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if proc.returncode:
        sys.exit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--types", type=int, default=8)
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cases = [
            ("storage", work / "storage.csv", storage_file(work / "storage.csv", args.paths)),
            ("tokens", work / "edu.csv", tokens_file(work / "edu.csv", args.users, args.types)),
        ]
        for name, path, lines in cases:
            result = run(name, path)
            print(
                f"{name:8} {lines:>10,} lines → {result['rows']:>8,} FOCUS rows in "
                f"{result['seconds']:6.1f} s, CPU {result['cpu']:5.1f} s "
                f"({lines / result['seconds']:>9,.0f} lines/s), "
                f"peak {result['peak_mb']:.0f} MB"
            )
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
