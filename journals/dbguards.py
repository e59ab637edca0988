"""Journals' database guards: the journal exports of a finalized period never change.

See billing/dbguards.py and docs/integrity.md.
"""

from billing.dbguards import period_guards

period_guards(
    "journals", "journals_journalexport", what="journal exports", period_of="{row}.period_id"
)
