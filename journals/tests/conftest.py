"""Fixtures for the journal tests: the reference files imported through the import service,
small FOCUS files written on the fly, configurations, and CSV helpers that read a journal back
the way an ERP loader would (Python's csv module)."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest
from django.core.management import call_command

from billing.config import load_config, parse_config
from billing.models import BillingPeriod, Charge
from billing.services import import_files

# The reference files and the example configuration, as the billing tests know them.
from billing.tests.conftest import (  # noqa: F401  (sample_dir is a fixture)
    EXAMPLE_CONFIG,
    SAMPLE_SOURCES,
    sample_dir,
)
from billing.tests.reference_month import REFERENCE_STATEMENTS

# Amounts due per statement (PI, project, fund/org, list, due): the reference month's table.
README_STATEMENTS = REFERENCE_STATEMENTS
FOCUS_COLUMNS = [
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "BilledCost",
    "ListCost",
    "BillingCurrency",
    "ServiceName",
    "ResourceId",
    "ResourceName",
    "Tags",
]
GOOD_TAGS = {"pi_email": "ada@example.edu", "project_id": "engines", "fund_org": "MATH-1843"}
DEFAULT_ROW = {
    "BillingPeriodStart": "2025-01-01T00:00:00Z",
    "BillingPeriodEnd": "2025-02-01T00:00:00Z",
    "BilledCost": "10.00",
    "ListCost": "12.00",
    "BillingCurrency": "USD",
    "ServiceName": "Compute",
    "ResourceId": "vm-1",
    "ResourceName": "",
    "Tags": GOOD_TAGS,
}

SMALL_CONFIG = """
currency: USD
tag_mapping: {reference_1: grant_number, reference_2: request_id}
sources:
  - {name: aws, credit_fund_org: IT-CLOUD, account_code: "54100"}
  - {name: hpc, credit_fund_org: RC-HPC, account_code: "54200"}
  - {name: nofund, account_code: "54900"}
review:
  fund_org_patterns: ['^[A-Z]{2,6}-[A-Z0-9-]+$']
journal:
  fund_org_regex: '^(?P<orgn>[A-Z]+)-(?P<fund>.+)$'
  default_account: "54000"
"""


@pytest.fixture(autouse=True)
def instance_dir(tmp_path, settings):
    """Every test writes journals under its own instance folder."""
    settings.INSTANCE_DIR = tmp_path / "instance"
    settings.INSTANCE_DIR.mkdir()
    return settings.INSTANCE_DIR


@pytest.fixture
def config():
    return load_config(EXAMPLE_CONFIG)


@pytest.fixture
def config_path() -> str:
    return str(EXAMPLE_CONFIG)


@pytest.fixture
def small_config_path(tmp_path) -> str:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL_CONFIG, encoding="utf-8")
    return str(path)


@pytest.fixture
def small_config(small_config_path):
    return load_config(small_config_path)


def make_config(text: str):
    import yaml

    return parse_config(yaml.safe_load(text))


@pytest.fixture
def samples(db, sample_dir, config):  # noqa: F811
    """The five reference files imported into 2025-01 (all clean with the example config)."""
    for name, source in SAMPLE_SOURCES.items():
        import_files(paths=[sample_dir / name], source=source, config=config, actor="test")
    return BillingPeriod.objects.get(key="2025-01")


def focus_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FOCUS_COLUMNS)
    for row in rows:
        values = {**DEFAULT_ROW, **row}
        if isinstance(values["Tags"], dict):
            values["Tags"] = json.dumps(values["Tags"])
        writer.writerow([values.get(column, "") for column in FOCUS_COLUMNS])
    return buffer.getvalue()


@pytest.fixture
def load_rows(db, tmp_path, small_config):
    """load_rows(rows, source="aws", config=small_config) imports a small FOCUS file."""
    counter = {"n": 0}

    def load(rows: list[dict], source: str = "aws", config=None):
        counter["n"] += 1
        path = tmp_path / f"focus-{counter['n']}.csv"
        path.write_text(focus_text(rows), encoding="utf-8", newline="")
        return import_files(
            paths=[path], source=source, config=config or small_config, actor="test"
        )

    return load


def approve_all(period_key: str = "2025-01") -> int:
    """Test set-up: a reviewer approved every flagged charge of the month."""
    return Charge.objects.filter(
        period__key=period_key, review_status=Charge.ReviewStatus.FLAGGED
    ).update(review_status=Charge.ReviewStatus.APPROVED)


def read_csv(path, delimiter: str = ",") -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle, delimiter=delimiter, strict=True))


def read_dicts(path, delimiter: str = ",") -> list[dict[str, str]]:
    rows = read_csv(path, delimiter)
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def dec(text: str) -> Decimal:
    return Decimal(text) if text else Decimal(0)


@pytest.fixture
def run():
    """run("export_journal", "-p", …) -> stdout of the command, as a user would see it."""

    def run(*args) -> str:
        out = io.StringIO()
        call_command(*[str(a) for a in args], stdout=out, stderr=io.StringIO())
        return out.getvalue()

    return run


@pytest.fixture
def month_config(settings, tmp_path):
    """For tests that run whole months through the services: PDFs under tmp_path, mail kept in
    memory and retried at once, the journal templates loaded. Returns write(text=chaos.CONFIG)
    -> the path of that billing configuration, written under tmp_path."""
    from .chaos import CONFIG, ensure_journal_templates

    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.OPENCHARGEBACK_EMAIL_RETRY_DELAY = 0
    ensure_journal_templates()

    def write(text: str = CONFIG):
        path = tmp_path / "config.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return write
