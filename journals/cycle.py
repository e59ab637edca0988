"""The month, unattended: `openchargeback cycle -p YYYY-MM` and the Celery beat task that runs it.

One pass walks the month as far as it can go without a person, each step through the service
that owns it, and stops where a person must act:

1. import what the inbox holds for the month: `<inbox>/<YYYY-MM>/<source>/` holds that source's
   files; a file directly in `<inbox>/<YYYY-MM>/` has its source told by its name, through the
   sources' `pattern`: exactly one must match (none, or two: a person must say). Each source's
   files are that month's delivery (`ingest -p`); files already imported for their source are
   skipped by the importer itself, so a second pass imports nothing twice;
2. stop if any charge is flagged (a person reviews it, then runs the cycle again);
3. close the month;
4. generate the final statements and send them (unchanged statements are kept, sent ones are not
   sent again: generation is idempotent);
5. export the general-ledger journal when none is current;
6. wait (bounded) for the emails; a failed email stops the month for a person;
7. with `finalize=True`, finalize it.

Every step is its own transaction and reads the month's state before it acts, so a pass that
crashed anywhere is finished by the next one. The journal is the top of the apps, so the cycle
lives here: it is the one place that may call billing, statements and journals alike.
"""

from __future__ import annotations

import time
import zlib
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from django.conf import settings

from billing.config import BillingConfig
from billing.ingest.errors import ImportRefused
from billing.ingest.pipeline import PERIOD_RE, content_sha256, sha256_file
from billing.models import BillingPeriod, Charge, Import, ImportFile
from billing.services import import_files
from billing.services.periods import PeriodError, period_close, period_finalize
from billing.services.uploads import source_matches, source_patterns
from statements.models import Statement
from statements.selectors import period_emails_settled
from statements.services import StatementError, statement_generate

from .build import JournalRefused
from .selectors import period_has_journal
from .services import journal_export

ACTOR = "cycle"
INBOX_SUFFIXES = (".csv", ".csv.gz", ".parquet")

# What a pass ended with; the command's exit status says the same (0, 2, 1).
DONE = "done"  # the month went as far as asked; nothing waits for a person
ACT = "needs-a-person"  # stopped where a person must act; the report says what to do
FAILED = "failed"  # a step was refused; the report says which and why


@dataclass
class CycleReport:
    period: str
    outcome: str = DONE
    status: str = ""  # the month's status at the end
    steps: list[dict] = field(default_factory=list)
    action: str = ""  # what a person must do, when outcome is ACT or FAILED

    def step(self, name: str, result: str, **details) -> None:
        self.steps.append({"step": name, "result": result, **details})

    def stop(self, outcome: str, action: str) -> CycleReport:
        self.outcome, self.action = outcome, action
        return self

    @property
    def exit_code(self) -> int:
        return {DONE: 0, ACT: 2, FAILED: 1}[self.outcome]

    def as_dict(self) -> dict:
        return asdict(self) | {"exit_code": self.exit_code}


def inbox_root() -> Path:
    return Path(settings.OPENCHARGEBACK_INBOX)


def _is_billing_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(INBOX_SUFFIXES)


def inbox_files(period_key: str, inbox: Path | None = None) -> list[Path]:
    """Every billing file of the month's inbox folder and its source folders."""
    folder = (inbox or inbox_root()) / period_key
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*") if _is_billing_file(p)) + sorted(
        p for p in folder.glob("*/*") if _is_billing_file(p)
    )


def inbox_by_source(
    period_key: str, files: list[Path], config: BillingConfig
) -> tuple[dict[str, list[Path]], list[str]]:
    """(source -> files, what is wrong with the files whose source can't be told)."""
    patterns = source_patterns(config)
    by_source: dict[str, list[Path]] = defaultdict(list)
    problems = []
    for path in files:
        if path.parent.name != period_key:  # <inbox>/<month>/<source>/: the folder says
            by_source[path.parent.name].append(path)
            continue
        sources = sorted(source_matches(path.name, patterns))
        if len(sources) == 1:
            by_source[sources[0]].append(path)
        elif sources:
            problems.append(f"{path.name} matches {' and '.join(sources)}")
        else:
            problems.append(f"{path.name} matches no source")
    return dict(by_source), problems


def run_cycle(
    *,
    period_key: str,
    config: BillingConfig,
    inbox: Path | None = None,
    template: str = "gl",
    wait_seconds: float = 600,
    finalize: bool = False,
) -> CycleReport:
    """One pass over the month; see the module docstring. Never raises for a refusal."""
    report = CycleReport(period=period_key)
    if not PERIOD_RE.match(period_key or ""):
        return report.stop(FAILED, f"period must be YYYY-MM, got {period_key!r}")
    try:
        _run(report, period_key, config, inbox, template, wait_seconds, finalize)
    except (ImportRefused, PeriodError, StatementError, JournalRefused) as exc:
        report.stop(FAILED, str(exc))
    period = BillingPeriod.objects.filter(key=period_key).first()
    report.status = period.status if period else "none"
    return report


def _run(report, period_key, config, inbox, template, wait_seconds, finalize) -> None:
    period = BillingPeriod.objects.filter(key=period_key).first()
    if period and period.status == BillingPeriod.Status.FINALIZED:
        report.step("month", "finalized already: nothing to do")
        return

    root = inbox or inbox_root()
    if not root.is_dir():
        report.stop(
            ACT,
            f"the inbox {root} does not exist (OPENCHARGEBACK_INBOX or --inbox): create it, "
            f"with a folder {period_key}/ for the month's files",
        )
        return
    files = inbox_files(period_key, inbox)
    if period is None or period.status == BillingPeriod.Status.OPEN:
        if not _import(report, period_key, files, config):
            return
    else:
        late = _not_imported(period, files)
        if late:
            report.stop(
                ACT,
                f"{len(late)} file(s) arrived for {period_key} after it was closed "
                f"({', '.join(p.name for p in late[:5])}); reopen the month to import them, "
                "or move them to the month they belong to",
            )
            return
        report.step("import", f"month is {period.status}: no imports")

    period = BillingPeriod.objects.filter(key=period_key).first()
    if period is None or not Charge.objects.filter(period=period).exists():
        report.stop(ACT, f"nothing to bill: no charges in {period_key} and no files in its inbox")
        return

    flagged = Charge.objects.filter(period=period, review_status=Charge.ReviewStatus.FLAGGED)
    count = flagged.count()
    if count:
        report.step("review", f"{count} charge(s) flagged")
        report.stop(
            ACT,
            f"{count} charge(s) in {period_key} are flagged: approve, reject or reassign them "
            "(admin review queue or `openchargeback review`), then run the cycle again",
        )
        return
    report.step("review", "nothing flagged")

    if period.status == BillingPeriod.Status.OPEN:
        period_close(key=period_key, actor=ACTOR, reason="cycle: nothing flagged")
        report.step("close", "closed")
    else:
        report.step("close", "closed already")

    result = statement_generate(period_key=period_key, send=True, actor=ACTOR, config=config)
    report.step(
        "statements",
        "generated",
        statements=len(result.statements),
        changes=result.changes,
        total_due=result.total_due,
    )

    period.refresh_from_db()
    if period_has_journal(period):
        report.step("journal", "current journal on record")
    else:
        export = journal_export(
            period_key=period_key, template=template, actor=ACTOR, config=config
        )
        report.step(
            "journal",
            "exported",
            files=[f["file"] for f in export.files],
            debit_total=export.debit_total,
            credit_total=export.credit_total,
        )

    if not _wait_for_emails(period, wait_seconds):
        report.stop(
            ACT,
            "statement emails are still being sent; run the cycle again when the workers "
            "have finished (is a worker running?)",
        )
        return
    statements = _statement_counts(period)
    report.step("emails", "settled", **statements)
    if statements.get(Statement.Status.FAILED):
        report.stop(
            ACT,
            f"{statements[Statement.Status.FAILED]} statement(s) could not be mailed; see the "
            "admin's statement emails, fix the address or the mail server, then run the cycle "
            "again (it mails them again)",
        )
        return

    if finalize:
        period_finalize(key=period_key, actor=ACTOR, reason="cycle")
        report.step("finalize", "finalized")


def _import(report: CycleReport, period_key: str, files: list[Path], config) -> bool:
    """Import the inbox; False when a file's source can't be told (nothing imported then)."""
    if not files:
        report.step("import", "inbox empty")
        return True
    by_source, problems = inbox_by_source(period_key, files, config)
    if problems:
        report.stop(
            ACT,
            f"{'; '.join(problems[:5])}: move each such file into the folder of its source "
            f"(<inbox>/{period_key}/<source>/) and run the cycle again; nothing was imported",
        )
        return False
    for source, paths in sorted(by_source.items()):
        if _already_imported(source, period_key, paths):
            report.step("import", "already imported", source=source, files=[p.name for p in paths])
            continue
        result = import_files(
            paths=paths, source=source, period=period_key, actor=ACTOR, config=config
        )
        report.step(
            "import",
            result.status,
            source=source,
            files=[p.name for p in paths],
            skipped=result.skipped_files,
            rows_added=result.rows_added,
            rows_removed=result.rows_removed,
            rows_flagged=result.rows_flagged,
            import_id=result.import_id,
        )
    return True


def _already_imported(source: str, period_key: str, paths: list[Path]) -> bool:
    """True when the source's last import of the month was exactly these files."""
    last = (
        Import.objects.filter(source__name=source, requested_period=period_key)
        .order_by("-created_at", "-id")
        .first()
    )
    if last is None:
        return False
    imported = sorted(last.files.values_list("sha256", flat=True))
    hashes = [_hashes(p) for p in paths]
    # An import recorded before content hashes kept a compressed file's byte hash.
    return imported in (sorted(h[0] for h in hashes), sorted(h[1] for h in hashes))


def _hashes(path: Path) -> tuple[str, str]:
    """(content hash, byte hash) as the import records them; a file that can't be decompressed
    has its bytes' only (its import is refused with the reason, not this check)."""
    try:
        return content_sha256(path)[:2]
    except (OSError, EOFError, zlib.error):
        digest = sha256_file(path)[0]
        return digest, digest


def _not_imported(period: BillingPeriod, files: list[Path]) -> list[Path]:
    known = set(
        ImportFile.objects.filter(import_run__requested_period=period.key).values_list(
            "sha256", flat=True
        )
    )
    return [p for p in files if known.isdisjoint(_hashes(p))]


def _statement_counts(period: BillingPeriod) -> dict[str, int]:
    """The current final statements by status (a failed one is mailed again by the next pass)."""
    counts: dict[str, int] = defaultdict(int)
    current = Statement.objects.filter(period=period, superseded_by__isnull=True, is_draft=False)
    for status in current.values_list("status", flat=True):
        counts[status] += 1
    return dict(counts)


def _wait_for_emails(period: BillingPeriod, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not period_emails_settled(period):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)
    return True
