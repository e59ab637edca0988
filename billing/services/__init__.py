"""Writes for billing. Each module opens with the invariants it protects.

- `periods`: the period lifecycle (open → closed → finalized, reopen with a reason).
- `review`: approve, reject, return to the queue, reassign attribution.
- `uploads`: admin uploads, checked by a dry run, then imported through the same pipeline.
- `patterns`: review patterns, seeded from the configuration, read by imports, review and
  journals through `with_review_patterns`, and tested against a period.
- imports go through `billing.ingest.pipeline.import_files` (re-exported here, loaded on first
  use: the import engine brings numpy and pyarrow, 0.2 s, which the admin, the web and most
  commands import this package without needing).
"""

from ..ingest.errors import ImportRefused
from .figures import register_figures_warmer
from .mappings import account_mapping_delete, account_mapping_save
from .patterns import review_patterns_preview, review_patterns_seed, with_review_patterns
from .periods import (
    PeriodError,
    finalize_checklist,
    period_close,
    period_finalize,
    period_get_or_create,
    period_open,
    period_writable,
    register_finalize_check,
)
from .review import (
    ReviewError,
    ReviewResult,
    charge_approve,
    charge_reassign,
    charge_reject,
    charge_return,
)

__all__ = [
    "account_mapping_delete",
    "account_mapping_save",
    "ImportRefused",
    "ImportResult",
    "PeriodError",
    "ReviewError",
    "ReviewResult",
    "charge_approve",
    "charge_reassign",
    "charge_reject",
    "charge_return",
    "import_files",
    "period_close",
    "period_finalize",
    "period_get_or_create",
    "period_open",
    "period_writable",
    "finalize_checklist",
    "register_figures_warmer",
    "register_finalize_check",
    "review_patterns_preview",
    "review_patterns_seed",
    "with_review_patterns",
]


def __getattr__(name):
    if name in ("import_files", "ImportResult"):
        from ..ingest import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
