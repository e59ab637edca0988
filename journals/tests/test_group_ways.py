"""The two ways the journal asks for its statement groups give the same journal, byte for byte.

PostgreSQL: one GROUP BY with the account-tag candidates in its key, hashed in parallel.
SQLite: the groups by source from a covering index, then the tagged charges moved to their
tag's account (journals/selectors.py). Each database runs its own way in production; these
tests run both on the same month, one with credits, a corrected and approved charge, several
currencies and sources, flagged, rejected and approved charges, discounts, and account tags
that move a part, that name the default account, that only look like the key, and that take a
source's whole part of a statement.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.management.sql import emit_post_migrate_signal
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.models import BillingPeriod, Charge
from billing.services import charge_approve, charge_reassign, charge_reject
from journals import dbindexes, selectors
from journals.build import journal_build
from journals.models import JournalTemplate
from journals.services import journal_export

from .conftest import GOOD_TAGS, SMALL_CONFIG, make_config

CONFIG = SMALL_CONFIG + "  account_tag: gl_account\n"
PHYS = {**GOOD_TAGS, "project_id": "optics", "fund_org": "PHYS-77"}
TEMPLATES = ("gl", "workday-gl", "summary", "detail")


def tags(base=GOOD_TAGS, **extra):
    return {**base, **extra}


@pytest.fixture
def month(load_rows):
    config = make_config(CONFIG)
    load_rows(
        [
            {"BilledCost": "10.123456789", "ListCost": "12.50"},  # a discount
            {"Tags": tags(**{" GL_Account ": "61000"}), "BilledCost": "1.005"},
            {"Tags": tags(gl_account="54100"), "BilledCost": "2.0049"},  # the default account
            {"Tags": tags(gl_account_old="77777"), "BilledCost": "3.3333"},  # not the key
            {"Tags": PHYS, "BilledCost": "-4.005", "ListCost": "-4.005"},  # a credit
            {"Tags": tags(PHYS, GL_ACCOUNT="62000"), "BilledCost": "0.0051"},
            {"Tags": tags(PHYS, gl_account="62000"), "BilledCost": "-0.0101"},
            {"BilledCost": "7.004", "BillingCurrency": "EUR", "Tags": tags(gl_account="63000")},
            {"BilledCost": "1.996", "BillingCurrency": "EUR"},
            {"BilledCost": "5.00", "BillingCurrency": "GBP"},  # stays flagged
            {"Tags": {}, "BilledCost": "9.995", "ResourceId": "corrected"},
            {"Tags": {}, "BilledCost": "100.00", "ResourceId": "rejected"},
        ],
        config=config,
    )
    load_rows(
        [  # every hpc charge of Ada's statement names its account: no part left at 54200
            {"Tags": tags(gl_account="65000"), "BilledCost": "3.335", "ListCost": "4.00"},
            {"Tags": tags(gl_account="65000"), "BilledCost": "3.335"},
            {"Tags": PHYS, "BilledCost": "0.333"},
        ],
        source="hpc",
        config=config,
    )
    period = BillingPeriod.objects.get(key="2025-01")
    charges = Charge.objects.filter(period=period)
    charge_reassign(
        charges=charges.filter(resource_id="corrected"),
        config=config,
        pi_email=PHYS["pi_email"],
        project_id="optics",
        fund_org="PHYS-77",
    )
    charge_reject(charges=charges.filter(resource_id="rejected"), note="not ours")
    charge_approve(charges=charges.filter(billing_currency="EUR"), config=config)
    charge_approve(charges=charges.filter(resource_id="corrected"), config=config)
    statuses = set(charges.values_list("review_status", flat=True))
    assert statuses == {"clean", "approved", "flagged", "rejected"}
    return period, config


@pytest.fixture
def other_way(monkeypatch):
    """Swap the ways: each database then runs the other one."""

    def swap():
        tags_in_key, tags_apart = selectors._tags_in_key, selectors._tags_apart
        monkeypatch.setattr(selectors, "_tags_apart", tags_in_key)
        monkeypatch.setattr(selectors, "_tags_in_key_parallel", tags_apart)

    return swap


def figures(period, config, with_list):
    groups, _ = selectors.statement_groups(period, config, with_list=with_list)
    return [
        (
            g.key,
            g.exact_billed,
            g.exact_list,
            g.charge_count,
            dict(g.parts),
            dict(g.part_counts),
            dict(g.list_parts),
            g.allocation(),
        )
        for g in groups
    ]


def rendered(period, config):
    when = datetime(2025, 2, 3, 4, 5, 6, tzinfo=UTC)
    out = {}
    for name in TEMPLATES:
        template = JournalTemplate.objects.get(name=name)
        out[name] = [
            (j.currency, j.file_name, j.header, list(j.rows()), j.debit_total, j.credit_total)
            for j in journal_build(period=period, template=template, config=config, created_at=when)
        ]
    return out


def exported_bytes(config, tmp_path, label):
    files = {}
    for name in TEMPLATES:
        out = tmp_path / label / f"{name}.csv"
        result = journal_export(period_key="2025-01", template=name, config=config, output=out)
        for f in result.files:
            files[(name, f["currency"])] = open(f["file"], "rb").read()
    return files


def test_both_ways_give_the_same_figures_and_the_same_journal_bytes(month, other_way, tmp_path):
    period, config = month
    mine = {w: figures(period, config, w) for w in (True, False)}
    rows = rendered(period, config)
    files = exported_bytes(config, tmp_path, "this-way")

    other_way()
    assert {w: figures(period, config, w) for w in (True, False)} == mine
    assert rendered(period, config) == rows
    assert exported_bytes(config, tmp_path, "other-way") == files

    # The month does what it says: a part moved by its tag, one named by a key that only looks
    # like the account tag left at the source's account, a source's part taken whole by a tag.
    gl = {(line[5], line[6]) for journal in rows["gl"] for line in journal[3]}
    assert len(files) == 2 * len(TEMPLATES)  # USD and EUR
    groups, sources = selectors.statement_groups(period, config, with_list=False)
    by_source = {
        (g.fund_org, g.currency): {(sources[s].name, a) for s, a in g.parts} for g in groups
    }
    assert by_source[("MATH-1843", "USD")] == {
        ("aws", "54100"),
        ("aws", "61000"),
        ("hpc", "65000"),
    }
    assert by_source[("PHYS-77", "USD")] == {("aws", "54100"), ("aws", "62000"), ("hpc", "54200")}
    assert by_source[("MATH-1843", "EUR")] == {("aws", "54100"), ("aws", "63000")}
    assert gl  # rendered rows were compared, not two empty lists


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's index")
def test_sqlite_reads_the_groups_from_the_index_without_sorting(month):
    period, config = month
    with CaptureQueriesContext(connection) as queries:
        selectors.statement_groups(period, config, with_list=True)
    (groups_sql,) = [q["sql"] for q in queries if "GROUP BY" in q["sql"] and "LIKE" not in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + groups_sql)
        plan = " / ".join(row[-1] for row in cursor.fetchall())
    assert f"COVERING INDEX {dbindexes.NAME}" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's index")
def test_sqlite_finds_the_tagged_charges_in_table_order_not_through_the_index(month):
    period, config = month
    sql, params = selectors.tagged_charges(period, config).query.sql_with_params()
    with connection.cursor() as cursor:  # the parameters bound, as the export runs it
        cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        plan = " / ".join(row[-1] for row in cursor.fetchall())
    assert "INDEX charge_status_period" in plan, plan
    assert dbindexes.NAME not in plan, plan


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's index")
def test_the_index_is_made_again_after_every_migrate(db):
    dbindexes.drop_group_index(connection)
    assert not dbindexes.has_group_index(connection)

    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")

    assert dbindexes.has_group_index(connection)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's plan")
def test_postgresql_groups_are_not_read_through_a_server_side_cursor(month):
    period, config = month
    with CaptureQueriesContext(connection) as queries:
        selectors.statement_groups(period, config, with_list=False)
    grouped = [q["sql"] for q in queries if "GROUP BY" in q["sql"]]
    assert grouped
    # A cursor is planned for its first rows and never in parallel (journals/selectors.py).
    assert not [sql for sql in grouped if sql.lstrip().upper().startswith("DECLARE")]
