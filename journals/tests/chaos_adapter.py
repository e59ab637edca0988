"""The services the invariant harness drives, imported in one place.

The randomized test (test_chaos.py), the three-month scenario and bench/chaos_bench.py call the
product only through these names. When a service moves (statements/services.py becoming a
package, say), fix the import here and nothing else.
"""

from __future__ import annotations

from billing.ingest.errors import ImportRefused
from billing.ingest.pipeline import import_files
from billing.services.periods import PeriodError, period_close, period_finalize, period_open
from billing.services.review import (
    ReviewError,
    charge_approve,
    charge_reassign,
    charge_reject,
    charge_return,
)
from journals.build import JournalRefused
from journals.services import journal_export
from statements.services import StatementError, statement_generate

# Exceptions by which a service refuses an operation it does not allow (a user sees a message,
# not a traceback). Anything else escaping a service is a defect.
REFUSALS = (ImportRefused, PeriodError, ReviewError, StatementError, JournalRefused)

__all__ = [
    "REFUSALS",
    "charge_approve",
    "charge_reassign",
    "charge_reject",
    "charge_return",
    "import_files",
    "journal_export",
    "period_close",
    "period_finalize",
    "period_open",
    "statement_generate",
]
