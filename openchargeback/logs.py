"""Structured logs: one record a line, key=value or JSON, each carrying what it happened to.

What a record is about (the acting user, the period, the import, the statement batch) is held
in a context variable: the web's `LogContextMiddleware` sets the user and the period of each
request; Celery tasks set theirs through `log_context` (a task's own ids) and the `task_prerun`
hook below (the task's name and id). Any code that knows more adds it for a block:

    with log_context(import_id=record.pk):
        log.info("import committed")

Context variables follow threads and asyncio tasks, so one request's or task's context never
shows on another's records. LOG_FORMAT and LOG_FILE choose the format and a file
(settings.LOGGING).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType

from django.core.exceptions import ImproperlyConfigured

# The fields every record may carry, in the order a key=value line prints them.
# upload_id is an admin upload (ImportJob), import_id an import's record, batch_id a statement
# batch (StatementRun).
CONTEXT_FIELDS = (
    "user",
    "period",
    "upload_id",
    "import_id",
    "batch_id",
    "task",
    "task_id",
    "request_id",
)

# Never mutated: each change sets a new mapping.
_context: ContextVar[Mapping[str, object]] = ContextVar(
    "openchargeback_log_context", default=MappingProxyType({})
)


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add these fields (None values ignored) to every record logged inside the block."""
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"unknown log context field(s): {', '.join(sorted(unknown))}")
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, object]:
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Copies the current context onto the record (as attributes the formatters read)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.log_context = current_context()
        return True


def _record_fields(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, object]:
    fields: dict[str, object] = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
    }
    context = getattr(record, "log_context", None)
    if context is None:  # a handler without the filter: read the context here
        context = current_context()
    for name in CONTEXT_FIELDS:
        if name in context:
            fields[name] = context[name]
    if record.exc_info:
        fields["exception"] = formatter.formatException(record.exc_info)
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_record_fields(record, self), default=str, ensure_ascii=False)


def _kv_value(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\\\n\r\t'):
        return text
    # Quoted, with the characters that would break the line or the quoting escaped.
    return json.dumps(text, ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    """`time=… level=INFO logger=billing.tasks message="…" user=ana period=2026-09`."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_kv_value(v)}" for k, v in _record_fields(record, self).items())


FORMATTERS = {"keyvalue": KeyValueFormatter, "json": JsonFormatter}


def formatter(style: str = "keyvalue") -> logging.Formatter:
    """LOGGING's formatter factory: LOG_FORMAT names one of FORMATTERS."""
    try:
        return FORMATTERS[style.strip().lower()]()
    except KeyError:
        raise ImproperlyConfigured(
            f"LOG_FORMAT={style!r}: use one of {', '.join(sorted(FORMATTERS))}"
        ) from None


def _period_of(request, view_kwargs: dict) -> str | None:
    """The period a page is about, where its URL or its filter names one."""
    for key in ("period", "period_key", "key"):
        value = view_kwargs.get(key)
        if isinstance(value, str) and len(value) == 7 and value[4] == "-":
            return value
    for key in ("period", "period__key__exact", "period__key"):
        value = request.GET.get(key)
        if value:
            return value[:20]
    return None


class LogContextMiddleware:
    """Names the request's user (and the period, where the URL or filter says) on its logs."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        name = user.get_username() if user is not None and user.is_authenticated else None
        request_id = request.headers.get("X-Request-ID", "")[:64] or None
        token = _context.set({k: v for k, v in (("user", name), ("request_id", request_id)) if v})
        try:
            return self.get_response(request)
        finally:
            _context.reset(token)

    def process_view(self, request, view_func, view_args, view_kwargs):
        period = _period_of(request, view_kwargs)
        if period:
            _context.set({**_context.get(), "period": period})
        return None


_task_tokens: dict[str, object] = {}


def _task_prerun(task_id=None, task=None, **_kwargs) -> None:
    # Added to what is there: a task run in-process (no broker) keeps its caller's user.
    fields = {"task": getattr(task, "name", None), "task_id": task_id}
    _task_tokens[task_id] = _context.set({**_context.get(), **fields})


def _task_postrun(task_id=None, **_kwargs) -> None:
    # Back to the context before the task: a worker process runs many tasks in turn.
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        try:
            _context.reset(token)
        except ValueError:  # set in another context (a thread the task handed over to)
            _context.set({})


def connect_celery_signals() -> None:
    from celery.signals import task_postrun, task_prerun

    task_prerun.connect(_task_prerun, weak=False, dispatch_uid="openchargeback.logs.prerun")
    task_postrun.connect(_task_postrun, weak=False, dispatch_uid="openchargeback.logs.postrun")
