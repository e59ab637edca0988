"""Writes for journals: exporting a period's journal to files.

Invariants:
- A journal file is written only when every check passed (journals/build.py): balanced, every
  source has a credit fund/org and account, every fund/org matches the configured patterns. A
  refused export writes no file and no record.
- Each file written has its JournalExport record and the export its audit event
  ("journal.export"), in one transaction; the file is stored as the last step of it.
- A finalized period is read-only: no new export (its recorded files stay downloadable).
- The same period, template and data give the same bytes (unless the template prints
  created_at/created_date). Default files go to the "journals" storage (settings.STORAGES:
  INSTANCE_DIR/journals, or an S3 bucket) by content, PERIOD/SHA256-PREFIX/NAME, so an export
  never overwrites a different one; `--output` writes a local file instead.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, storages
from django.db import transaction
from django.utils import timezone

from accounts.services import actor_name, audit_record
from billing.config import BillingConfig
from billing.models import BillingPeriod
from billing.money import money_text
from openchargeback.csvsafe import SafeWriter

from . import selectors
from .build import Journal, JournalRefused, journal_build
from .models import JournalExport, JournalTemplate

__all__ = ["JournalExportResult", "JournalRefused", "journal_export"]


@dataclass
class JournalExportResult:
    period: str
    template: str
    kind: str
    rows: int
    debit_total: dict[str, str]  # per currency, exact
    credit_total: dict[str, str]
    files: list[dict] = field(default_factory=list)  # currency, file, sha256, rows, totals
    export_ids: list[int] = field(default_factory=list)
    flagged: int = 0  # charges of the period still awaiting review, not in the journal
    period_status: str = ""
    dry_run: bool = False

    def as_dict(self) -> dict:
        paths = [f["file"] for f in self.files]
        return {
            "status": "dry-run" if self.dry_run else "exported",
            "period": self.period,
            "period_status": self.period_status,
            "template": self.template,
            "kind": self.kind,
            "rows": self.rows,
            "debit_total": self.debit_total,
            "credit_total": self.credit_total,
            "file": paths[0] if len(paths) == 1 else paths,
            "files": self.files,
            "flagged_not_exported": self.flagged,
            "export_ids": self.export_ids,
        }


def journals_dir() -> Path:
    return Path(settings.INSTANCE_DIR) / "journals"


def journal_storage():
    """settings.STORAGES["journals"] when set (an S3 bucket), else INSTANCE_DIR/journals."""
    if "journals" in settings.STORAGES:
        return storages["journals"]
    return FileSystemStorage(location=journals_dir())


def export_location(name: str) -> str:
    """Where a stored journal is: its path on disk, or its name when the storage has none."""
    try:
        return journal_storage().path(name)
    except NotImplementedError:
        return name


def export_content(record: JournalExport) -> bytes:
    """The bytes of an exported journal: a local file (`--output`, or an export made before
    journals went through the storage API) by its absolute path, else from the storage."""
    if os.path.isabs(record.path):
        return Path(record.path).read_bytes()
    with journal_storage().open(record.path, "rb") as handle:
        return handle.read()


def _store(temp: Path, name: str, size: int) -> str:
    """Put a written journal into the storage under `name` (a name by content: if it is there
    already with the same size, it holds these bytes). Returns the stored name."""
    storage = journal_storage()
    if storage.exists(name) and storage.size(name) == size:
        return name
    with open(temp, "rb") as handle:
        return storage.save(name, File(handle, name=Path(name).name))


def _resolve_template(template: JournalTemplate | str) -> JournalTemplate:
    if isinstance(template, JournalTemplate):
        return template
    found = selectors.template_find(template)
    if found is None:
        names = ", ".join(JournalTemplate.objects.order_by("name").values_list("name", flat=True))
        raise JournalRefused(
            [f"no journal template named {template!r} (templates: {names or 'none'})"]
        )
    return found


def _locked_message(period: BillingPeriod) -> str:
    exports = list(selectors.period_exports(period).order_by("created_at", "id"))
    if not exports:
        listing = "no journal was exported before it was finalized"
    else:
        listing = "recorded exports (download them in the admin, Journals → Journal exports): " + (
            "; ".join(
                f"#{e.pk} {e.template_name} {e.currency} {e.file_name} "
                f"({e.created_at:%Y-%m-%d %H:%M} by {e.actor})"
                for e in exports
            )
        )
    return f"period {period.key} is finalized and read-only; no new export. {listing}"


def _period(period_key: str) -> BillingPeriod:
    period = BillingPeriod.objects.filter(key=period_key).first()
    if period is None:
        raise JournalRefused([f"period {period_key} does not exist"])
    if period.is_locked():
        raise JournalRefused([_locked_message(period)])
    return period


def _write_temp(journal: Journal, template: JournalTemplate, folder: Path):
    """Write the journal to a temporary file in `folder`: (temp path, sha256, size, rows)."""
    folder.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=".journal-", suffix=".part", dir=folder)
    digest, size = hashlib.sha256(), 0
    buffer = io.StringIO(newline="")
    writer = SafeWriter(
        buffer, delimiter=template.delimiter, lineterminator=template.lineterminator
    )
    try:
        with os.fdopen(handle, "wb") as out:

            def flush() -> int:
                data = buffer.getvalue().encode("utf-8")
                buffer.seek(0)
                buffer.truncate()
                digest.update(data)
                out.write(data)
                return len(data)

            if journal.header:
                writer.writerow(journal.header)
            number = 0
            for number, cells in enumerate(journal.rows(), start=1):
                writer.writerow(cells)
                if number % 10_000 == 0:
                    size += flush()
            size += flush()
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        os.unlink(temp)
        raise
    return Path(temp), digest.hexdigest(), size, number


def _target(journal: Journal, output, count: int, period: BillingPeriod, sha: str):
    """A local Path for `--output`, else the name in the journals storage."""
    if output:
        path = Path(output)
        if count > 1:  # one file per currency: name them apart
            path = path.with_name(f"{path.stem}-{journal.currency}{path.suffix}")
        return path
    return f"{period.key}/{sha[:16]}/{journal.file_name}"


@transaction.atomic
def journal_export(
    *,
    period_key: str,
    template: JournalTemplate | str,
    output: str | Path | None = None,
    acting_user=None,
    actor: str = "",
    config: BillingConfig,
    dry_run: bool = False,
) -> JournalExportResult:
    """Write the period's journal (one file per currency), record and audit it.

    Raises JournalRefused (nothing written) when the journal can't be exported as it is. A dry
    run makes every check and renders the files (rows, totals, checksums) but keeps nothing.
    """
    template = _resolve_template(template)
    period = _period(period_key)
    # Hold the period row: a concurrent finalize waits for this export, or this one sees it.
    period = BillingPeriod.objects.select_for_update().get(pk=period.pk)
    if period.is_locked():
        raise JournalRefused([_locked_message(period)])
    now = timezone.now()
    journals = journal_build(period=period, template=template, config=config, created_at=now)
    actor = actor or actor_name(acting_user)

    prepared = []
    try:
        for journal in journals:
            if output and not dry_run:
                folder = Path(output).parent  # the same filesystem: moved into place
            else:
                folder = Path(tempfile.gettempdir())
            temp, sha, size, rows = _write_temp(journal, template, folder)
            path = _target(journal, output, len(journals), period, sha)
            prepared.append((journal, temp, sha, size, path))
            if rows != journal.line_count:  # the totals and the file must describe each other
                raise RuntimeError(f"wrote {rows} rows, expected {journal.line_count}")
        result = _record(period, template, prepared, acting_user, actor, dry_run=dry_run)
        if dry_run:
            for _, temp, _, _, _ in prepared:
                temp.unlink()
            return result
        for _, temp, _, size, path in prepared:
            if isinstance(path, Path):
                path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(temp, path)
                os.chmod(path, 0o644)
            else:
                stored = _store(temp, path, size)
                temp.unlink()
                if stored != path:  # the storage renamed it: the record would point elsewhere
                    raise RuntimeError(f"journal storage kept {path} as {stored}")
    except BaseException:
        for entry in prepared:
            if entry[1].exists():
                entry[1].unlink()
        raise
    return result


def _record(period, template, prepared, acting_user, actor, *, dry_run) -> JournalExportResult:
    result = JournalExportResult(
        dry_run=dry_run,
        period=period.key,
        template=template.name,
        kind=template.kind,
        rows=0,
        debit_total={},
        credit_total={},
        flagged=selectors.flagged_count(period),
        period_status=period.status,
    )
    for journal, _, sha, size, path in prepared:
        location = str(path.resolve()) if isinstance(path, Path) else export_location(path)
        result.rows += journal.line_count
        result.debit_total[journal.currency] = money_text(journal.debit_total)
        result.credit_total[journal.currency] = money_text(journal.credit_total)
        result.files.append(
            {
                "currency": journal.currency,
                "file": location,
                "sha256": sha,
                "rows": journal.line_count,
                "debit_total": money_text(journal.debit_total),
                "credit_total": money_text(journal.credit_total),
            }
        )
        if dry_run:
            continue
        record = JournalExport.objects.create(
            period=period,
            template=template,
            template_name=template.name,
            kind=template.kind,
            period_status=period.status,
            acting_user=acting_user if getattr(acting_user, "pk", None) else None,
            actor=actor,
            currency=journal.currency,
            file_name=Path(str(path)).name,
            path=location,
            sha256=sha,
            size_bytes=size,
            rows=journal.line_count,
            debit_amount=journal.debit_total,
            credit_amount=journal.credit_total,
        )
        result.export_ids.append(record.pk)
    if dry_run:
        return result
    audit_record(
        action="journal.export",
        acting_user=acting_user,
        actor=actor,
        obj=period,
        after={"exports": result.export_ids},
        details={
            "template": template.name,
            "kind": template.kind,
            "period_status": period.status,
            "rows": result.rows,
            "debit_total": result.debit_total,
            "credit_total": result.credit_total,
            "files": [{"file": f["file"], "sha256": f["sha256"]} for f in result.files],
        },
    )
    return result
