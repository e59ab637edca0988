"""Convert a usage export and import it in one step (`ingest --from NAME`, the admin upload).

The converted FOCUS file goes through the same pipeline as any delivered FOCUS file: the same
receipt, refusals, re-delivery rules and locking. The same export converted with the same rates
is the same file, so delivering it again changes nothing. The conversion (rate card version,
rates, allowances applied, unknown accounts) is kept on the Import.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from billing.ingest.errors import ImportRefused
from billing.ingest.pipeline import ImportResult, import_files

from . import CONVERTERS, ConversionError, convert_file


def usage_import(
    *,
    converter: str,
    path: str | Path,
    source: str,
    period: str,
    options: dict | None = None,
    append: bool = False,
    dry_run: bool = False,
    acting_user=None,
    actor: str = "",
    config=None,
    progress=None,
    display_name: str = "",
) -> ImportResult:
    """Convert `path` with the named converter and import the rows for `source`.

    Raises ImportRefused (a conversion refusal is one too, with its reason)."""
    if not period:
        raise ImportRefused(f"--from {converter}: the month to convert is needed (-p YYYY-MM)")
    options = dict(options or {}) | {"source": source}
    name = display_name or Path(path).name
    try:
        conversion = convert_file(converter, path, period=period, options=options)
    except ConversionError as exc:
        raise ImportRefused(f"{name}: {exc}") from None
    if not conversion.priced.lines:
        left_out = conversion.notes.get("not_billed_by_state") or {}
        why = ", ".join(f"{count} {state}" for state, count in left_out.items())
        raise ImportRefused(
            f"{name}: nothing to bill in {period}"
            + (f" (not billed, by state: {why})" if why else "")
            + "; nothing was imported"
        )
    with tempfile.TemporaryDirectory(prefix="oc-convert-") as folder:
        focus = Path(folder) / f"{Path(name).stem}.focus.csv"
        with open(focus, "w", encoding="utf-8", newline="") as out:
            conversion.write(out)
        return import_files(
            paths=[focus],
            source=source,
            period=period,
            append=append,
            dry_run=dry_run,
            acting_user=acting_user,
            actor=actor,
            config=config,
            progress=progress,
            display_names=[f"{name} ({converter} → FOCUS)"],
            conversion=conversion.record(),
        )


def add_converter_arguments(parser) -> None:
    """Every converter's own options on one parser (ingest --from). An option several converters
    take (--rates, --map) is added once, in a group of its own, its help saying what it is for
    each of them: the first converter's words alone would mislead the others' users."""
    actions: dict[str, list[tuple[str, argparse.Action]]] = {}
    for converter in CONVERTERS.values():
        if converter.add_arguments is None:
            continue
        probe = argparse.ArgumentParser(add_help=False)
        converter.add_arguments(probe)
        for action in probe._actions:
            actions.setdefault(action.option_strings[0], []).append((converter.name, action))
    groups: dict[str, argparse._ArgumentGroup] = {}
    shared: list[tuple[argparse.Action, list]] = []
    for owners in actions.values():
        name, action = owners[0]
        if any(s in parser._option_string_actions for s in action.option_strings):
            continue
        if len(owners) > 1:
            shared.append((action, owners))
            continue
        if name not in groups:
            groups[name] = parser.add_argument_group(f"--from {name}")
        groups[name]._add_action(action)
    if shared:
        names = sorted({owner for _, owners in shared for owner, _ in owners})
        group = parser.add_argument_group(
            f"--from {', '.join(names[:-1])} or {names[-1]} (what it means for each)"
        )
        for action, owners in shared:
            action.help = " ".join(f"{owner}: {a.help}" for owner, a in owners)
            group._add_action(action)
