"""Admin uploads: FOCUS files stored with an ImportJob, checked by a dry run, then imported.

Invariants:
- The import goes through `billing.ingest.pipeline.import_files`, the service the command line
  uses: the dry run with `dry_run=True` (nothing written), the real import without it. A refusal
  leaves the charges as they were and is shown with its file, line and column.
- A job imports at most once: `import_job_run` locks the job row for the whole import and does
  nothing for a job that is already imported, discarded or failed, so a redelivered task is
  harmless. The job turns `done` in the same transaction as the import it made.
- Only .csv, .csv.gz and .parquet files under OPENCHARGEBACK_UPLOAD_MAX_BYTES are stored; they
  live under MEDIA_ROOT/uploads/<job id>/ until the job is imported or discarded.
- Jobs larger than OPENCHARGEBACK_UPLOAD_ASYNC_BYTES are checked and imported by a Celery task,
  enqueued after the transaction that queued it commits.
- Every change of a job's state writes an audit event in the same transaction; the import
  itself is audited by the pipeline.
- An upload of several sources' files (`import_batch_create`) is one job per file, sharing a
  batch key: each file's source is guessed on its own and may be changed (which checks it
  again) until it is confirmed; each file is imported as its own import with its own receipt.
  A file whose source can't be guessed waits (status `source`) and is never checked or
  imported until a source is chosen.

The import engine (billing.ingest.pipeline, with numpy and pyarrow: 0.2 s) is imported in the
functions that use it, not here: the admin imports this module at every start-up.
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from django.conf import settings
from django.db import connection, connections, transaction
from django.utils.text import get_valid_filename

from accounts.services import audit_record

from ..config import BillingConfig, ConfigError, load_config
from ..ingest.errors import ImportRefused
from ..models import PERIOD_RE, ImportJob, Source
from ..usage import CONVERTERS

logger = logging.getLogger(__name__)

ALLOWED_SUFFIXES = (".csv.gz", ".csv", ".parquet")
DEFAULT_MAX_BYTES = 2 * 1024**3
DEFAULT_ASYNC_BYTES = 20 * 1024**2
PROGRESS_SECONDS = 2.0  # at most one progress write per this many seconds
UPLOAD_DIR = "uploads"
ADVISORY_LOCK_CLASS = 0x0CB1  # pg_advisory_xact_lock(class, job id) while a job imports


class UploadError(Exception):
    """An upload or a job transition that can't be done; str() is a message for the user."""


def max_bytes() -> int:
    return int(getattr(settings, "OPENCHARGEBACK_UPLOAD_MAX_BYTES", DEFAULT_MAX_BYTES))


def async_bytes() -> int:
    return int(getattr(settings, "OPENCHARGEBACK_UPLOAD_ASYNC_BYTES", DEFAULT_ASYNC_BYTES))


def runs_in_background(job: ImportJob) -> bool:
    """Big jobs are checked and imported by a Celery task, with progress on the job page."""
    return sum(f["size"] for f in job.files) > async_bytes()


def job_dir(job_id: int) -> Path:
    return Path(settings.MEDIA_ROOT) / UPLOAD_DIR / str(job_id)


def _suffix(name: str) -> str | None:
    lower = name.lower()
    for suffix in ALLOWED_SUFFIXES:
        if lower.endswith(suffix):
            return suffix
    return None


# -- the source from the file names ------------------------------------------------------------


def source_patterns(config: BillingConfig | None = None) -> dict[str, str]:
    """source name -> filename pattern: the configuration's, then the admin's Source rows."""
    patterns: dict[str, str] = {}
    if config is not None:
        for source in config.sources:
            if source.pattern:
                patterns[source.name] = source.pattern
    for name, pattern in Source.objects.exclude(filename_pattern="").values_list(
        "name", "filename_pattern"
    ):
        patterns.setdefault(name, pattern)
    return patterns


def source_names(config: BillingConfig | None = None) -> list[str]:
    names = {s.name for s in config.sources} if config is not None else set()
    names |= set(Source.objects.values_list("name", flat=True))
    return sorted(names)


def source_matches(name: str, patterns: dict[str, str]) -> dict[str, int]:
    """source -> length of its pattern's match in the file's name, for every source that matches
    (a pattern that isn't a valid regular expression matches nothing)."""
    base = Path(name).name
    hits: dict[str, int] = {}
    for source, pattern in patterns.items():
        try:
            match = re.search(pattern, base, flags=re.IGNORECASE)
        except re.error:
            continue
        if match:
            hits[source] = len(match.group(0))
    return hits


def source_guess_one(name: str, patterns: dict[str, str]) -> str | None:
    """The source whose pattern matches the file name; the longest match wins, a tie is None.
    (A guess a person sees and may change; the unattended cycle takes only a single match.)"""
    hits = source_matches(name, patterns)
    if not hits:
        return None
    best = max(hits.values())
    winners = [s for s, length in hits.items() if length == best]
    return winners[0] if len(winners) == 1 else None


def source_guess(*, names: Sequence[str], config: BillingConfig | None = None) -> str:
    """The one source all the files belong to, from the configured filename patterns.

    Raises UploadError naming the files when a file matches no pattern or the files match
    different sources (the upload page then asks for the source).
    """
    patterns = source_patterns(config)
    guesses = {name: source_guess_one(name, patterns) for name in names}
    unknown = [name for name, source in guesses.items() if source is None]
    if unknown:
        raise UploadError(
            f"can't tell the source of {', '.join(unknown)} from its name; choose the source"
        )
    found = sorted(set(guesses.values()))
    if len(found) > 1:
        detail = "; ".join(f"{name}: {source}" for name, source in guesses.items())
        raise UploadError(
            f'the files look like different sources ({detail}); tick "one import per file" '
            "or upload one source at a time"
        )
    return found[0]


# -- services ----------------------------------------------------------------------------------


def _config(config: BillingConfig | None) -> BillingConfig:
    if config is not None:
        return config
    try:
        return load_config()
    except ConfigError as exc:
        raise UploadError(f"the billing configuration is invalid: {exc}") from None


def _validate(files, input_format: str = "focus") -> None:
    if not files:
        raise UploadError("choose at least one file")
    if input_format != "focus" and len(files) != 1:
        raise UploadError(f"a {input_format} export is converted one file at a time")
    limit = max_bytes()
    for upload in files:
        if input_format == "focus" and _suffix(upload.name) is None:
            raise UploadError(
                f"{upload.name}: not a file we import; choose .csv, .csv.gz or .parquet files"
            )
        if upload.size > limit:
            raise UploadError(
                f"{upload.name}: {upload.size:,} bytes is more than the limit of {limit:,} bytes"
            )
        if upload.size == 0:
            raise UploadError(f"{upload.name}: the file is empty")


def _store(job: ImportJob, files) -> list[dict]:
    folder = job_dir(job.pk)
    folder.mkdir(parents=True, exist_ok=True)
    stored, used = [], set()
    for index, upload in enumerate(files, start=1):
        original = Path(upload.name).name
        safe = get_valid_filename(original) or f"file-{index}{_suffix(original) or '.txt'}"
        if safe in used:
            safe = f"{index}-{safe}"
        used.add(safe)
        target = folder / safe
        temporary = getattr(upload, "temporary_file_path", None)
        if temporary is not None:
            shutil.copyfile(temporary(), target)
        else:
            with open(target, "wb") as handle:
                for chunk in upload.chunks():
                    handle.write(chunk)
        relative = target.relative_to(Path(settings.MEDIA_ROOT)).as_posix()
        stored.append({"name": original, "path": relative, "size": upload.size})
    return stored


def import_job_create(
    *,
    files,
    source: str | None = None,
    period: str | None = None,
    append: bool = False,
    input_format: str = "focus",
    acting_user,
    config: BillingConfig | None = None,
) -> ImportJob:
    """Store uploaded files with a new job, then check them with a dry run.

    `input_format`: "focus", or a usage converter's name (billing.usage.CONVERTERS): the one
    file is converted with the stored rates and account map, for the month `period`.

    `files` are Django UploadedFiles. `source` None or "": guessed from the file names. `period`
    None or "": the months come from the data. Small jobs are checked before this returns; big
    ones by a task (the job page shows progress).
    """
    config = _config(config)
    if input_format != "focus" and input_format not in CONVERTERS:
        raise UploadError(f"unknown format {input_format!r}")
    _validate(files, input_format)
    period = (period or "").strip()
    if period and not PERIOD_RE.match(period):
        raise UploadError(f"the period must be YYYY-MM, got {period!r}")
    if input_format != "focus" and not period:
        raise UploadError(f"a {input_format} export needs the period it covers (YYYY-MM)")
    source_name = source or source_guess(names=[f.name for f in files], config=config)
    folder = None
    try:
        with transaction.atomic():
            from ..ingest.pipeline import source_for_import  # local: the module's notes say why

            try:
                source_row = source_for_import(source_name, config)
            except ImportRefused as exc:
                raise UploadError(exc.message) from None
            job = ImportJob.objects.create(
                acting_user=_user(acting_user),
                source=source_row,
                requested_period=period,
                append=append,
                input_format=input_format,
                status=ImportJob.Status.CHECKING,
            )
            folder = job_dir(job.pk)
            job.files = _store(job, files)
            job.save(update_fields=["files", "updated_at"])
            audit_record(
                action="upload_create",
                acting_user=acting_user,
                obj=job,
                after={"status": job.status},
                details={
                    "files": job.files,
                    "source": source_name,
                    "source_guessed": not source,
                    "period": period,
                    "append": append,
                    "input_format": input_format,
                },
            )
            background = runs_in_background(job)
            if background:
                job_id, user_id = job.pk, _user_id(acting_user)
                transaction.on_commit(lambda: _enqueue("import_job_check", job_id, user_id))
    except BaseException:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    if background:
        return job
    return import_job_check(job_id=job.pk, acting_user=acting_user, config=config)


def import_batch_create(
    *,
    files,
    sources: dict[str, str] | None = None,
    period: str | None = None,
    append: bool = False,
    acting_user,
    config: BillingConfig | None = None,
) -> list[ImportJob]:
    """One upload of several sources' files: a job per file, in one batch, each file's source
    guessed from its own name (or taken from `sources`, file name -> source name). Files with
    a source are checked now (or by a task when big); the others wait for one."""
    config = _config(config)
    _validate(files)
    period = (period or "").strip()
    if period and not PERIOD_RE.match(period):
        raise UploadError(f"the period must be YYYY-MM, got {period!r}")
    patterns = source_patterns(config)
    chosen = sources or {}
    batch = secrets.token_hex(8)
    jobs, folders, to_check = [], [], []
    from ..ingest.pipeline import source_for_import  # local: the module's notes say why

    try:
        with transaction.atomic():
            for upload in files:
                name = chosen.get(upload.name) or source_guess_one(upload.name, patterns)
                source_row = None
                if name:
                    try:
                        source_row = source_for_import(name, config)
                    except ImportRefused as exc:
                        raise UploadError(f"{upload.name}: {exc.message}") from None
                job = ImportJob.objects.create(
                    acting_user=_user(acting_user),
                    source=source_row,
                    requested_period=period,
                    append=append,
                    batch=batch,
                    status=ImportJob.Status.CHECKING if source_row else ImportJob.Status.SOURCE,
                )
                folders.append(job_dir(job.pk))
                job.files = _store(job, [upload])
                job.save(update_fields=["files", "updated_at"])
                audit_record(
                    action="upload_create",
                    acting_user=acting_user,
                    obj=job,
                    after={"status": job.status},
                    details={
                        "files": job.files,
                        "batch": batch,
                        "source": name or "",
                        "source_guessed": upload.name not in chosen,
                        "period": period,
                        "append": append,
                    },
                )
                jobs.append(job)
                if source_row is not None:
                    to_check.append(job)
            to_check = _check_later_or_now(to_check, acting_user)
    except BaseException:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    for job in to_check:
        import_job_check(job_id=job.pk, acting_user=acting_user, config=config)
    return list(ImportJob.objects.filter(batch=batch).order_by("id"))


def _check_later_or_now(jobs: list[ImportJob], acting_user) -> list[ImportJob]:
    """Queue the checks of big jobs after commit; return the jobs to check in this request."""
    now = []
    for job in jobs:
        if runs_in_background(job):
            job_id, user_id = job.pk, _user_id(acting_user)
            transaction.on_commit(
                lambda job_id=job_id, user_id=user_id: _enqueue("import_job_check", job_id, user_id)
            )
        else:
            now.append(job)
    return now


def import_job_set_source(
    *, job_id: int, source: str, acting_user, config: BillingConfig | None = None
) -> ImportJob:
    """Give a file of a batch its source (or another one), and check it again."""
    config = _config(config)
    changeable = (ImportJob.Status.SOURCE, ImportJob.Status.CHECKED, ImportJob.Status.FAILED)
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job_id)
        if job.status not in changeable or job.import_run_id:
            raise UploadError(
                f"upload #{job.pk} is {job.get_status_display().lower()}: its source can't be "
                "changed"
            )
        from ..ingest.pipeline import source_for_import  # local: the module's notes say why

        try:
            source_row = source_for_import(source, config)
        except ImportRefused as exc:
            raise UploadError(exc.message) from None
        before = {"status": job.status, "source": job.source.name if job.source else ""}
        job.source = source_row
        job.status = ImportJob.Status.CHECKING
        job.receipt = {}
        job.error = ""
        job.rows_total = job.rows_done = 0
        job.save()
        audit_record(
            action="upload_source",
            acting_user=acting_user,
            obj=job,
            before=before,
            after={"status": job.status, "source": source_row.name},
        )
        now = _check_later_or_now([job], acting_user)
    if not now:
        return job
    return import_job_check(job_id=job.pk, acting_user=acting_user, config=config)


def import_batch_confirm(*, batch: str, acting_user) -> list[ImportJob]:
    """Import every checked file of a batch, each as its own import. Files still waiting for a
    source, refused or discarded are left as they are (the batch page shows them)."""
    jobs = list(ImportJob.objects.filter(batch=batch, status=ImportJob.Status.CHECKED))
    if not jobs:
        raise UploadError("no file of this upload is checked and waiting to be imported")
    for job in jobs:
        import_job_confirm(job_id=job.pk, acting_user=acting_user)
    return list(ImportJob.objects.filter(batch=batch).order_by("id"))


def import_job_check(*, job_id: int, acting_user, config: BillingConfig | None = None) -> ImportJob:
    """Dry-run the job's files through the import service and keep the receipt on the job."""
    config = _config(config)
    job = ImportJob.objects.select_related("source").get(pk=job_id)
    if job.status != ImportJob.Status.CHECKING:
        return job  # already checked (a redelivered task), or discarded meanwhile
    progress = _Progress(job.pk)
    refused = None
    try:
        result = _job_import(
            job, dry_run=True, acting_user=acting_user, config=config, progress=progress
        )
    except ImportRefused as exc:
        refused = exc
    except Exception as exc:  # a defect, not the file's fault: the job must still end
        refused = _unexpected(job_id, exc, "checked")
    finally:
        progress.close()
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job_id)
        if job.status != ImportJob.Status.CHECKING:
            return job
        before = job.status
        if refused is not None:
            job.status = ImportJob.Status.FAILED
            job.error = str(refused)
            job.receipt = {
                "refused": refused.message,
                "problems": refused.problems,
                "problem_count": refused.total,
            }
        else:
            job.status = ImportJob.Status.CHECKED
            job.receipt = result.as_dict()
            job.rows_total = result.rows_read
            job.error = ""
        job.rows_done = 0
        job.save()
        audit_record(
            action="upload_check",
            acting_user=acting_user,
            obj=job,
            before={"status": before},
            after={"status": job.status},
            details={"receipt": job.receipt},
        )
    return job


def import_job_confirm(*, job_id: int, acting_user) -> ImportJob:
    """Commit a checked job: import it now, or queue it for a worker when it is big."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job_id)
        if job.status != ImportJob.Status.CHECKED:
            raise UploadError(
                f"upload #{job.pk} is {job.get_status_display().lower()}: only a checked upload "
                "can be imported"
            )
        job.status = ImportJob.Status.QUEUED
        job.save(update_fields=["status", "updated_at"])
        audit_record(
            action="upload_confirm",
            acting_user=acting_user,
            obj=job,
            before={"status": ImportJob.Status.CHECKED},
            after={"status": job.status},
        )
        background = runs_in_background(job)
        if background:
            user_id = _user_id(acting_user)
            transaction.on_commit(lambda: _enqueue("import_job_run", job_id, user_id))
    if background:
        return job
    return import_job_run(job_id=job_id, acting_user=acting_user)


def import_job_run(*, job_id: int, acting_user, config: BillingConfig | None = None) -> ImportJob:
    """Import a queued job's files for real. Idempotent: a job already done does nothing."""
    config = _config(config)
    runnable = (ImportJob.Status.QUEUED, ImportJob.Status.IMPORTING)
    # Visible to the job page at once (its own short transaction).
    started = ImportJob.objects.filter(pk=job_id, status__in=runnable).update(
        status=ImportJob.Status.IMPORTING, rows_done=0
    )
    if not started:
        return ImportJob.objects.get(pk=job_id)
    progress = _Progress(job_id)
    refused = None
    try:
        with transaction.atomic():
            # Held until the import commits: a second delivery of the task waits here, then
            # finds the job done. Not a row lock, so progress can still be written to the row.
            _lock_job(job_id)
            job = ImportJob.objects.select_related("source").get(pk=job_id)
            if job.status != ImportJob.Status.IMPORTING:
                return job
            try:
                result = _job_import(
                    job, dry_run=False, acting_user=acting_user, config=config, progress=progress
                )
            except ImportRefused as exc:
                refused = exc
            else:
                job.status = ImportJob.Status.DONE
                job.import_run_id = result.import_id
                job.receipt = {**result.as_dict(), "check": job.receipt}
                job.rows_done = result.rows_read
                job.error = ""
                job.save()
                audit_record(
                    action="upload_import",
                    acting_user=acting_user,
                    obj=job,
                    before={"status": ImportJob.Status.QUEUED},
                    after={"status": job.status, "import": result.import_id},
                )
                folder = job_dir(job.pk)
                transaction.on_commit(lambda: shutil.rmtree(folder, ignore_errors=True))
    except Exception as exc:  # rolled back; the job must not stay "importing"
        refused = _unexpected(job_id, exc, "imported")
    finally:
        progress.close()
    if refused is not None:
        return _fail(job_id, refused, acting_user)
    return ImportJob.objects.get(pk=job_id)


def _unexpected(job_id: int, exc: Exception, stage: str) -> ImportRefused:
    """A refusal for an error no check caught, logged with its traceback for the developers."""
    logger.exception("upload #%s could not be %s", job_id, stage)
    return ImportRefused(
        f"the files could not be {stage} ({type(exc).__name__}); nothing was imported. "
        "This is a defect: the details are in the server log."
    )


def _fail(job_id: int, refused: ImportRefused, acting_user) -> ImportJob:
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job_id)
        before = job.status
        job.status = ImportJob.Status.FAILED
        job.error = str(refused)
        job.receipt = {
            **job.receipt,
            "refused": refused.message,
            "problems": refused.problems,
            "problem_count": refused.total,
        }
        job.save()
        audit_record(
            action="upload_failed",
            acting_user=acting_user,
            obj=job,
            before={"status": before},
            after={"status": job.status},
            reason=refused.message,
        )
    return job


def import_job_discard(*, job_id: int, acting_user) -> ImportJob:
    """Discard a job that was not imported: its stored files are deleted."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job_id)
        allowed = (
            ImportJob.Status.SOURCE,
            ImportJob.Status.CHECKING,
            ImportJob.Status.CHECKED,
            ImportJob.Status.FAILED,
        )
        if job.status not in allowed:
            raise UploadError(
                f"upload #{job.pk} is {job.get_status_display().lower()}: it can't be discarded"
            )
        before = job.status
        job.status = ImportJob.Status.DISCARDED
        job.save(update_fields=["status", "updated_at"])
        audit_record(
            action="upload_discard",
            acting_user=acting_user,
            obj=job,
            before={"status": before},
            after={"status": job.status},
            details={"files": [f["name"] for f in job.files]},
        )
        folder = job_dir(job.pk)
        transaction.on_commit(lambda: shutil.rmtree(folder, ignore_errors=True))
    return job


# -- helpers -----------------------------------------------------------------------------------


def _job_import(job: ImportJob, *, dry_run: bool, acting_user, config, progress):
    """The job's files through the import pipeline: as FOCUS, or converted first."""
    from ..ingest.pipeline import import_files  # local: the module's notes say why
    from ..usage.imports import usage_import

    if job.input_format != "focus":
        [entry] = job.files
        return usage_import(
            converter=job.input_format,
            path=_path(entry),
            source=job.source.name,
            period=job.requested_period,
            append=job.append,
            dry_run=dry_run,
            acting_user=acting_user,
            config=config,
            progress=progress,
            display_name=entry["name"],
        )
    return import_files(
        paths=[_path(f) for f in job.files],
        source=job.source.name,
        period=job.requested_period or None,
        append=job.append,
        dry_run=dry_run,
        acting_user=acting_user,
        config=config,
        progress=progress,
        display_names=[f["name"] for f in job.files],
    )


def _path(entry: dict) -> str:
    return str(Path(settings.MEDIA_ROOT) / entry["path"])


def _user(user):
    return user if getattr(user, "pk", None) else None


def _user_id(user) -> int | None:
    return getattr(user, "pk", None)


def _lock_job(job_id: int) -> None:
    """A transaction-scoped lock on the job's import (SQLite: its writer lock already is one)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [ADVISORY_LOCK_CLASS, job_id])


def _enqueue(task_name: str, job_id: int, user_id: int | None) -> None:
    from .. import tasks

    getattr(tasks, task_name).delay(job_id, user_id=user_id)


class _Progress:
    """The pipeline's progress callback: rows so far, written to ImportJob.rows_done.

    The import runs in one transaction, so progress is written on a second connection that
    commits on its own, at most every PROGRESS_SECONDS. SQLite allows one writer at a time and
    the import holds it, so there the job shows its progress only when it ends.
    """

    def __init__(self, job_id: int):
        self.job_id = job_id
        self.rows = 0
        self.written_at = time.monotonic()
        self._conn = None
        self.enabled = connection.vendor == "postgresql"

    def __call__(self, rows: int) -> None:
        self.rows += rows
        now = time.monotonic()
        if not self.enabled or now - self.written_at < PROGRESS_SECONDS:
            return
        self.written_at = now
        try:
            if self._conn is None:
                self._conn = connections.create_connection(connection.alias)
                with self._conn.cursor() as cursor:
                    # Never wait for a lock held by the import's own transaction.
                    cursor.execute("SET lock_timeout = '1s'")
            with self._conn.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {ImportJob._meta.db_table} SET rows_done = %s WHERE id = %s",
                    [self.rows, self.job_id],
                )
        except Exception:  # progress is a courtesy; the import must not fail for it
            logger.warning("could not record progress of upload #%s", self.job_id, exc_info=True)
            self.enabled = False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
