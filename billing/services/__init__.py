"""Writes for billing. Each module opens with the invariants it protects.

- `periods`: the period lifecycle (open → closed → finalized, reopen with a reason).
- `review`: approve, reject, return to the queue, reassign attribution.
- `uploads`: admin uploads, checked by a dry run, then imported through the same pipeline.
- imports go through `billing.ingest.pipeline.import_files` (re-exported here).
"""

from ..ingest.errors import ImportRefused
from ..ingest.pipeline import ImportResult, import_files
from .mappings import account_mapping_delete, account_mapping_save
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
    "register_finalize_check",
]
