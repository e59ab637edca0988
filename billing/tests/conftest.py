"""Fixtures for the billing tests: the reference month (written by the tests, see
reference_month.py), the example configuration, small FOCUS files written on the fly, and helpers
that run management commands the way a user does."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command

from accounts.models import AuditEvent
from billing.config import load_config
from billing.models import PI, BillingPeriod, Charge, Import, ImportFile, Project
from billing.money import ExactSum

from .reference_month import REFERENCE_SOURCES, write_reference_month

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO / "config.example.yaml"
# File name -> source name in config.example.yaml.
SAMPLE_SOURCES = REFERENCE_SOURCES

# Columns of the small files the tests write, in order.
FOCUS_COLUMNS = [
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "BilledCost",
    "ListCost",
    "BillingCurrency",
    "ServiceName",
    "ResourceId",
    "SubAccountId",
    "Tags",
]
GOOD_TAGS = json.dumps(
    {"pi_email": "ada@example.edu", "project_id": "engines", "fund_org": "MATH-1843"}
)
DEFAULT_ROW = {
    "BillingPeriodStart": "2025-01-01T00:00:00Z",
    "BillingPeriodEnd": "2025-02-01T00:00:00Z",
    "BilledCost": "10.00",
    "ListCost": "12.00",
    "BillingCurrency": "USD",
    "ServiceName": "Compute",
    "ResourceId": "vm-1",
    "SubAccountId": "",
    "Tags": GOOD_TAGS,
}


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """The five files of the reference month (reference_month.py), written once per session."""
    return write_reference_month(tmp_path_factory.mktemp("reference-2025-01"))


@pytest.fixture
def config_path() -> str:
    return str(EXAMPLE_CONFIG)


@pytest.fixture
def config(config_path):
    return load_config(config_path)


def focus_text(rows: list[dict], columns: list[str] | None = None) -> str:
    """CSV text of FOCUS rows: each row is DEFAULT_ROW updated with the given values."""
    columns = columns or FOCUS_COLUMNS
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        values = {**DEFAULT_ROW, **row}
        writer.writerow([values.get(column, "") for column in columns])
    return buffer.getvalue()


@pytest.fixture
def write_file(tmp_path):
    """write_file(name, text_or_bytes) -> path in tmp_path."""

    def write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
        return path

    return write


@pytest.fixture
def write_focus(write_file):
    """write_focus(rows, name="focus.csv", columns=None) -> path of a small FOCUS CSV."""

    def write(rows: list[dict], name: str = "focus.csv", columns: list[str] | None = None) -> Path:
        return write_file(name, focus_text(rows, columns))

    return write


@pytest.fixture
def run():
    """run("ingest", "f.csv", "-s", "aws", ...) -> what the command printed on stdout."""

    def run(*args) -> str:
        out = io.StringIO()
        call_command(*[str(a) for a in args], stdout=out, stderr=io.StringIO())
        return out.getvalue()

    return run


@pytest.fixture
def run_json(run):
    """Like run, with --json added; returns the parsed output."""

    def run_json(*args):
        return json.loads(run(*args, "--json"))

    return run_json


@pytest.fixture
def ingest(run_json, config_path):
    """ingest(*files, source="aws", *extra) -> the receipt as parsed JSON (example config)."""

    def ingest(*files, source: str, extra: tuple = ()):
        return run_json("ingest", *files, "-s", source, "-c", config_path, *extra)

    return ingest


@pytest.fixture
def import_samples(ingest, sample_dir):
    """Import the five reference files; returns {file name: receipt}."""

    def import_all():
        return {
            name: ingest(sample_dir / name, source=source)
            for name, source in SAMPLE_SOURCES.items()
        }

    return import_all


def billed_total(**filters) -> Decimal:
    return Charge.objects.filter(**filters).aggregate(t=ExactSum("billed_cost"))["t"] or Decimal(0)


def db_state() -> dict:
    """What a refused or dry-run import must leave as it was."""
    totals = Charge.objects.aggregate(billed=ExactSum("billed_cost"), listed=ExactSum("list_cost"))
    return {
        "charges": Charge.objects.count(),
        "imports": Import.objects.count(),
        "import_files": ImportFile.objects.count(),
        "periods": sorted(BillingPeriod.objects.values_list("key", "status")),
        "pis": PI.objects.count(),
        "projects": Project.objects.count(),
        "audit_events": AuditEvent.objects.count(),
        "billed": totals["billed"],
        "list": totals["listed"],
        "statuses": sorted(Charge.objects.values_list("fingerprint", "review_status")),
    }


@pytest.fixture
def make_charges(db):
    """make_charges([Decimal, …], **fields) -> saved charges of one source and month, in order.

    A small factory for tests of amounts and queries; imports are tested through the command.
    """
    from datetime import UTC, datetime

    from billing.models import Source

    source = Source.objects.create(name="factory")
    period = BillingPeriod.objects.create(key="2025-01")
    record = Import.objects.create(source=source, outcome=Import.Outcome.IMPORTED, actor="test")
    file = ImportFile.objects.create(
        import_run=record, name="factory.csv", sha256="0" * 64, size_bytes=0, rows=0
    )

    def make(costs, *, period=period, **fields) -> list[Charge]:
        """`period`: another (open) period than 2025-01; charges go only into open periods."""
        start = Charge.objects.count()
        charges = [
            Charge(
                source=source,
                period=period,
                import_file=file,
                line_number=start + i + 2,
                fingerprint=f"{start + i:032x}",
                billed_cost=cost,
                **{
                    "billing_period_start": datetime(2025, 1, 1, tzinfo=UTC),
                    "billing_currency": "USD",
                    **fields,
                },
            )
            for i, cost in enumerate(costs)
        ]
        Charge.objects.bulk_create(charges, batch_size=500)
        return list(Charge.objects.filter(line_number__gte=start + 2).order_by("line_number"))

    return make
