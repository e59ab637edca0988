"""A randomized driver for the billing invariants: small FOCUS files and month-end operations.

`Chaos(seed=…, workdir=…)` writes a configuration and small FOCUS files (restated deliveries,
re-deliveries of the same file, append parts, rows of another month, flagged rows, credits) and
runs random operations through the services' public API (chaos_adapter.py): imports, review
decisions, close, reopen, generate (and send), export, finalize. `run_sequential` draws them one
at a time; `run_concurrent` runs rounds of several threads at once (each with its own database
connection), then checks the invariants at the quiescent point after each round.

A refusal (the product's own exceptions: ImportRefused, PeriodError, …) is a legitimate outcome
and is counted by kind; any other exception, and any invariant violation (invariants.py), is a
failure reported with the seed and the operation log.
"""

from __future__ import annotations

import csv
import json
import random
import re
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from . import chaos_adapter as svc
from .invariants import FileRows, ImportDone, Ledger

# Totals of every run in this process, printed by the root conftest's terminal summary (CI
# output shows them without -s) and by bench/chaos_bench.py.
STATS: dict[str, Counter] = {}

# aws and hpc come from the configuration; lab was added in the admin (no YAML entry), the case
# where concurrent imports once took no lock.
SOURCES = ("aws", "hpc", "lab")
FIRST_PERIOD = "2026-01"
ACTIVE_PERIODS = 3  # months in play; a finalized one makes room for the next month
BIG_ROWS = 3000  # a big delivery: an import that takes long enough to race a month end
FUND_PATTERN = r"^[A-Z]{2,6}-[A-Z0-9-]+$"
CREDIT_FUNDS = {"IT-CLOUD", "RC-HPC", "RC-LAB"}
CONFIG = """
currency: USD
sources:
  - {name: aws, credit_fund_org: IT-CLOUD, account_code: "54100"}
  - {name: hpc, credit_fund_org: RC-HPC, account_code: "54200"}
review:
  fund_org_patterns: ['^[A-Z]{2,6}-[A-Z0-9-]+$']
journal:
  fund_org_regex: '^(?P<orgn>[A-Z]+)-(?P<fund>.+)$'
  default_account: "54000"
email:
  from_address: billing@example.edu
"""
PIS = ("ada@example.edu", "bob@example.edu", "cyd@example.edu")
PROJECTS = ("engines", "looms", "orbits")
FUNDS = ("MATH-1843", "PHYS-22", "CHEM-7")
BAD_FUND = "misc"  # fails the configured pattern
COLUMNS = [
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargeCategory",
    "BilledCost",
    "ListCost",
    "BillingCurrency",
    "ServiceName",
    "ResourceId",
    "Tags",
]


def ensure_journal_templates() -> None:
    """The built-in journal templates (a data migration), loaded again if a transactional
    test's flush removed them."""
    from django.core.management import call_command

    from journals.models import JournalTemplate

    if not JournalTemplate.objects.filter(name="gl").exists():
        call_command("loaddata", "journal_templates", verbosity=0)


def month_bounds(key: str) -> tuple[str, str]:
    year, month = map(int, key.split("-"))
    nxt = f"{year + (month == 12)}-{month % 12 + 1:02d}"
    return f"{key}-01T00:00:00Z", f"{nxt}-01T00:00:00Z"


def next_month(key: str) -> str:
    year, month = map(int, key.split("-"))
    return f"{year + (month == 12)}-{month % 12 + 1:02d}"


def previous_month(key: str) -> str:
    year, month = map(int, key.split("-"))
    return f"{year - (month == 1)}-{(month - 2) % 12 + 1:02d}"


def write_focus(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def focus_row(
    month: str,
    resource: str,
    cost: str,
    *,
    pi: str = PIS[0],
    project: str = PROJECTS[0],
    fund: str = FUNDS[0],
    category: str = "Usage",
    service: str = "Compute",
) -> dict:
    start, end = month_bounds(month)
    tags = {k: v for k, v in (("pi_email", pi), ("project_id", project), ("fund_org", fund)) if v}
    return {
        "BillingPeriodStart": start,
        "BillingPeriodEnd": end,
        "ChargeCategory": category,
        "BilledCost": cost,
        "ListCost": cost if Decimal(cost) > 0 else "",
        "BillingCurrency": "USD",
        "ServiceName": service,
        "ResourceId": resource,
        "Tags": json.dumps(tags),
    }


@dataclass
class Op:
    name: str
    args: dict
    thread: int = 0
    outcome: str = ""
    ok: bool = False  # committed (not refused, not failed)
    changed: bool = False  # changed charges' billing state (import, review)
    end: float = 0.0

    def line(self) -> str:
        args = " ".join(f"{k}={v}" for k, v in self.args.items())
        return f"t{self.thread} {self.name} {args} -> {self.outcome}"


@dataclass
class Chaos:
    seed: int
    workdir: Path
    log: list[str] = field(default_factory=list)
    stats: Counter = field(default_factory=Counter)
    refusals: Counter = field(default_factory=Counter)

    # Operation kinds left out (e.g. {"late"} to explore past a known defect; CHAOS_SKIP).
    skip: frozenset = frozenset()
    # Keep going after a violation (exploring: bench/chaos_bench.py --keep-going); the test stops.
    keep_going: bool = False

    def __post_init__(self):
        from billing.config import load_config

        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "chaos.yaml"
        config_path.write_text(CONFIG, encoding="utf-8")
        self.config = load_config(str(config_path))
        from billing.models import Source

        ensure_journal_templates()
        Source.objects.get_or_create(
            name="lab", defaults={"credit_fund_org": "RC-LAB", "account_code": "54300"}
        )
        self.ledger = Ledger(
            fund_org_pattern=FUND_PATTERN, credit_funds=set(CREDIT_FUNDS), ignore=self.skip
        )
        self.lock = threading.Lock()
        self.files: dict[tuple[str, str], list[Path]] = {}  # delivered files per (source, period)
        self.counter = 0
        self.fresh_statements: set[str] = set()
        self.fresh_journal: set[str] = set()
        self.active = [FIRST_PERIOD]
        while len(self.active) < ACTIVE_PERIODS:
            self.active.append(next_month(self.active[-1]))
        STATS[f"seed {self.seed}"] = self.stats

    # -- files ---------------------------------------------------------------------------------

    def _next(self) -> int:
        with self.lock:
            self.counter += 1
            return self.counter

    def _row(self, rng: random.Random, source: str, month: str, stamp: str) -> dict:
        n = self._next()
        kind = rng.random()
        cost = f"{Decimal(rng.randint(1, 250000)) / Decimal(10 ** rng.choice((2, 3, 4))):f}"
        attrs = {"pi": rng.choice(PIS), "project": rng.choice(PROJECTS), "fund": rng.choice(FUNDS)}
        category = "Usage"
        if kind < 0.08:
            attrs["fund"] = ""  # missing tag: flagged no_fund_org
        elif kind < 0.14:
            attrs["fund"] = BAD_FUND  # flagged fund_org_pattern
        elif kind < 0.18:
            attrs["pi"] = ""
        elif kind < 0.26:
            cost, category = f"-{cost}", "Credit"
        return focus_row(month, f"{source}-{stamp}-{n}", cost, category=category, **attrs)

    def new_file(self, rng: random.Random, source: str, period: str, kind: str) -> Path:
        """kind: base (a full delivery), restated (the last delivery with changes), part (an
        append part), late (a delivery of `period` carrying rows of the month before)."""
        with self.lock:
            earlier = list(self.files.get((source, period), []))
        rows: list[dict] = []
        if kind == "restated" and earlier:
            with open(earlier[-1], encoding="utf-8", newline="") as handle:
                rows = list(csv.DictReader(handle))
            rng.shuffle(rows)
            keep = rows[: max(1, len(rows) - rng.randint(0, 2))]
            for row in keep[: rng.randint(0, 2)]:
                row["BilledCost"] = f"{Decimal(row['BilledCost']) + Decimal('0.01'):f}"
            rows = keep + [self._row(rng, source, period, "re") for _ in range(rng.randint(0, 3))]
        else:
            count = {"part": rng.randint(1, 3), "big": BIG_ROWS}.get(kind, rng.randint(3, 8))
            rows = [self._row(rng, source, period, kind) for _ in range(count)]
            if kind == "late":
                rows += [
                    self._row(rng, source, previous_month(period), "late")
                    for _ in range(rng.randint(1, 2))
                ]
            if rng.random() < 0.2:
                rows.append(dict(rows[0]))  # two identical rows stay two charges
        path = self.workdir / f"{source}_{period}_{kind}_{self._next()}.csv"
        write_focus(path, rows)
        if kind != "part":
            with self.lock:
                self.files.setdefault((source, period), []).append(path)
        return path

    # -- operations ----------------------------------------------------------------------------

    def draw(self, rng: random.Random) -> Op:
        with self.lock:
            active = list(self.active)
            done = sorted(self.ledger.finalized)
        # Now and then a finalized month: everything must be refused and nothing change.
        period = rng.choice(done) if done and rng.random() < 0.05 else rng.choice(active)
        source = rng.choice([s for s in SOURCES if s not in self.skip] or SOURCES)
        r = rng.random()
        if r < 0.30:
            with self.lock:
                delivered = bool(self.files.get((source, period)))
            kinds = ["base", "restated", "same", "part", "late"] if delivered else ["base", "late"]
            kind = rng.choice([k for k in kinds if k not in self.skip] or ["base"])
            return Op("import", {"source": source, "period": period, "kind": kind})
        if r < 0.58:
            actions = ["approve", "reject", "return", "reassign", "resolve"]
            action = rng.choice([a for a in actions if a not in self.skip] or ["resolve"])
            return Op("review", {"period": period, "action": action})
        if r < 0.66:
            return Op("close", {"period": period})
        if r < 0.70:
            return Op("reopen", {"period": period})
        if r < 0.82:
            return Op("generate", {"period": period, "send": rng.random() < 0.6})
        if r < 0.91:
            return Op("export", {"period": period})
        return Op("finalize", {"period": period})

    def perform(self, op: Op, rng: random.Random) -> None:
        """Run one operation; refusals are outcomes, other exceptions are failures."""
        try:
            getattr(self, f"_op_{op.name}")(op, rng)
            op.ok = True
        except svc.REFUSALS as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            op.outcome = f"refused: {message[:160]}"
            with self.lock:
                self.refusals[f"{op.name}: {_refusal_kind(message)}"] += 1
                self.stats["refusals"] += 1
        except Exception as exc:  # noqa: BLE001 - any other exception is the finding
            op.outcome = f"FAILED {type(exc).__name__}: {exc}"
            with self.lock:
                self.ledger.violations.append(f"{op.line()}\n{traceback.format_exc(limit=8)}")
        op.end = time.monotonic()
        with self.lock:
            self.stats["operations"] += 1
            self.stats[f"{op.name} ok" if op.ok else f"{op.name} refused"] += 1

    def _op_import(self, op: Op, rng: random.Random) -> None:
        source, period, kind = op.args["source"], op.args["period"], op.args["kind"]
        append = kind == "part"
        if kind == "same":
            with self.lock:
                path = rng.choice(self.files[(source, period)])
        elif kind == "one_for_all":  # the same new file, imported by every thread of the round
            path = op.args.pop("path")
        else:
            path = self.new_file(rng, source, period, kind)
        op.args["file"] = path.name
        result = svc.import_files(
            paths=[path],
            source=source,
            period=period,
            append=append,
            config=self.config,
            actor="chaos",
        )
        op.outcome = f"{result.status} +{result.rows_added} -{result.rows_removed}"
        op.changed = result.status != "unchanged"
        with self.lock:
            self.ledger.imported(
                ImportDone(source, period, FileRows.read(path), append, result.status, op.line())
            )

    def _op_review(self, op: Op, rng: random.Random) -> None:
        from billing.models import Charge

        period, action = op.args["period"], op.args["action"]
        in_period = Charge.objects.filter(period__key=period)
        pool = {
            "approve": in_period.filter(review_status="flagged"),
            "reject": in_period.filter(review_status__in=["flagged", "approved"]),
            "return": in_period.filter(review_status="rejected"),
            "reassign": in_period,
            "resolve": in_period.filter(review_status="flagged"),
        }[action]
        ids = list(pool.order_by("pk").values_list("pk", flat=True))
        if not ids:
            op.outcome = "nothing to decide"
            return
        if action != "resolve":
            ids = rng.sample(ids, rng.randint(1, min(3, len(ids))))
        charges = Charge.objects.filter(pk__in=ids)
        op.args["charges"] = len(ids)
        if action == "approve":
            result = svc.charge_approve(charges=charges, actor="chaos")
        elif action in ("reject", "resolve"):
            result = svc.charge_reject(charges=charges, note="chaos: not ours", actor="chaos")
        elif action == "return":
            result = svc.charge_return(charges=charges, actor="chaos")
        else:
            kwargs = {"fund_org": rng.choice(FUNDS)}
            if rng.random() < 0.5:
                kwargs["pi_email"] = rng.choice(PIS)
            op.args.update(kwargs)
            result = svc.charge_reassign(
                charges=charges, config=self.config, actor="chaos", **kwargs
            )
        op.outcome = f"{result.count} decided"
        op.changed = result.count > 0

    def _op_close(self, op: Op, rng: random.Random) -> None:
        svc.period_close(key=op.args["period"], actor="chaos")
        op.outcome = "closed"

    def _op_reopen(self, op: Op, rng: random.Random) -> None:
        svc.period_open(key=op.args["period"], actor="chaos", reason="chaos: a correction")
        op.outcome = "open"

    def _op_generate(self, op: Op, rng: random.Random) -> None:
        result = svc.statement_generate(
            period_key=op.args["period"], send=op.args["send"], actor="chaos", config=self.config
        )
        op.outcome = f"{result.status} {len(result.statements)} statement(s)"

    def _op_export(self, op: Op, rng: random.Random) -> None:
        result = svc.journal_export(
            period_key=op.args["period"], template="gl", actor="chaos", config=self.config
        )
        op.outcome = f"{result.rows} rows, debits {result.debit_total}"

    def _op_finalize(self, op: Op, rng: random.Random) -> None:
        svc.period_finalize(key=op.args["period"], actor="chaos")
        op.outcome = "finalized"

    # -- what is expected to be up to date -----------------------------------------------------

    def _track(self, ops: list[Op]) -> None:
        """Which periods' statements and journal must tie now, from the round's ops in order.

        A period touched by more than one thread in a round is left unknown (not fresh): the
        order of their commits is not known here.
        """
        threads: dict[str, set[int]] = {}
        for op in ops:
            if op.ok and "period" in op.args:
                threads.setdefault(op.args["period"], set()).add(op.thread)
        for op in sorted(ops, key=lambda o: o.end):
            if not op.ok:
                continue
            period = op.args.get("period")
            if len(threads.get(period, ())) > 1:
                self.fresh_statements.discard(period)
                self.fresh_journal.discard(period)
                continue
            if op.name == "generate":
                self.fresh_statements.add(period)
                self.fresh_journal.discard(period)
            elif op.name == "export":
                self.fresh_journal.add(period)
            elif op.changed:
                self.fresh_statements.discard(period)
            if op.name == "import" and op.args.get("kind") == "late" and op.changed:
                # rows of the month before, placed (wrongly or rightly) elsewhere
                self.fresh_statements.discard(previous_month(period))

    def check(self, ops: list[Op]) -> list[str]:
        for op in ops:
            self.log.append(f"#{len(self.log) + 1} {op.line()}")
        self._track(ops)
        found = self.ledger.check(
            fresh_statements=set(self.fresh_statements), fresh_journal=set(self.fresh_journal)
        )
        self.stats["invariant checks"] = self.ledger.checks
        self.stats["periods finalized"] = len(self.ledger.finalized)
        with self.lock:
            self.active = [p for p in self.active if p not in self.ledger.finalized]
            while len(self.active) < ACTIVE_PERIODS:
                self.active.append(next_month(max([*self.active, *self.ledger.finalized])))
        self.stats["violations"] = len(self.ledger.violations)
        return found

    # -- drivers -------------------------------------------------------------------------------

    def run_sequential(self, operations: int) -> list[str]:
        STATS[f"sequential, seed {self.seed}"] = STATS.pop(f"seed {self.seed}", self.stats)
        rng = random.Random(self.seed)
        self.check([])
        for _ in range(operations):
            op = self.draw(rng)
            self.perform(op, rng)
            self.stats["rounds"] += 1
            if self.check([op]) and not self.keep_going:
                break
        return self.ledger.violations

    def run_concurrent(
        self, *, threads: int, ops_per_round: int, seconds: float, max_rounds: int = 10**9
    ) -> list[str]:
        """Rounds of `threads` threads, each running `ops_per_round` random operations at once
        (started together by a barrier); the invariants are checked between rounds."""
        from django.db import connections

        STATS[f"{threads} threads, seed {self.seed}"] = STATS.pop(f"seed {self.seed}", self.stats)
        self.check([])
        deadline = time.monotonic() + seconds
        rounds = 0
        while time.monotonic() < deadline and rounds < max_rounds:
            rounds += 1
            ops: list[Op] = []
            barrier = threading.Barrier(threads)
            # Planned rounds: one in four opens with an import storm (every thread importing the
            # same new file into one source and month at once, or each its own restatement); one
            # in eight races a big import against a month end of the same month.
            plan = random.Random(f"{self.seed}-{rounds}")
            planned: list[list[Op]] = [[] for _ in range(threads)]
            roll = plan.random()
            if roll < 0.25:
                sources = [s for s in SOURCES if s not in self.skip] or SOURCES
                source, period = plan.choice(sources), plan.choice(self.active)
                shared = plan.random() < 0.5
                path = self.new_file(plan, source, period, "base") if shared else None
                for i in range(threads):
                    args = {"source": source, "period": period, "kind": "base"}
                    if shared:
                        args.update(kind="one_for_all", path=path)
                    planned[i].append(Op("import", args))
                self.stats["import storms"] += 1
            elif roll < 0.375 and threads > 1:
                sources = [s for s in SOURCES if s not in self.skip] or SOURCES
                source, period = plan.choice(sources), plan.choice(self.active)
                planned[0].append(Op("import", {"source": source, "period": period, "kind": "big"}))
                planned[1] += [
                    Op("close", {"period": period}),
                    Op("review", {"period": period, "action": "resolve"}),
                    Op("generate", {"period": period, "send": True}),
                    Op("export", {"period": period}),
                    Op("finalize", {"period": period}),
                ]
                self.stats["import vs month end"] += 1

            def worker(index: int, round_no=rounds, barrier=barrier, ops=ops, planned=planned):
                rng = random.Random(f"{self.seed}-{round_no}-{index}")
                todo = list(planned[index])
                todo += [None] * max(0, ops_per_round - len(todo))
                try:
                    barrier.wait()
                    for op in todo:
                        op = op or self.draw(rng)
                        op.thread = index
                        self.perform(op, rng)
                        with self.lock:
                            ops.append(op)
                finally:
                    connections.close_all()

            pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            self.stats["rounds"] += 1
            self.stats["interleaved operations"] += len(ops)
            if self.check(ops) and not self.keep_going:
                break
        return self.ledger.violations

    def report(self) -> str:
        lines = [f"chaos seed {self.seed}: " + ", ".join(f"{k} {v}" for k, v in self.stats.items())]
        for kind, n in self.refusals.most_common():
            lines.append(f"  refused {n}x  {kind}")
        examples: dict[str, str] = {}
        for v in self.ledger.violations:
            first = v.splitlines()[0]
            examples.setdefault(_refusal_kind(first), first[:400])
        for kind, n in self.violation_kinds().most_common():
            lines.append(f"  VIOLATION {n}x  {kind}")
            lines.append(f"    e.g. {examples[kind]}")
        return "\n".join(lines)

    def violation_kinds(self) -> Counter:
        return Counter(_refusal_kind(v.splitlines()[0]) for v in self.ledger.violations)

    def failure(self) -> str:
        tail = self.log[-120:]
        return (
            f"seed {self.seed}: {len(self.ledger.violations)} violation(s)\n"
            + "\n".join(self.ledger.violations[:10])
            + f"\n-- operation log (last {len(tail)} of {len(self.log)}) --\n"
            + "\n".join(tail)
        )


def _refusal_kind(message: str) -> str:
    """A refusal message without its numbers and names, to count refusals by kind."""
    text = re.sub(r"\d{4}-\d{2}", "P", message)
    text = re.sub(r"\d+", "N", text)
    return text[:90]
