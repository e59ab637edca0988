"""Writes for statements. Each module opens with the invariants it protects.

- `generation`: make or remake a period's statements (drafts, finals, revisions after a send).
- `numbering`: each statement group's stable number.
- `delivery`: queue emails, render PDFs, send each PI's email at most once, resend, resume.
- `common`: the error, the configuration frozen on a batch, a period's current statements.

The lifecycle these follow (states and allowed transitions) is statements/lifecycle.py.
"""

from .common import StatementError, config_snapshot, current_statements, storage_path
from .delivery import (
    email_check_ready,
    email_resend,
    statement_run_resume,
    statement_send,
    statement_send_one,
    statement_send_refusal,
)
from .generation import GenerateResult, email_counts, generate_finish, statement_generate

__all__ = [
    "GenerateResult",
    "StatementError",
    "config_snapshot",
    "current_statements",
    "email_check_ready",
    "email_counts",
    "email_resend",
    "generate_finish",
    "statement_generate",
    "statement_run_resume",
    "statement_send",
    "statement_send_one",
    "statement_send_refusal",
    "storage_path",
]
