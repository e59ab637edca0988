"""The billing invariants, computed independently of the code under test.

`Ledger` keeps its own model of which delivered files are live, per source and period, and reads
those files itself (csv + Decimal): it never asks the importer what a file contained. `check()`
compares the database with that model and with what it saw earlier:

- charges: every row of every live file is a charge of that source and period, once;
- totals: each period's billed total per currency is the exact sum of its live files;
- finalized: a finalized period's row, charges, statements, lines, emails and journal exports
  (with the bytes of their PDFs and files) are exactly as they were when it was finalized;
- statements: exactly one current statement per group; where the statements are expected to be
  up to date (a finalized period, or `fresh` periods the caller names), each current statement's
  amount due is the exact sum of the group's billable charges rounded half up to the cent, and a
  group with no billable charge left is 0.00;
- journal: the latest export of a period balances (file and record), is the file the record
  names, and where it is expected to be up to date its net debit per PI fund/org equals the
  current statements of that fund/org;
- review: no billable charge lacks a PI or project or has a fund/org failing the patterns;
- mail: no statement is carried by two sent emails, unless the second was a resend;
- audit: the audit trail only grows (no event changed or removed).

Concurrency: imports that committed in the same round (between two quiescent points) are
checked for linearizability: some order of them must give the database's charges and each one's
reported outcome (`imported`, `replaced`, `unchanged`). The model then adopts that order.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

ZERO = Decimal(0)
CENT = Decimal("0.01")


def cents(value: Decimal) -> Decimal:
    """The house rule, restated here on purpose (not imported): to the cent, half up."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class FileRows:
    """A delivered file as the checker reads it: its hash and its rows' identity and cost."""

    sha256: str
    name: str
    rows: tuple[tuple[str, Decimal, str], ...]  # (ResourceId, BilledCost, BillingCurrency)

    @classmethod
    def read(cls, path: Path) -> FileRows:
        data = Path(path).read_bytes()
        rows = []
        with open(path, encoding="utf-8", newline="") as handle:
            for record in csv.DictReader(handle):
                rows.append(
                    (record["ResourceId"], Decimal(record["BilledCost"]), record["BillingCurrency"])
                )
        return cls(hashlib.sha256(data).hexdigest(), Path(path).name, tuple(rows))

    def counter(self) -> Counter:
        return Counter((rid, cost) for rid, cost, _ in self.rows)


@dataclass
class ImportDone:
    """An import the service reported as committed, to be placed in the model."""

    source: str
    period: str
    file: FileRows
    append: bool
    status: str  # as reported: imported, replaced, unchanged
    op: str = ""  # the operation log line, for messages


def _expected_status(before: list[FileRows], done: ImportDone) -> tuple[list[FileRows], str]:
    """The live files after `done` and the outcome it should report, given those before."""
    if done.append:
        if any(f.sha256 == done.file.sha256 for f in before):
            return before, "unchanged"
        return [*before, done.file], "imported"
    old = Counter()
    for f in before:
        old += f.counter()
    if not before or not old:
        return [done.file], "imported"
    if old == done.file.counter():
        return [done.file], "unchanged"
    return [done.file], "replaced"


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def _file_sha(path: str) -> str:
    p = Path(path)
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "missing"


@dataclass
class Ledger:
    """The model: live files per (source, period), snapshots, and what the checks found."""

    fund_org_pattern: str
    credit_funds: set[str]
    live: dict[tuple[str, str], list[FileRows]] = field(default_factory=lambda: defaultdict(list))
    pending: list[ImportDone] = field(default_factory=list)
    finalized: dict[str, str] = field(default_factory=dict)  # period key -> snapshot hash
    audit_seen: dict[int, str] = field(default_factory=dict)
    checks: int = 0
    ignore: frozenset = frozenset()  # invariant names left out while exploring (e.g. "tie")
    violations: list[str] = field(default_factory=list)

    # -- the model ---------------------------------------------------------------------------

    def imported(self, done: ImportDone) -> None:
        """Record an import the service committed (placed at the next check)."""
        self.pending.append(done)

    def expected(self, source: str, period: str) -> Counter:
        total = Counter()
        for f in self.live[(source, period)]:
            total += f.counter()
        return total

    def _place_pending(self, db_rows) -> None:
        by_key: dict[tuple[str, str], list[ImportDone]] = defaultdict(list)
        for done in self.pending:
            by_key[(done.source, done.period)].append(done)
        self.pending = []
        for key, dones in by_key.items():
            actual = db_rows.get(key, Counter())
            found = None
            orders = itertools.permutations(dones) if len(dones) <= 5 else [tuple(dones)]
            for order in orders:
                live = list(self.live[key])
                ok = True
                for done in order:
                    live, status = _expected_status(live, done)
                    if status != done.status:
                        ok = False
                        break
                total = Counter()
                for f in live:
                    total += f.counter()
                if ok and total == actual:
                    found = live
                    break
            if found is None:
                self.violations.append(
                    f"imports into {key[0]} {key[1]}: no order of {len(dones)} committed "
                    f"import(s) gives the database's charges and their outcomes: "
                    + "; ".join(f"{d.op} -> {d.status}" for d in dones)
                    + f". Database has {sum(actual.values())} charge(s)"
                )
                # Adopt the last one reported so later checks measure later changes.
                live = list(self.live[key])
                for done in dones:
                    live, _ = _expected_status(live, done)
                found = live
            self.live[key] = found

    # -- the checks --------------------------------------------------------------------------

    def check(self, *, fresh_statements=(), fresh_journal=()) -> list[str]:
        """Check every invariant now (at a quiescent point). Returns the new violations."""
        from billing.models import BillingPeriod, Charge
        from billing.money import ExactSum

        start = len(self.violations)
        self.checks += 1
        db_rows: dict[tuple[str, str], Counter] = defaultdict(Counter)
        for source, period, rid, cost in Charge.objects.values_list(
            "source__name", "period__key", "resource_id", "billed_cost"
        ):
            db_rows[(source, period)][(rid, cost)] += 1
        self._place_pending(db_rows)

        # Every row of every live file counted once, and nothing else.
        for key in sorted(set(db_rows) | set(self.live)):
            expected, actual = self.expected(*key), db_rows.get(key, Counter())
            if expected != actual:
                missing = sum((expected - actual).values())
                extra = sum((actual - expected).values())
                self.violations.append(
                    f"charges of {key[0]} {key[1]}: {sum(actual.values())} in the database, "
                    f"{sum(expected.values())} rows in its live files ({missing} missing, "
                    f"{extra} not from a live file)"
                )
        # Each period's totals: exact sum of its live files, per currency (database's own sum).
        want: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        for (_, period), files in self.live.items():
            for f in files:
                for _, cost, currency in f.rows:
                    want[(period, currency)] += cost
        got = {
            (row["period__key"], row["billing_currency"]): row["total"]
            for row in Charge.objects.values("period__key", "billing_currency")
            .order_by()
            .annotate(total=ExactSum("billed_cost"))
        }
        for key in sorted(set(want) | set(got)):
            if want.get(key, ZERO) != got.get(key, ZERO):
                self.violations.append(
                    f"billed total of {key[0]} {key[1]}: database {got.get(key, ZERO)}, "
                    f"live files {want.get(key, ZERO)}"
                )

        periods = {p.key: p for p in BillingPeriod.objects.all()}
        for key, period in sorted(periods.items()):
            if period.status == BillingPeriod.Status.FINALIZED:
                snap = self.snapshot(period)
                if key not in self.finalized:
                    self.finalized[key] = snap
                    # Checked strictly once, when first seen finalized.
                    self.check_statements(period)
                    self.check_journal(period, tie=True)
                elif snap != self.finalized[key]:
                    self.violations.append(f"finalized period {key} changed after finalize")
            elif key in self.finalized:
                self.violations.append(f"finalized period {key} is {period.status} again")
        for key in sorted(set(fresh_statements) & set(periods)):
            if key not in self.finalized:
                self.check_statements(periods[key])
        for key, period in sorted(periods.items()):
            if key not in self.finalized:
                self.check_journal(period, tie=key in fresh_journal)
            self.check_one_current(period)
        self.check_review()
        self.check_mail()
        self.check_audit()
        return self.violations[start:]

    def snapshot(self, period) -> str:
        from billing.models import Charge
        from journals.models import JournalExport
        from statements.models import Statement, StatementEmail, StatementLine

        statements = list(Statement.objects.filter(period=period).order_by("pk").values())
        for s in statements:
            s["pdf_bytes"] = _pdf_sha(s["pdf_path"])
        exports = list(JournalExport.objects.filter(period=period).order_by("pk").values())
        for e in exports:
            e["file_bytes"] = _file_sha(e["path"])
        data = {
            "period": [period.key, period.status, period.closed_at, period.finalized_at],
            "charges": list(Charge.objects.filter(period=period).order_by("pk").values()),
            "statements": statements,
            "lines": list(
                StatementLine.objects.filter(statement__period=period).order_by("pk").values()
            ),
            "emails": list(
                StatementEmail.objects.filter(run__period=period)
                .order_by("pk")
                .values("pk", "status", "to_address", "sent_at")
            ),
            "exports": exports,
        }
        return hashlib.sha256(canonical(data).encode()).hexdigest()

    def billable_groups(self, period) -> dict[tuple, Decimal]:
        from billing.models import Charge

        sums: dict[tuple, Decimal] = defaultdict(Decimal)
        for email, code, fund, currency, cost in Charge.objects.filter(
            period=period, review_status__in=["clean", "approved"]
        ).values_list("pi__email", "project__code", "fund_org", "billing_currency", "billed_cost"):
            sums[(email, code, fund, currency)] += cost
        return {key: cents(total) for key, total in sums.items()}

    def current_statements(self, period) -> dict[tuple, Decimal]:
        from statements.models import Statement

        return {
            (s.pi.email, s.project.code, s.fund_org, s.currency): s.due_amount
            for s in Statement.objects.filter(
                period=period, superseded_by__isnull=True
            ).select_related("pi", "project")
        }

    def check_statements(self, period) -> None:
        want = self.billable_groups(period)
        got = self.current_statements(period)
        for key in sorted(set(want) | set(got), key=str):
            if key not in got and want[key] != ZERO:
                self.violations.append(
                    f"{period.key}: no current statement for {key} (billable {want[key]})"
                )
            elif key in got and got[key] != want.get(key, ZERO):
                self.violations.append(
                    f"{period.key}: statement for {key} says {got[key]}, billable charges "
                    f"{want.get(key, ZERO)}"
                )

    def check_one_current(self, period) -> None:
        from statements.models import Statement

        keys = Counter(
            Statement.objects.filter(period=period, superseded_by__isnull=True).values_list(
                "pi_id", "project_id", "fund_org", "currency"
            )
        )
        for key, n in keys.items():
            if n > 1:
                self.violations.append(f"{period.key}: {n} current statements for group {key}")

    def check_journal(self, period, *, tie: bool) -> None:
        from journals.models import JournalExport

        latest = {}
        for export in JournalExport.objects.filter(period=period).order_by("pk"):
            latest[export.currency] = export
        if tie and not latest and self.current_statements(period):
            self.violations.append(f"{period.key}: statements but no journal export")
        per_fund: dict[str, Decimal] = defaultdict(Decimal)
        for currency, export in latest.items():
            if export.debit_amount != export.credit_amount:
                self.violations.append(
                    f"{period.key} journal #{export.pk}: debits {export.debit_amount} != "
                    f"credits {export.credit_amount}"
                )
            if _file_sha(export.path) != export.sha256:
                self.violations.append(f"{period.key} journal #{export.pk}: file is not the record")
                continue
            debit = credit = ZERO
            with open(export.path, encoding="utf-8", newline="") as handle:
                for row in csv.DictReader(handle):
                    d = Decimal(row["Debit"] or "0")
                    c = Decimal(row["Credit"] or "0")
                    debit += d
                    credit += c
                    if row["Fund/Org"] not in self.credit_funds:
                        per_fund[(row["Fund/Org"], currency)] += d - c
            if debit != credit or debit != export.debit_amount:
                self.violations.append(
                    f"{period.key} journal #{export.pk}: file debits {debit}, credits {credit}, "
                    f"record {export.debit_amount}"
                )
        if not tie or "tie" in self.ignore:
            return
        if not self.current_statements(period) and all(
            e.period_status == "open" for e in latest.values()
        ):
            return  # a draft journal of an open month may come before its statements
        want: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        for (_, _, fund, currency), due in self.current_statements(period).items():
            want[(fund, currency)] += due
        for key in sorted(set(want) | set(per_fund)):
            if want.get(key, ZERO) != per_fund.get(key, ZERO):
                self.violations.append(
                    f"{period.key}: journal debits {key[0]} {per_fund.get(key, ZERO)} {key[1]}, "
                    f"statements on record {want.get(key, ZERO)}"
                )

    def check_review(self) -> None:
        import re

        from billing.models import Charge

        pattern = re.compile(self.fund_org_pattern)
        rows = Charge.objects.filter(review_status__in=["clean", "approved"]).values_list(
            "period__key", "pi_id", "project_id", "fund_org"
        )
        bad = Counter()
        for period, pi, project, fund in rows:
            if pi is None or project is None or not fund or not pattern.fullmatch(fund):
                bad[(period, fund)] += 1
        for (period, fund), n in sorted(bad.items()):
            self.violations.append(
                f"{period}: {n} billable charge(s) with fund/org {fund!r} or no PI/project"
            )

    def check_mail(self) -> None:
        from statements.models import StatementEmail

        carried = Counter()
        for statement_id, resend in StatementEmail.objects.filter(status="sent").values_list(
            "statements__id", "run__resend"
        ):
            if statement_id is not None and not resend:
                carried[statement_id] += 1
        for statement_id, n in sorted(carried.items()):
            if n > 1:
                self.violations.append(f"statement #{statement_id} mailed {n} times (no resend)")

    def check_audit(self) -> None:
        from accounts.models import AuditEvent

        now = {row["id"]: canonical(row) for row in AuditEvent.objects.values()}
        for pk, text in self.audit_seen.items():
            if now.get(pk) != text:
                self.violations.append(f"audit event #{pk} changed or removed")
                break
        self.audit_seen = now


def _pdf_sha(name: str) -> str:
    if not name:
        return ""
    from django.core.files.storage import default_storage

    try:
        with default_storage.open(name, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except FileNotFoundError:
        return "missing"
