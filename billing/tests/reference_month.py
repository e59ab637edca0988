# ruff: noqa: E501  (ROWS is a table: one charge per line reads better than wrapped calls)
"""The reference month, 2025-01: five small FOCUS files the tests write themselves.

Why it exists: the importer, the statements and the journals are checked against figures a person
can verify with a pencil, not figures taken from a run of the code under test. Every charge of the
month is one line of ROWS below; the expected figures (REFERENCE_FILES, REFERENCE_STATEMENTS,
REFERENCE_BY_SERVICE) are written out by hand, and test_reference_month_table.py checks that they
are plain Decimal sums of ROWS, without importing anything from the application. The files are
generated into a temporary folder, so the suite needs nothing outside the repository.

How the month is built (all names are fictional, e-mail addresses under example.edu):

- Seven PIs, ten projects, one fund/org per project; every row is tagged and clean under the
  example configuration, so the whole month is billable (59 rows, billed 20,227.00, list 32,260.00).
- aws and azure bill 85% of list on every row (a 15% negotiated discount): each ListCost is a whole
  number of dollars, so BilledCost = ListCost x 0.85 has at most two decimals and no rounding.
- hpc is 100% subsidised (BilledCost 0.00 on every row, ListCost 8,200.00): a source with a list
  price and nothing to bill.
- it_storage bills list price (BilledCost = ListCost).
- storage: Home and Scratch are free except neuroimaging-atlas' Home (15.00 list, 10.00 billed);
  Archive is billed at 25% of list.
- cfd-turbulence is almost entirely subsidised: 3,660.00 off 3,665.00 is 99.86%, not 100% (a
  statement that prints "100%" over an amount due of 5.00 is wrong).
- The genomics-sequencing aws rows carry grant_number and request_id tags (the example configuration
  maps them to reference_1 and reference_2). The first aws row is genomics-sequencing's
  `genomics-align-01`, list 1,250.00, billed 1,062.50 (tests restate and drop it).

Per statement (PI, project, fund/org: list / discount / amount due), each the sum of its rows:

| PI | Project | Fund/org | List | Discount | Due |
|---|---|---|---|---|---|
| drix.kelvington | labor-economics | ECON-DEPT-2024 | 830.00 | 118.25 | 711.75 |
| frin.bumberly | cfd-turbulence | ENGR-STARTUP | 3,665.00 | 3,660.00 | 5.00 |
| grix.mottershaw | alzheimers-biomarkers | ADNI-PILOT-2024 | 2,480.00 | 724.25 | 1,755.75 |
| grix.mottershaw | neuroimaging-atlas | NIMH-2024-003 | 4,400.00 | 646.25 | 3,753.75 |
| plex.wombsworth | exoplanet-survey | NASA-EXOP-2024 | 6,005.00 | 905.00 | 5,100.00 |
| quib.flannister | climate-modeling | NSF-ATM-2024 | 2,530.00 | 2,517.50 | 12.50 |
| quib.flannister | ocean-circulation | NOAA-CPO-2024 | 3,275.00 | 1,582.00 | 1,693.00 |
| tarn.voxley | quantum-materials | DOE-SC-2024 | 1,470.00 | 734.75 | 735.25 |
| zorp.blinkman | genomics-sequencing | BIO-2024-001 | 2,720.00 | 412.25 | 2,307.75 |
| zorp.blinkman | protein-folding-ml | NIH-R01-2023 | 4,885.00 | 732.75 | 4,152.25 |

For instance labor-economics: aws 400 + 225 + 130 = 755.00 list, 755 x 0.85 = 641.75 billed;
it_storage 40 + 30 = 70.00 at list; storage Home 5.00 list, 0.00 billed. List 755 + 70 + 5 = 830.00,
due 641.75 + 70.00 + 0.00 = 711.75, discount 830.00 - 711.75 = 118.25.

The journal's credits are the source totals: aws 19,086.75 (IT-CLOUD-AWS), azure 735.25
(IT-CLOUD-AZURE), it_storage 360.00 (IT-SECURE-STOR), storage 45.00 (RC-STORAGE), hpc nothing.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

D = Decimal

COLUMNS = [
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ListCost",
    "ContractedCost",
    "BilledCost",
    "EffectiveCost",
    "ResourceId",
    "ResourceName",
    "ServiceName",
    "Tags",
]
PERIOD_START = "2025-01-01T00:00:00Z"
PERIOD_END = "2025-02-01T00:00:00Z"  # FOCUS: the end is exclusive

# File name -> source name in config.example.yaml.
REFERENCE_SOURCES = {
    "aws_2025-01.csv": "aws",
    "azure_2025-01.csv": "azure",
    "hpc_2025-01.csv": "hpc",
    "it_storage_2025-01.csv": "it_storage",
    "storage_2025-01.csv": "storage",
}

# Project -> (PI e-mail, fund/org).
PROJECTS = {
    "labor-economics": ("drix.kelvington@example.edu", "ECON-DEPT-2024"),
    "cfd-turbulence": ("frin.bumberly@example.edu", "ENGR-STARTUP"),
    "alzheimers-biomarkers": ("grix.mottershaw@example.edu", "ADNI-PILOT-2024"),
    "neuroimaging-atlas": ("grix.mottershaw@example.edu", "NIMH-2024-003"),
    "exoplanet-survey": ("plex.wombsworth@example.edu", "NASA-EXOP-2024"),
    "climate-modeling": ("quib.flannister@example.edu", "NSF-ATM-2024"),
    "ocean-circulation": ("quib.flannister@example.edu", "NOAA-CPO-2024"),
    "quantum-materials": ("tarn.voxley@example.edu", "DOE-SC-2024"),
    "genomics-sequencing": ("zorp.blinkman@example.edu", "BIO-2024-001"),
    "protein-folding-ml": ("zorp.blinkman@example.edu", "NIH-R01-2023"),
}
GENOMICS_GRANT = "NSF-DBI-2025-0410"
GENOMICS_REQUEST = "REQ-2025-00077"


@dataclass(frozen=True)
class Row:
    file: str
    project: str
    service: str
    resource_id: str
    resource_name: str
    list_cost: str
    billed_cost: str
    references: bool = False  # carries grant_number and request_id tags


def _aws(project, service, rid, name, list_cost, billed, references=False):
    return Row("aws_2025-01.csv", project, service, rid, name, list_cost, billed, references)


def _azure(project, service, rid, name, list_cost, billed):
    return Row("azure_2025-01.csv", project, service, rid, name, list_cost, billed)


def _hpc(project, service, name, list_cost):
    return Row("hpc_2025-01.csv", project, service, f"slurm:{name}", name, list_cost, "0.00")


def _secure(project, name, list_cost):
    rid = f"sfs:{name}"
    return Row(
        "it_storage_2025-01.csv", project, "Secure File Services", rid, name, list_cost, list_cost
    )


def _storage(project, tier, name, list_cost, billed):
    service = f"Research Storage - {tier}"
    return Row("storage_2025-01.csv", project, service, f"nfs:{name}", name, list_cost, billed)


# Every charge of the month, in file order. aws/azure billed = list x 0.85.
ROWS = [
    # aws: 25 rows, list 22,455.00, billed 19,086.75
    _aws("genomics-sequencing", "Amazon EC2", "i-0f3a61c2d9e8b7001", "genomics-align-01", "1250.00", "1062.50", True),
    _aws("genomics-sequencing", "Amazon EC2", "i-0f3a61c2d9e8b7002", "genomics-align-02", "400.00", "340.00", True),
    _aws("genomics-sequencing", "Amazon S3", "arn:aws:s3:::genomics-reads", "genomics-reads", "615.00", "522.75", True),
    _aws("genomics-sequencing", "Amazon EBS", "vol-0c4d7e2a9b1f30001", "genomics-scratch-vol", "450.00", "382.50", True),
    _aws("labor-economics", "Amazon EC2", "i-0b9e24f7a1c6d5001", "labor-panel-rstudio", "400.00", "340.00"),
    _aws("labor-economics", "Amazon S3", "arn:aws:s3:::labor-panel-data", "labor-panel-data", "225.00", "191.25"),
    _aws("labor-economics", "Amazon RDS", "db-labor-panel", "labor-panel-db", "130.00", "110.50"),
    _aws("alzheimers-biomarkers", "Amazon EC2", "i-0d1c58a3e7f2b9001", "biomarker-pipeline", "1200.00", "1020.00"),
    _aws("alzheimers-biomarkers", "Amazon S3", "arn:aws:s3:::biomarker-cohort", "biomarker-cohort", "515.00", "437.75"),
    _aws("alzheimers-biomarkers", "Amazon RDS", "db-biomarker-registry", "biomarker-registry", "130.00", "110.50"),
    _aws("neuroimaging-atlas", "Amazon EC2", "i-0a7e93b2c4d1f6001", "atlas-gpu-train", "2500.00", "2125.00"),
    _aws("neuroimaging-atlas", "Amazon EC2", "i-0a7e93b2c4d1f6002", "atlas-preprocess", "800.00", "680.00"),
    _aws("neuroimaging-atlas", "Amazon S3", "arn:aws:s3:::atlas-volumes", "atlas-volumes", "845.00", "718.25"),
    _aws("neuroimaging-atlas", "Amazon RDS", "db-atlas-metadata", "atlas-metadata", "130.00", "110.50"),
    _aws("exoplanet-survey", "Amazon EC2", "i-0e2f47c8b3a9d1001", "transit-search-01", "3000.00", "2550.00"),
    _aws("exoplanet-survey", "Amazon EC2", "i-0e2f47c8b3a9d1002", "transit-search-02", "1200.00", "1020.00"),
    _aws("exoplanet-survey", "Amazon S3", "arn:aws:s3:::light-curves", "light-curves", "1550.00", "1317.50"),
    _aws("exoplanet-survey", "Amazon S3 Glacier", "arn:aws:glacier:::raw-frames-2023", "raw-frames-2023", "150.00", "127.50"),
    _aws("exoplanet-survey", "Amazon S3 Glacier", "arn:aws:glacier:::raw-frames-2024", "raw-frames-2024", "100.00", "85.00"),
    _aws("ocean-circulation", "Amazon EC2", "i-0c6b15e9d2a4f8001", "ocean-model-mpi", "1000.00", "850.00"),
    _aws("ocean-circulation", "Amazon EC2", "i-0c6b15e9d2a4f8002", "ocean-postproc", "200.00", "170.00"),
    _aws("ocean-circulation", "Amazon S3", "arn:aws:s3:::ocean-reanalysis", "ocean-reanalysis", "780.00", "663.00"),
    _aws("protein-folding-ml", "Amazon EC2", "i-0d8a36f1e5b2c7001", "fold-train-p4d", "1000.00", "850.00"),
    _aws("protein-folding-ml", "Amazon EC2", "i-0d8a36f1e5b2c7002", "fold-infer", "460.00", "391.00"),
    _aws("protein-folding-ml", "Amazon S3", "arn:aws:s3:::fold-structures", "fold-structures", "3425.00", "2911.25"),
    # azure: 4 rows, list 865.00, billed 735.25
    _azure("quantum-materials", "Azure Virtual Machines", "vm-qmat-dft-01", "qmat-dft-01", "400.00", "340.00"),
    _azure("quantum-materials", "Azure Virtual Machines", "vm-qmat-dft-02", "qmat-dft-02", "240.00", "204.00"),
    _azure("quantum-materials", "Azure Cosmos DB", "cosmos-qmat-catalog", "qmat-catalog", "180.00", "153.00"),
    _azure("quantum-materials", "Azure Blob Storage", "blob-qmat-outputs", "qmat-outputs", "45.00", "38.25"),
    # hpc: 9 rows, list 8,200.00, billed 0.00 (100% subsidised)
    _hpc("cfd-turbulence", "HPC Cluster", "cfd-les-runs", "2400.00"),
    _hpc("cfd-turbulence", "HPC Cluster", "cfd-mesh-study", "1200.00"),
    _hpc("alzheimers-biomarkers", "HPC GPU Cluster", "biomarker-gpu", "400.00"),
    _hpc("climate-modeling", "HPC Cluster", "climate-ensemble-a", "1000.00"),
    _hpc("climate-modeling", "HPC Cluster", "climate-ensemble-b", "800.00"),
    _hpc("climate-modeling", "HPC Cluster", "climate-downscale", "600.00"),
    _hpc("ocean-circulation", "HPC Cluster", "ocean-spinup", "700.00"),
    _hpc("ocean-circulation", "HPC Cluster", "ocean-tides", "500.00"),
    _hpc("quantum-materials", "HPC GPU Cluster", "qmat-gpu", "600.00"),
    # it_storage: 6 rows, list = billed = 360.00
    _secure("labor-economics", "labor-restricted-census", "40.00"),
    _secure("labor-economics", "labor-restricted-tax", "30.00"),
    _secure("alzheimers-biomarkers", "biomarker-phi", "100.00"),
    _secure("alzheimers-biomarkers", "biomarker-consent", "80.00"),
    _secure("neuroimaging-atlas", "atlas-phi-scans", "60.00"),
    _secure("neuroimaging-atlas", "atlas-phi-reports", "50.00"),
    # storage: 15 rows, list 380.00, billed 45.00
    _storage("labor-economics", "Home", "home-labor", "5.00", "0.00"),
    _storage("cfd-turbulence", "Home", "home-cfd", "5.00", "0.00"),
    _storage("cfd-turbulence", "Scratch", "scratch-cfd", "40.00", "0.00"),
    _storage("cfd-turbulence", "Archive", "archive-cfd", "20.00", "5.00"),
    _storage("alzheimers-biomarkers", "Archive", "archive-biomarker", "30.00", "7.50"),
    _storage("alzheimers-biomarkers", "Scratch", "scratch-biomarker", "25.00", "0.00"),
    _storage("neuroimaging-atlas", "Home", "home-atlas", "15.00", "10.00"),
    _storage("exoplanet-survey", "Home", "home-exoplanet", "5.00", "0.00"),
    _storage("climate-modeling", "Home", "home-climate", "5.00", "0.00"),
    _storage("climate-modeling", "Archive", "archive-climate", "50.00", "12.50"),
    _storage("climate-modeling", "Scratch", "scratch-climate", "75.00", "0.00"),
    _storage("ocean-circulation", "Archive", "archive-ocean", "40.00", "10.00"),
    _storage("ocean-circulation", "Scratch", "scratch-ocean", "55.00", "0.00"),
    _storage("quantum-materials", "Home", "home-qmat", "5.00", "0.00"),
    _storage("genomics-sequencing", "Home", "home-genomics", "5.00", "0.00"),
]  # fmt: skip

# The figures, written out by hand (test_reference_month_table.py checks them against ROWS).
# File -> (rows, billed, list).
REFERENCE_FILES = {
    "aws_2025-01.csv": (25, D("19086.75"), D("22455.00")),
    "azure_2025-01.csv": (4, D("735.25"), D("865.00")),
    "hpc_2025-01.csv": (9, D("0.00"), D("8200.00")),
    "it_storage_2025-01.csv": (6, D("360.00"), D("360.00")),
    "storage_2025-01.csv": (15, D("45.00"), D("380.00")),
}
MONTH_ROWS, MONTH_BILLED, MONTH_LIST = 59, D("20227.00"), D("32260.00")
# (PI, project, fund/org, list, amount due), in the order statements sort (PI, project).
REFERENCE_STATEMENTS = [
    ("drix.kelvington@example.edu", "labor-economics", "ECON-DEPT-2024", "830.00", "711.75"),
    ("frin.bumberly@example.edu", "cfd-turbulence", "ENGR-STARTUP", "3665.00", "5.00"),
    (
        "grix.mottershaw@example.edu",
        "alzheimers-biomarkers",
        "ADNI-PILOT-2024",
        "2480.00",
        "1755.75",
    ),
    ("grix.mottershaw@example.edu", "neuroimaging-atlas", "NIMH-2024-003", "4400.00", "3753.75"),
    ("plex.wombsworth@example.edu", "exoplanet-survey", "NASA-EXOP-2024", "6005.00", "5100.00"),
    ("quib.flannister@example.edu", "climate-modeling", "NSF-ATM-2024", "2530.00", "12.50"),
    ("quib.flannister@example.edu", "ocean-circulation", "NOAA-CPO-2024", "3275.00", "1693.00"),
    ("tarn.voxley@example.edu", "quantum-materials", "DOE-SC-2024", "1470.00", "735.25"),
    ("zorp.blinkman@example.edu", "genomics-sequencing", "BIO-2024-001", "2720.00", "2307.75"),
    ("zorp.blinkman@example.edu", "protein-folding-ml", "NIH-R01-2023", "4885.00", "4152.25"),
]
# Project -> discount (list - due), as the statements print it.
REFERENCE_DISCOUNTS = {
    "labor-economics": "118.25",
    "cfd-turbulence": "3660.00",
    "alzheimers-biomarkers": "724.25",
    "neuroimaging-atlas": "646.25",
    "exoplanet-survey": "905.00",
    "climate-modeling": "2517.50",
    "ocean-circulation": "1582.00",
    "quantum-materials": "734.75",
    "genomics-sequencing": "412.25",
    "protein-folding-ml": "732.75",
}
# Billed by service, across the month.
REFERENCE_BY_SERVICE = {
    "Amazon EC2": "11398.50",
    "Amazon S3": "6761.75",
    "Azure Virtual Machines": "544.00",
    "Amazon EBS": "382.50",
    "Secure File Services": "360.00",
    "Amazon RDS": "331.50",
    "Amazon S3 Glacier": "212.50",
    "Azure Cosmos DB": "153.00",
    "Azure Blob Storage": "38.25",
    "Research Storage - Archive": "35.00",
    "Research Storage - Home": "10.00",
    "HPC Cluster": "0.00",
    "HPC GPU Cluster": "0.00",
    "Research Storage - Scratch": "0.00",
}


def tags(row: Row) -> str:
    pi_email, fund_org = PROJECTS[row.project]
    values = {"pi_email": pi_email, "project_id": row.project, "fund_org": fund_org}
    if row.references:
        values |= {"grant_number": GENOMICS_GRANT, "request_id": GENOMICS_REQUEST}
    return json.dumps(values)


def write_reference_month(directory: Path) -> Path:
    """Write the five files of the reference month into `directory`; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in REFERENCE_SOURCES:
        with open(directory / name, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(COLUMNS)
            for row in ROWS:
                if row.file != name:
                    continue
                writer.writerow(
                    [
                        PERIOD_START,
                        PERIOD_END,
                        PERIOD_START,
                        PERIOD_END,
                        row.list_cost,
                        row.billed_cost,  # ContractedCost: what was negotiated, as billed
                        row.billed_cost,
                        row.billed_cost,  # EffectiveCost
                        row.resource_id,
                        row.resource_name,
                        row.service,
                        tags(row),
                    ]
                )
    return directory
