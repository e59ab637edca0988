"""Account-map entries changed in the admin or loaded from a file (`openchargeback accounts`;
the review queue saves its own, see review.py).

Invariants: every change is saved with its audit event (before and after) in one transaction; a
file is loaded whole or not at all, every bad row refused with its line.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.services import audit_record
from openchargeback.csvsafe import restore

from ..models import AccountMapping, Source

FIELDS = (
    "source_id",
    "account_id",
    "pi_email",
    "pi_name",
    "project_id",
    "fund_org",
    "cost_center",
    "note",
)


def _snapshot(mapping: AccountMapping) -> dict:
    return {name: getattr(mapping, name) for name in FIELDS}


@transaction.atomic
def account_mapping_save(
    *, mapping: AccountMapping, acting_user=None, actor: str = "", changed=()
) -> AccountMapping:
    before = None
    if mapping.pk:
        stored = AccountMapping.objects.filter(pk=mapping.pk).first()
        before = _snapshot(stored) if stored else None
    mapping.full_clean()
    mapping.save()
    audit_record(
        action="account_mapping.save",
        acting_user=acting_user,
        actor=actor,
        obj=mapping,
        before=before,
        after=_snapshot(mapping),
        details={"changed": list(changed)},
    )
    return mapping


@transaction.atomic
def account_mapping_delete(*, mapping: AccountMapping, acting_user=None, actor: str = "") -> None:
    audit_record(
        action="account_mapping.delete",
        acting_user=acting_user,
        actor=actor,
        obj=mapping,
        before=_snapshot(mapping),
    )
    mapping.delete()


# -- loading the account map from a file (`openchargeback accounts load`) --------------------------

CSV_COLUMNS = ("source", "account_id", "pi_email", "pi_name", "project_id", "fund_org",
               "cost_center", "note")  # fmt: skip
# The earlier tool's accounts.json: {"accounts": {"<account>": {"piEmail": …, …}}}
EARLIER_KEYS = {"piEmail": "pi_email", "piName": "pi_name", "projectId": "project_id",
                "fundOrg": "fund_org", "costCenter": "cost_center", "note": "note"}  # fmt: skip


class AccountMapError(ValueError):
    """A file that cannot be loaded; `problems` name each bad row by its line."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or []

    def __str__(self):
        return "\n".join([self.args[0], *(f"  {p}" for p in self.problems)])


@dataclass
class AccountMapLoaded:
    created: list[AccountMapping] = field(default_factory=list)
    updated: list[AccountMapping] = field(default_factory=list)
    unchanged: list[AccountMapping] = field(default_factory=list)


def _entries(path: Path, source: str) -> list[tuple[str, dict]]:
    """(where, entry) of each row: CSV with a header of CSV_COLUMNS (the admin's export), or the
    earlier tool's accounts.json. `source` is the default of rows that name none."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AccountMapError(f"{path}: cannot read the file ({exc})") from None
    if path.suffix.lower() == ".json":
        try:
            accounts = json.loads(text)["accounts"]
            assert isinstance(accounts, dict)
        except (ValueError, KeyError, TypeError, AssertionError):
            raise AccountMapError(
                f'{path}: not an accounts.json file (expected {{"accounts": {{...}}}})'
            ) from None
        entries = []
        for account, entry in accounts.items():
            found = re.search(re.escape(json.dumps(account)) + r"\s*:", text)
            where = f"line {text.count(chr(10), 0, found.start()) + 1 if found else '?'}"
            if not isinstance(entry, dict):
                entries.append((where, {"account_id": account, "_problem": "not a mapping"}))
                continue
            unknown = sorted(set(entry) - set(EARLIER_KEYS))
            values = {EARLIER_KEYS[k]: "" if v is None else str(v) for k, v in entry.items()
                      if k in EARLIER_KEYS}  # fmt: skip
            if unknown:
                values["_problem"] = (
                    f"unknown key(s) {', '.join(unknown)}; known: {', '.join(EARLIER_KEYS)}"
                )
            entries.append((where, {"source": source, "account_id": account, **values}))
        return entries
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader, [])]
    unknown = sorted(set(header) - set(CSV_COLUMNS))
    if unknown or "account_id" not in header:
        raise AccountMapError(
            f"{path}: line 1: the header must name account_id and only these columns: "
            f"{', '.join(CSV_COLUMNS)}" + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    entries = []
    for row in reader:
        where = f"line {reader.line_num}"
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            entries.append(
                (where, {"_problem": f"{len(row)} fields, the header has {len(header)}"})
            )
            continue
        values = {name: restore(cell.strip()) for name, cell in zip(header, row, strict=True)}
        entries.append(
            (where, {"source": source, **values} if not values.get("source") else values)
        )
    return entries


def account_map_parse(
    path: str | Path, *, source: str = ""
) -> list[tuple[str, AccountMapping, list[str]]]:
    """The file's entries as unsaved AccountMappings, each with its line and the fields the file
    gives (a column it lacks changes nothing); every bad row is named, and then none is
    returned."""
    path = Path(path)
    sources = {s.name: s for s in Source.objects.all()}
    if source and source not in sources:
        raise AccountMapError(f"--source: no source named {source!r}")
    problems: list[str] = []
    seen: dict[tuple, str] = {}
    mappings = []
    for where, entry in _entries(path, source):
        if "_problem" in entry:
            problems.append(f"{where}: {entry['_problem']}")
            continue
        name = entry.pop("source", "") or ""
        if name and name not in sources:
            problems.append(f"{where}: no source named {name!r}")
            continue
        given = [n for n in FIELDS[2:] if n in entry]
        mapping = AccountMapping(source=sources.get(name), **entry)
        try:
            mapping.full_clean(validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            reasons = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            problems.append(f"{where}: {reasons}")
            continue
        key = (name, mapping.account_id)
        if key in seen:
            problems.append(f"{where}: account {mapping.account_id!r} again (first on {seen[key]})")
            continue
        seen[key] = where
        mappings.append((where, mapping, given))
    if problems:
        raise AccountMapError(f"{path}: nothing was loaded", problems)
    return mappings


@transaction.atomic
def account_map_load(
    *, path: str | Path, source: str = "", update: bool = False, acting_user=None
) -> AccountMapLoaded:
    """Load account-map entries from a file, all or nothing, each saved with its audit event as
    in the admin. An entry that differs from the stored one for its source and account is
    refused, naming the fields, unless `update`."""
    loaded = AccountMapLoaded()
    problems = []
    work = []
    for where, mapping, given in account_map_parse(path, source=source):
        stored = AccountMapping.objects.filter(
            source=mapping.source, account_id=mapping.account_id
        ).first()
        changed = [
            name for name in given if stored and getattr(stored, name) != getattr(mapping, name)
        ]
        if stored is not None and not changed:
            loaded.unchanged.append(stored)
        elif stored is not None and not update:
            problems.append(
                f"{where}: account {mapping.account_id!r} is mapped otherwise "
                f"(entry #{stored.pk}): "
                + ", ".join(
                    f"{n} {getattr(stored, n)!r} → {getattr(mapping, n)!r}" for n in changed
                )
            )
        else:
            if stored is not None:
                for name in changed:
                    setattr(stored, name, getattr(mapping, name))
            work.append((stored or mapping, changed))
    if problems:
        raise AccountMapError(f"{path}: nothing was loaded; use --update to change them", problems)
    for mapping, changed in work:
        is_new = mapping.pk is None
        if is_new:  # as the admin's add form: the fields given
            changed = [n for n in FIELDS if n != "source_id" and getattr(mapping, n)]
        account_mapping_save(mapping=mapping, acting_user=acting_user, changed=changed)
        (loaded.created if is_new else loaded.updated).append(mapping)
    audit_record(
        action="account_mapping.import",
        acting_user=acting_user,
        details={
            "created": len(loaded.created),
            "updated": len(loaded.updated),
            "unchanged": len(loaded.unchanged),
        },
        reason=f"accounts load {Path(path).name}",
    )
    return loaded
