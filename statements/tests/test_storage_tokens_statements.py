"""Statements of converted storage and AI-token usage: allowance and subsidy lines, rounded once,
adding up. The same month as billing/tests/test_storage_convert.py and test_tokens_convert.py."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal

import pytest
from django.core.management import call_command

from billing.models import Rate, Source
from billing.tests.usage_fixtures import (
    EDU_CSV,
    STORAGE_CSV,
    STORAGE_MAP_CSV,
    TOKENS_MAP_JSON,
    write,
)
from statements.models import Statement, StatementLine
from statements.services import statement_generate

from .conftest import pdf_text

pytestmark = pytest.mark.django_db(transaction=True)  # rendering runs after commit
D = Decimal


def rate(service, key, unit, price, **terms):
    Rate.objects.create(service=service, key=key, unit=unit, effective_from=date(2026, 1, 1),
                        list_price=D(price), **terms)  # fmt: skip


@pytest.fixture
def january(tmp_path, config):
    rate("storage", "standard", "TB-month", "10.00", subsidy_percent=25,
         allowance_quantity=D("0.5"), allowance_per="pi")  # fmt: skip
    rate("storage", "archive", "TB-month", "4.00", subsidy_percent=100)
    rate("tokens", "credits", "credit", "0.05", allowance_quantity=200, allowance_per="project")
    rate("tokens", "codex", "credit", "0.05", subsidy_percent=100)
    Source.objects.create(name="storage")
    Source.objects.create(name="openai")
    for converter, source, name, text, map_name, map_text in (
        ("storage", "storage", "usage.csv", STORAGE_CSV, "map.csv", STORAGE_MAP_CSV),
        ("tokens", "openai", "edu.csv", EDU_CSV, "projects.json", TOKENS_MAP_JSON),
    ):
        call_command(
            "ingest", "--from", converter, str(write(tmp_path, name, text)), "-s", source,
            "-p", "2026-01", "--map", str(write(tmp_path, map_name, map_text)),
            stdout=io.StringIO(),
        )  # fmt: skip
    return statement_generate(period_key="2026-01", config=config)


def reductions(statement) -> list[tuple[str, Decimal]]:
    lines = StatementLine.objects.filter(statement=statement, kind="reduction").order_by("id")
    return [(line.label, line.discount_amount) for line in lines]


def test_storage_and_tokens_on_one_statement_add_up(january):
    ada = next(s for s in january.statements if s["pi_email"] == "ada@example.edu")
    statement = Statement.objects.get(number=ada["number"])
    # List 35.50 + 11.75 + 11.2415 = 58.4915 → 58.49; due 22.875 + 1.75 + 0 = 24.625 → 24.63
    # (rounded once, half up).
    assert (statement.list_amount, statement.due_amount) == (D("58.49"), D("24.63"))
    # Storage due 22.875 → 22.88, so its discount is 35.50 − 22.88 = 12.62: allowance 5.00 and
    # subsidy 7.625 → 7.62. Tokens list 22.9915 → 22.99, due 1.75, discount 21.24: allowance
    # 10.00 and the codex subsidy 11.2415 → 11.24.
    assert sorted(reductions(statement)) == [
        ("Allowance: first 0.5 TB-months included", D("5.00")),
        ("Allowance: first 200 credits included", D("10.00")),
        ("Subsidy (100%)", D("11.24")),
        ("Subsidy (25%)", D("7.62")),
    ]
    text = pdf_text(ada["pdf"])
    assert "Allowance: first 0.5 TB-months included" in text
    assert "USD 58.49" in text and "USD 24.63" in text


def test_fully_subsidised_archive_storage_shows_list_subsidy_and_nothing_due(january):
    charles = next(s for s in january.statements if s["pi_email"] == "charles@example.edu")
    statement = Statement.objects.get(number=charles["number"])
    # 12 TB-months × 4.00 = 48.00 at list, all of it subsidy.
    assert (statement.list_amount, statement.due_amount) == (D("48.00"), D("0.00"))
    assert reductions(statement) == [("Subsidy (100%)", D("48.00"))]
    assert "Subsidy (100%)" in pdf_text(charles["pdf"])
