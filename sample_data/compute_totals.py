"""Print the known figures of the sample FOCUS files in this directory.

The README's tables are this script's output, pasted. Sums are exact: every amount goes from the
file's text straight into Decimal, and the context is wide enough that no addition rounds. Tests and
import checks compare against these figures, so a float anywhere here would defeat the point.

The "held for review" list is a plain re-statement of the review rules the importer applies with
config.example.yaml (no tags, tags that are not a JSON object, no fund_org, a fund_org failing the
pattern); the "worth a look" list names rows the importer bills as they are (a correction or a
charge from another month, a tax or credit line, NULL in a name field). Both exist so the
README's lists are regenerated from the data instead of being maintained by hand, and
billing/tests/test_sample_readme.py checks the README's figures against a real import.

Usage: python sample_data/compute_totals.py
"""

import csv
import json
import re
import sys
from decimal import Decimal, localcontext
from pathlib import Path

HERE = Path(__file__).resolve().parent
FUND_ORG_PATTERN = re.compile(r"^[A-Z]{2,6}-[A-Z0-9-]+$")
NULL_TEXTS = {"", "NULL"}
# A re-delivery replaces the month of its source; it is not added to it.
RESTATED = {"aws_2026-10_restated.csv": "aws_2026-10.csv"}


def is_null(value):
    return value.strip() in NULL_TEXTS


def read_rows(path):
    # utf-8-sig: real exports may carry a byte-order mark; ours don't, but this script should not care.
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def amount(value):
    return Decimal(0) if is_null(value) else Decimal(value.strip())


def review_reasons(row):
    """Why the importer holds this row for review; empty when it bills it as it is."""
    reasons = []
    raw = row["Tags"]
    if is_null(raw):
        reasons.append("no tags (SubAccountId {})".format(row["SubAccountId"]))
    else:
        try:
            tags = json.loads(raw)
        except ValueError:
            tags = None
        if not isinstance(tags, dict):
            reasons.append(f"Tags is not a JSON object: {raw}")
        else:
            # Keys match case-insensitively and ignoring surrounding spaces, as the importer does.
            norm = {str(k).strip().lower(): v for k, v in tags.items()}
            fund = norm.get("fund_org")
            if fund is None or str(fund).strip() == "":
                reasons.append("tags have no fund_org")
            elif not FUND_ORG_PATTERN.match(str(fund).strip()):
                reasons.append(f"fund_org {fund!r} fails the pattern")
    return reasons


def notes(row):
    """What is unusual about a row that the importer does not hold for that reason alone."""
    found = []
    if row["ChargeCategory"] != "Usage":
        found.append("ChargeCategory {}".format(row["ChargeCategory"]))
    if row["ChargeClass"] == "Correction":
        found.append("ChargeClass Correction")
    if row["ChargePeriodStart"][:7] != row["BillingPeriodStart"][:7]:
        found.append(
            "charge period {} is outside billing period {}".format(
                row["ChargePeriodStart"][:10], row["BillingPeriodStart"][:7]
            )
        )
    for field in ("ResourceName", "ResourceId"):
        if row[field].strip() == "NULL":
            found.append(
                f"{field} is the literal text NULL: must import as null, not the string 'NULL'"
            )
    return found


def main():
    files = sorted(HERE.glob("*.csv"))
    if not files:
        sys.exit(f"no CSV files next to {__file__}")

    # 60 significant digits against the ~15 these sums need: no addition can round.
    with localcontext() as ctx:
        ctx.prec = 60
        per_file = {}
        for path in files:
            rows = read_rows(path)
            per_file[path.name] = {
                "rows": len(rows),
                "billed": sum((amount(r["BilledCost"]) for r in rows), Decimal(0)),
                "list": sum((amount(r["ListCost"]) for r in rows), Decimal(0)),
                "month": {r["BillingPeriodStart"][:7] for r in rows},
                "rows_by_number": list(enumerate(rows, start=1)),
            }

        print("### Per file\n")
        print("| File | Rows | Sum of BilledCost | Sum of ListCost |")
        print("|---|---:|---:|---:|")
        for name, fig in per_file.items():
            print("| %s | %d | %s | %s |" % (name, fig["rows"], fig["billed"], fig["list"]))

        print("\n### Per month (by BillingPeriodStart)\n")
        print("| Month | Files | Rows | Sum of BilledCost | Sum of ListCost |")
        print("|---|---|---:|---:|---:|")
        originals = [n for n in per_file if n not in RESTATED]
        # What the month holds once each re-delivery has replaced the file it restates.
        replaced = [n for n in originals if n not in RESTATED.values()] + [
            n for n in RESTATED if n in per_file
        ]
        months = sorted({m for fig in per_file.values() for m in fig["month"]})
        for month in months:
            for label, names in ((month, originals), (month + " after re-delivery", replaced)):
                chosen = sorted(n for n in names if month in per_file[n]["month"])
                if label != month and chosen == sorted(
                    n for n in originals if month in per_file[n]["month"]
                ):
                    continue  # no re-delivery for this month: the row would repeat the one above
                print(
                    "| %s | %s | %d | %s | %s |"
                    % (
                        label,
                        ", ".join(n.removesuffix(".csv") for n in chosen),
                        sum(per_file[n]["rows"] for n in chosen),
                        sum((per_file[n]["billed"] for n in chosen), Decimal(0)),
                        sum((per_file[n]["list"] for n in chosen), Decimal(0)),
                    )
                )

        print(
            "\n### Rows the import holds for review (row 1 is the first data row; line = row + 1)\n"
        )
        for name, fig in per_file.items():
            held = [(i, r) for i, r in fig["rows_by_number"] if review_reasons(r)]
            print("- **{}**: {}".format(name, "%d row(s)" % len(held) if held else "none"))
            for i, r in held:
                print("  - " + describe(i, r, review_reasons(r) + notes(r)))

        print("\n### Rows billed as they are, worth a look\n")
        for name, fig in per_file.items():
            for i, r in fig["rows_by_number"]:
                if notes(r) and not review_reasons(r):
                    print(f"- **{name}** {describe(i, r, notes(r))}")


def describe(i, row, reasons):
    what = row["ResourceName"] or row["ChargeDescription"]
    return "row %d (%s, BilledCost %s): %s" % (i, what, row["BilledCost"], "; ".join(reasons))


if __name__ == "__main__":
    main()
