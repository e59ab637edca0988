"""The statement and email lifecycles, declared once. Services and tasks move state only through
`statement_move` and `email_move` (and filter conditional updates with `sources_of`); a
transition not declared here raises `TransitionError`.

A statement has a *phase* (what it is to the PI) and a *status* (where its PDF and email are):

    phase:   draft ──> final ──> sent ──> superseded        (a revision replaces a sent one)
               ^──────────┘                                  (reopen + generate: final → draft)
             draft/final (never sent, revision 0) ──> removed (its group has no charges left)

    status:  rendering ──> ready ──> queued ──> sent
                  │  ^        │         │
                  v  │        v         v
                 failed <─────────── (rendering again when an unsent one is regenerated)

- Only an unsent statement is regenerated in place (back to `rendering`, `version` + 1).
- A sent statement (`sent_at` set: mailed, or maybe mailed by an interrupted send) is never
  changed again: a change makes a revision and the sent one becomes superseded, keeping its
  PDF and hash. The database checks it too (`statement_superseded_was_sent`,
  `statement_sent_has_sent_at`).
- An unsent revision of a sent statement is never removed (the sent one points at it): when its
  group loses every charge it becomes a 0.00 revision that says why.

The email outbox (StatementEmail), at most once:

    pending ──> queued ──> sending ──> sent
       │          │  ^        │
       └──────────┴──┼────────┴──> failed
                     └── sending (a transient failure: retried)
"""

from __future__ import annotations

from .models import Statement, StatementEmail

S = Statement.Status
E = StatementEmail.Status

STATEMENT_TRANSITIONS: dict[str, frozenset[str]] = {
    S.RENDERING: frozenset({S.READY, S.FAILED, S.RENDERING}),
    S.READY: frozenset({S.QUEUED, S.SENT, S.FAILED, S.RENDERING}),
    S.QUEUED: frozenset({S.SENT, S.FAILED, S.RENDERING}),
    S.FAILED: frozenset({S.QUEUED, S.SENT, S.RENDERING}),
    S.SENT: frozenset(),  # for good; a change makes a revision
}
STATEMENT_INITIAL = S.RENDERING

EMAIL_TRANSITIONS: dict[str, frozenset[str]] = {
    E.PENDING: frozenset({E.QUEUED, E.FAILED}),
    E.QUEUED: frozenset({E.SENDING, E.FAILED}),
    E.SENDING: frozenset({E.SENT, E.QUEUED, E.FAILED}),
    E.SENT: frozenset(),
    E.FAILED: frozenset(),  # staff resend: a new outbox row
}
EMAIL_INITIAL = E.PENDING
EMAIL_LIVE = (E.PENDING, E.QUEUED, E.SENDING)  # a period with these can't be finalized

DRAFT, FINAL, SENT, SUPERSEDED, REMOVED = "draft", "final", "sent", "superseded", "removed"
PHASE_TRANSITIONS: dict[str, frozenset[str]] = {
    DRAFT: frozenset({DRAFT, FINAL, REMOVED}),
    FINAL: frozenset({FINAL, DRAFT, SENT, REMOVED}),
    SENT: frozenset({SUPERSEDED}),
    SUPERSEDED: frozenset(),
}


class TransitionError(Exception):
    """A state change the lifecycle does not allow (a bug in the caller, not a user error)."""


def phase(statement: Statement) -> str:
    if statement.superseded_by_id is not None:
        return SUPERSEDED
    if statement.sent_at is not None:
        return SENT
    return DRAFT if statement.is_draft else FINAL


def phase_check(statement: Statement, to: str) -> None:
    """Refuse a generation step the lifecycle does not allow (replace, revise, remove)."""
    now = phase(statement)
    if to not in PHASE_TRANSITIONS[now]:
        raise TransitionError(f"statement {statement.number}: {now} -> {to} is not allowed")
    if to == REMOVED and statement.revision:
        raise TransitionError(
            f"statement {statement.number} is a revision of a sent statement: never removed"
        )


def statement_move(statement: Statement, to: str) -> None:
    """Set the statement's status to `to` if the lifecycle allows it (the caller saves)."""
    if statement.pk is None or statement._state.adding:
        if to != STATEMENT_INITIAL:
            raise TransitionError(f"a new statement starts {STATEMENT_INITIAL}, not {to}")
    elif to not in STATEMENT_TRANSITIONS[statement.status]:
        raise TransitionError(f"statement {statement.number}: {statement.status} -> {to}")
    statement.status = to


def email_move(email: StatementEmail, to: str) -> None:
    """Set the email's status to `to` if the lifecycle allows it (the caller saves)."""
    if to not in EMAIL_TRANSITIONS[email.status]:
        raise TransitionError(f"statement email #{email.pk}: {email.status} -> {to}")
    email.status = to


def sources_of(transitions: dict[str, frozenset[str]], to: str) -> list[str]:
    """The states from which `to` may be reached: for conditional UPDATE ... WHERE status IN."""
    return [state for state, targets in transitions.items() if to in targets]
