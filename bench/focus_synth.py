"""Synthetic FOCUS billing data for import benchmarks.

Writes one month of hourly FOCUS rows (CSV, optionally gzip) drawn from a fixed fictional universe:
500 PIs with about 1,500 projects between them (1 to 6 each), every project with its own fund/org
code matching ``^[A-Z]{2,6}-[A-Z0-9-]+$``, its own tags (pi_email, project_id, fund_org, and for
some cost_center and grant_number; a few projects spell the keys in mixed case, as real exports do),
its own cloud accounts and a pool of resources across AWS, Azure and the campus HPC cluster. Of the
rows, exactly 2% (rounded down) are usage with empty Tags, to exercise account-based attribution,
and exactly 1% (rounded down) are credits: ChargeCategory Credit, negative BilledCost and ListCost,
no resource, tagged to the project they were granted to. Usage rows have ListCost >= BilledCost.
Costs carry 11 decimal places (10 for Azure), as exports do, and are generated as integers in units
of 1e-11 dollars, so the totals returned by :func:`generate` are the exact Decimal sums of the text
written, which an importer's own totals must match to the last digit. The output depends only on
(rows, month, seed); the universe of PIs, projects and resources depends only on the seed.

Usage::

    python bench/focus_synth.py OUT.csv --rows 1000000 [--month 2026-10] [--seed 1] [--gzip]
"""

import argparse
import calendar
import contextlib
import gzip as gzip_module
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np

COLUMNS = [
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "BillingCurrency",
    "BilledCost",
    "ListCost",
    "ContractedCost",
    "EffectiveCost",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ServiceName",
    "ServiceCategory",
    "ResourceId",
    "ResourceName",
    "SubAccountId",
    "SubAccountName",
    "ConsumedQuantity",
    "ConsumedUnit",
    "Tags",
    "BillingAccountId",
    "InvoiceId",
    "x_CostCenterNote",
]

N_PIS = 500
# Weights for 1..6 projects per PI; the mean (2.96) gives about 1,480 projects for 500 PIs.
PROJECTS_PER_PI_WEIGHTS = [0.20, 0.22, 0.24, 0.17, 0.10, 0.07]
UNTAGGED_PERCENT = 2
CREDIT_PERCENT = 1
CHUNK_ROWS = 100_000

# Amounts are integers in units of 1e-11 dollars: quantity in 1e-3 units times unit price in
# 1e-8 dollars lands exactly on that scale, so no cost ever needs rounding.
COST_SCALE = 10**11

FIRST_NAMES = [
    "Alarice",
    "Bartholomew",
    "Calliope",
    "Desmond",
    "Eulalie",
    "Fennimore",
    "Griselda",
    "Horatio",
    "Isadora",
    "Jebediah",
    "Kerensa",
    "Leopold",
    "Marigold",
    "Nathaniel",
    "Octavia",
    "Peregrine",
    "Quentin",
    "Rosalind",
    "Septimus",
    "Tabitha",
    "Ulysses",
    "Verity",
    "Wendell",
    "Xanthe",
    "Yolanda",
    "Zebedee",
    "Araminta",
    "Barnabas",
    "Clementine",
    "Dashiell",
    "Elspeth",
    "Florian",
    "Gwendolyn",
    "Hamish",
    "Imogen",
    "Jasper",
    "Lavinia",
    "Mortimer",
    "Ottilie",
    "Percival",
]
LAST_NAMES = [
    "Applethwaite",
    "Bumbleford",
    "Crumpet",
    "Dimbleby",
    "Entwistle",
    "Fiddlewick",
    "Gallimore",
    "Hobbleton",
    "Inkpen",
    "Jollyfax",
    "Kettleburn",
    "Lumbergast",
    "Marrowfield",
    "Nettlebed",
    "Oddington",
    "Puddifoot",
    "Quillfeather",
    "Ravenshaw",
    "Snoddgrass",
    "Tumblewood",
    "Umberfield",
    "Vexley",
    "Wobblecombe",
    "Yarrowby",
    "Zimmerhalt",
    "Ashbottom",
    "Brindlecott",
    "Copperkettle",
    "Dunderwhit",
    "Eddlestone",
    "Frobisher",
    "Gumbleton",
    "Higgledy",
    "Izzleworth",
    "Jumbleby",
    "Knackersby",
    "Loxwhistle",
    "Mumblethorpe",
    "Noodleman",
    "Pottersby",
]
DEPARTMENTS = [
    "CHEM",
    "PHYS",
    "BIO",
    "GEO",
    "ASTRO",
    "MARINE",
    "LING",
    "HUM",
    "ECON",
    "CS",
    "MATH",
    "NEURO",
    "ENGR",
    "STAT",
    "MED",
    "PSYCH",
    "ATMOS",
    "ANTHRO",
]
SPONSORS = ["NSF", "NIH", "DOE", "NASA", "NOAA", "NEH", "DEPT", "GIFT", "USDA", "DARPA"]
TOPIC_WORDS = [
    "tidal",
    "kelp",
    "lattice",
    "coral",
    "urban",
    "protein",
    "medieval",
    "dialect",
    "exoplanet",
    "glacier",
    "neutrino",
    "soil",
    "prion",
    "volcano",
    "migration",
    "quasar",
    "enzyme",
    "drought",
    "ledger",
    "fungal",
    "polymer",
    "seismic",
    "lichen",
    "aurora",
]
METHOD_WORDS = [
    "acoustics",
    "genomics",
    "qcd",
    "imaging",
    "heat",
    "folding",
    "ocr",
    "corpus",
    "survey",
    "models",
    "sim",
    "atlas",
    "inference",
    "tracking",
    "census",
    "spectra",
]

# name, short name for resource names, category, provider, unit, unit price in dollars, quantity
# range in milli-units per hour, max discount percent (None: the project's HPC subsidy), description. Prices are a base; each resource jitters its own.
SERVICES = [
    (
        "Amazon EC2",
        "ec2",
        "Compute",
        "aws",
        "Hours",
        0.17,
        (250, 1000),
        25,
        "On-demand Linux instance",
    ),
    (
        "Amazon S3",
        "s3",
        "Storage",
        "aws",
        "GB-Hours",
        0.0000315,
        (10_000, 50_000_000),
        0,
        "S3 Standard storage, us-east-1",
    ),
    (
        "Amazon EBS",
        "ebs",
        "Storage",
        "aws",
        "GB-Hours",
        0.00011,
        (50_000, 4_000_000),
        10,
        "gp3 volume storage",
    ),
    (
        "Amazon RDS",
        "rds",
        "Databases",
        "aws",
        "Hours",
        0.29,
        (1000, 1000),
        20,
        "PostgreSQL, db.m6g.large",
    ),
    (
        "Azure Virtual Machines",
        "vm",
        "Compute",
        "azure",
        "1 Hour",
        0.40,
        (250, 1000),
        15,
        "D-series v5, Linux, pay-as-you-go",
    ),
    (
        "Azure Blob Storage",
        "blob",
        "Storage",
        "azure",
        "1 GB/Hour",
        0.0000253,
        (10_000, 20_000_000),
        0,
        "Hot LRS data stored",
    ),
    (
        "HPC Cluster",
        "hpc",
        "Compute",
        "hpc",
        "core-hours",
        0.0118,
        (1000, 512_000),
        None,
        "Slurm usage, partition standard",
    ),
    (
        "HPC GPU Cluster",
        "gpu",
        "Compute",
        "hpc",
        "gpu-hours",
        0.92,
        (1000, 8000),
        None,
        "Slurm usage, partition gpu-a100",
    ),
]
SERVICE_WEIGHTS = [0.30, 0.12, 0.08, 0.05, 0.15, 0.07, 0.16, 0.07]

BILLING_ACCOUNTS = {
    "aws": "999912345678",
    "azure": "bacct-5e0c3f1a-research-computing",
    "hpc": "rc-hpc-cascade",
}
INVOICE_PREFIX = {"aws": "AWS", "azure": "AZ", "hpc": "HPC"}
# Costs get 11 decimal places, Azure's 10, so one file holds both styles an importer meets.
DECIMALS = {"aws": 11, "azure": 10, "hpc": 11}


def _csv_field(text):
    """Quote a field the way csv.QUOTE_MINIMAL would; applied once to fixed strings, not per row."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _format_cost(units, places):
    """Exact text of an amount held in 1e-11 dollars; 10 places needs a multiple of 10."""
    if units < 0:
        return "-" + _format_cost(-units, places)
    whole, frac = divmod(units, COST_SCALE)
    if places == 11:
        return f"{whole}.{frac:011d}"
    return f"{whole}.{frac // 10:010d}"


def _month_bounds(month):
    start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    days = calendar.monthrange(start.year, start.month)[1]
    return start, start + timedelta(days=days), days * 24


def _iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _hex(rng, n):
    return "".join(rng.choice(list("0123456789abcdef"), size=n))


@contextlib.contextmanager
def _open_output(path, compress):
    """Binary output; gzip without a name or time in its header, so equal runs give equal bytes."""
    with open(path, "wb") as raw:
        if not compress:
            yield raw
            return
        # Level 6: on this data level 9 (the module default) takes ~30% longer for ~2% less size.
        with gzip_module.GzipFile(
            filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0
        ) as out:
            yield out


def build_universe(seed):
    """PIs, projects and resources, drawn from their own stream so that row count doesn't change them."""
    rng = np.random.default_rng([seed, 0])

    name_pairs = rng.choice(len(FIRST_NAMES) * len(LAST_NAMES), size=N_PIS, replace=False)
    pis = []
    for pair in name_pairs:
        first, last = FIRST_NAMES[pair // len(LAST_NAMES)], LAST_NAMES[pair % len(LAST_NAMES)]
        pis.append(f"{first.lower()}.{last.lower()}@example.edu")

    counts = rng.choice(np.arange(1, 7), size=N_PIS, p=PROJECTS_PER_PI_WEIGHTS)
    projects = []
    for pi_index, count in enumerate(counts):
        for _ in range(count):
            n = len(projects)
            project_id = f"{rng.choice(TOPIC_WORDS)}-{rng.choice(METHOD_WORDS)}-{n:04d}"
            sponsor = str(rng.choice(SPONSORS))
            tags = {
                "pi_email": pis[pi_index],
                "project_id": project_id,
                "fund_org": f"{rng.choice(DEPARTMENTS)}-{sponsor}-{rng.integers(2022, 2027)}-{n:04d}",
            }
            if rng.random() < 0.3:
                tags["cost_center"] = f"CC-{rng.integers(10000, 99999)}"
            if sponsor not in ("DEPT", "GIFT") and rng.random() < 0.7:
                tags["grant_number"] = f"{sponsor}-{rng.integers(1_000_000, 9_999_999)}"
            if rng.random() < 0.03:
                # Real exports mix key spellings; an importer must match case-insensitively.
                tags = {
                    (" PI_Email " if k == "pi_email" else k.title()): v for k, v in tags.items()
                }
            note = ""
            roll = rng.random()
            if roll < 0.02:
                note = f'shared, see "RC-{rng.integers(1000, 9999)}"'  # exercises CSV quoting
            elif roll < 0.12:
                note = f"split 50/50 with CC-{rng.integers(10000, 99999)}"
            projects.append(
                {
                    "id": project_id,
                    "tags": _csv_field(json.dumps(tags)),
                    "note": _csv_field(note),
                    "aws_account": str(400_000_000_000 + n * 7919),
                    "azure_sub": f"{_hex(rng, 8)}-{_hex(rng, 4)}-4{_hex(rng, 3)}-a{_hex(rng, 3)}-{_hex(rng, 12)}",
                    # HPC subsidy in percent of list: allocations are often fully or partly subsidised.
                    "hpc_discount": int(rng.choice([100, 40, 0], p=[0.3, 0.3, 0.4])),
                }
            )

    resources = []
    for p in projects:
        for k in range(rng.integers(1, 9)):
            s = int(rng.choice(len(SERVICES), p=SERVICE_WEIGHTS))
            name, short, category, provider, unit, base_price, qty_range, max_disc, desc = SERVICES[
                s
            ]
            price_e8 = max(1, int(base_price * 1e8 * rng.uniform(0.6, 1.6)))
            if DECIMALS[provider] == 10:
                price_e8 = price_e8 // 10 * 10 + 10  # keeps every cost a multiple of 1e-10
            discount = p["hpc_discount"] if max_disc is None else int(rng.integers(0, max_disc + 1))
            rname = f"{p['id']}-{short}-{k}"
            if name == "Amazon EC2":
                rid = "i-0" + _hex(rng, 16)
            elif name == "Amazon EBS":
                rid = "vol-0" + _hex(rng, 16)
            elif name == "Amazon S3":
                rid = f"arn:aws:s3:::{rname}"
            elif name == "Amazon RDS":
                rid = f"arn:aws:rds:us-east-1:{p['aws_account']}:db:{rname}"
            elif provider == "azure":
                kind = (
                    "Microsoft.Compute/virtualMachines"
                    if "Machines" in name
                    else "Microsoft.Storage/storageAccounts"
                )
                rid = f"/subscriptions/{p['azure_sub']}/resourceGroups/rg-{p['id']}/providers/{kind}/{rname}"
            else:
                rid = f"slurm:cascade:{'gpu-a100' if short == 'gpu' else 'standard'}:{rname}"
            if provider == "aws":
                sub_id, sub_name = p["aws_account"], f"rc-{p['id']}"
            elif provider == "azure":
                sub_id, sub_name = p["azure_sub"], f"sub-{p['id']}"
            else:
                sub_id, sub_name = p["id"], f"slurm account {p['id']}"
            resources.append(
                {
                    "project": p,
                    "service": name,
                    "category": category,
                    "provider": provider,
                    "unit": unit,
                    "price_e8": price_e8,
                    "qty_range": qty_range,
                    "discount": discount,
                    "desc": desc,
                    "rid": rid,
                    "rname": rname,
                    "sub_id": sub_id,
                    "sub_name": sub_name,
                }
            )
    return pis, projects, resources


def generate(path, rows, month="2026-10", seed=1, gzip=False, part=0):
    """Write ``rows`` FOCUS rows to ``path`` and return the exact totals of what was written.

    ``part`` > 0 draws other rows from the same universe: one month's delivery in several files.

    Returns {"rows": int, "billed": Decimal, "list": Decimal, "untagged": int, "credits": int}.
    """
    if rows < 0:
        raise ValueError("rows must be >= 0")
    start, end, hours = _month_bounds(month)
    _, _, resources = build_universe(seed)
    rng = np.random.default_rng([seed, 1] if part == 0 else [seed, 1, part])

    billing_period = f"{_iso(start)},{_iso(end)}"
    hour_text = [_iso(start + timedelta(hours=h)) for h in range(hours + 1)]
    invoice = {prov: f"{INVOICE_PREFIX[prov]}-INV-{start:%Y%m}-0001" for prov in BILLING_ACCOUNTS}

    # The parts of a line that depend only on the resource and the kind of row, quoted once.
    usage_mid, credit_mid, tagged_tail, untagged_tail, credit_tail, places = [], [], [], [], [], []
    for r in resources:
        p, prov = r["project"], r["provider"]
        common = f"{r['service']},{r['category']}"
        sub = f"{_csv_field(r['sub_id'])},{_csv_field(r['sub_name'])}"
        usage_mid.append(f"Usage,,{_csv_field(r['desc'])},{common},{r['rid']},{r['rname']},{sub}")
        credit_mid.append(f"Credit,,Research computing credit,{common},,,{sub}")
        account = f"{BILLING_ACCOUNTS[prov]},{invoice[prov]},{p['note']}"
        tagged_tail.append(f"{r['unit']},{p['tags']},{account}")
        untagged_tail.append(f"{r['unit']},,{account}")
        credit_tail.append(f",{p['tags']},{account}")
        places.append(DECIMALS[prov])

    # Draw every row's numbers at once; only the text formatting below is per-row Python.
    res_idx = rng.integers(0, len(resources), size=rows)
    hour = rng.integers(0, hours, size=rows)
    order = np.lexsort((res_idx, hour))  # chronological, as exports are
    res_idx, hour = res_idx[order], hour[order]

    lo = np.array([r["qty_range"][0] for r in resources], dtype=np.int64)
    hi = np.array([r["qty_range"][1] for r in resources], dtype=np.int64)
    price = np.array([r["price_e8"] for r in resources], dtype=np.int64)
    discount = np.array([r["discount"] for r in resources], dtype=np.int64)
    tenth = np.array([p == 10 for p in places])

    qty = lo[res_idx] + (rng.random(rows) * (hi - lo + 1)[res_idx]).astype(np.int64)
    list_units = qty * price[res_idx]
    billed_units = list_units * (100 - discount[res_idx]) // 100
    # Rounding down keeps billed <= list and keeps Azure amounts on their 10-decimal grid.
    billed_units = np.where(tenth[res_idx], billed_units // 10 * 10, billed_units)

    kind = np.zeros(rows, dtype=np.int8)  # 0 usage, 1 untagged usage, 2 credit
    n_untagged = rows * UNTAGGED_PERCENT // 100
    n_credits = rows * CREDIT_PERCENT // 100
    shuffled = rng.permutation(rows)
    kind[shuffled[:n_untagged]] = 1
    kind[shuffled[n_untagged : n_untagged + n_credits]] = 2
    credit_rows = kind == 2
    credit_units = -rng.integers(1_000_000_000, 500_000_000_000, size=rows)  # -$0.01 to -$5
    credit_units = np.where(tenth[res_idx], credit_units // 10 * 10, credit_units)
    list_units = np.where(credit_rows, credit_units, list_units)
    billed_units = np.where(credit_rows, credit_units, billed_units)

    with _open_output(path, gzip) as out:
        out.write((",".join(COLUMNS) + "\n").encode())
        for begin in range(0, rows, CHUNK_ROWS):
            stop = min(begin + CHUNK_ROWS, rows)
            lines = []
            append = lines.append
            for r, h, q, b, l, k in zip(
                res_idx[begin:stop].tolist(),
                hour[begin:stop].tolist(),
                qty[begin:stop].tolist(),
                billed_units[begin:stop].tolist(),
                list_units[begin:stop].tolist(),
                kind[begin:stop].tolist(),
                strict=False,
            ):
                dp = places[r]
                bt = _format_cost(b, dp)
                if k == 2:
                    mid, qtext, tail = credit_mid[r], "", credit_tail[r]
                else:
                    mid, qtext = usage_mid[r], f"{q // 1000}.{q % 1000:03d}"
                    tail = untagged_tail[r] if k == 1 else tagged_tail[r]
                append(
                    f"{billing_period},{hour_text[h]},{hour_text[h + 1]},USD,{bt},"
                    f"{_format_cost(l, dp)},{bt},{bt},{mid},{qtext},{tail}\n"
                )
            out.write("".join(lines).encode())

    # Python ints: a million int64 amounts could overflow a numpy sum.
    return {
        "rows": rows,
        "billed": Decimal(_format_cost(sum(billed_units.tolist()), 11)),
        "list": Decimal(_format_cost(sum(list_units.tolist()), 11)),
        "untagged": n_untagged,
        "credits": n_credits,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write a synthetic FOCUS CSV for benchmarks.")
    parser.add_argument("out", help="output path (.csv, or .csv.gz with --gzip)")
    parser.add_argument("--rows", type=int, required=True, help="number of data rows")
    parser.add_argument(
        "--month", default="2026-10", help="billing month, YYYY-MM (default 2026-10)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--gzip", action="store_true", help="gzip-compress the output")
    args = parser.parse_args(argv)
    try:
        _month_bounds(args.month)
    except ValueError:
        parser.error(f"--month must be YYYY-MM, got {args.month!r}")
    if args.rows < 0:
        parser.error("--rows must be >= 0")

    began = time.perf_counter()
    totals = generate(args.out, args.rows, month=args.month, seed=args.seed, gzip=args.gzip)
    elapsed = time.perf_counter() - began
    print(f"wrote {args.out}")
    print(f"rows      {totals['rows']}")
    print(f"billed    {totals['billed']:f}")
    print(f"list      {totals['list']:f}")
    print(f"untagged  {totals['untagged']}")
    print(f"credits   {totals['credits']}")
    print(f"seconds   {elapsed:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
