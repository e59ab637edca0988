"""Statements' database guards: statements and their lines of a finalized period never change.

The email outbox (StatementEmail, EmailAttempt) is not guarded: delivery records keep moving.
See billing/dbguards.py and docs/integrity.md.
"""

from billing.dbguards import period_guards

period_guards("statements", "statements_statement", what="statements", period_of="{row}.period_id")
period_guards(
    "statements",
    "statements_statementline",
    what="statement lines",
    period_of="(SELECT period_id FROM statements_statement WHERE id = {row}.statement_id)",
)
