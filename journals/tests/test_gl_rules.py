"""General-ledger semantics and refusals: sides, accounts, segments, descriptions, currencies;
a refused export names its cause and writes no file, no record and no audit event."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management.base import CommandError

from accounts.models import AuditEvent
from billing.models import BillingPeriod
from journals import selectors
from journals.build import JournalRefused
from journals.models import JournalExport, JournalTemplate
from journals.services import journal_export

from .conftest import GOOD_TAGS, SMALL_CONFIG, approve_all, make_config, read_dicts


def tags(**extra):
    return {**GOOD_TAGS, **extra}


def nothing_written(instance_dir: Path) -> bool:
    files = [p for p in instance_dir.rglob("*") if p.is_file()]
    return (
        not files
        and not JournalExport.objects.exists()
        and not AuditEvent.objects.filter(action="journal.export").exists()
    )


def refused(**kwargs) -> str:
    with pytest.raises(JournalRefused) as info:
        journal_export(period_key="2025-01", **kwargs)
    return str(info.value)


def gl(config, template="gl", **kwargs) -> list[dict]:
    result = journal_export(period_key="2025-01", template=template, config=config, **kwargs)
    return read_dicts(result.files[0]["file"])


def test_source_without_credit_fund_is_refused_and_nothing_written(
    load_rows, small_config, instance_dir, small_config_path, run
):
    load_rows([{"BilledCost": "5.00"}], source="nofund")

    message = refused(template="gl", config=small_config)

    assert "source 'nofund' has no credit fund/org" in message
    assert nothing_written(instance_dir)
    with pytest.raises(CommandError, match="nofund' has no credit fund/org"):
        run("export-journal".replace("-", "_"), "-p", "2025-01", "-c", small_config_path)
    assert nothing_written(instance_dir)


def test_unbalanced_journal_is_refused(load_rows, small_config, instance_dir, monkeypatch):
    load_rows([{"BilledCost": "5.00"}])
    real = selectors.gl_lines

    def drop_credits(*args, **kwargs):
        return {
            cur: [x for x in lines if x.side == "D"] for cur, lines in real(*args, **kwargs).items()
        }

    monkeypatch.setattr(selectors, "gl_lines", drop_credits)

    message = refused(template="gl", config=small_config)

    assert "USD debits 5.00 do not equal credits 0" in message
    assert nothing_written(instance_dir)


def test_fund_failing_the_review_pattern_is_refused(load_rows, small_config, instance_dir):
    load_rows([{"Tags": tags(fund_org="not a fund"), "BilledCost": "3.00"}, {}])
    assert approve_all() == 1  # a reviewer approved it anyway

    for kind in ("gl", "detail", "summary"):
        message = refused(template=kind, config=small_config)
        assert "fund/org 'not a fund' fails review.fund_org_patterns" in message
        assert "1 charge(s), 3.00 USD" in message
    assert nothing_written(instance_dir)


def test_fund_failing_the_journal_regex_is_refused(load_rows, instance_dir):
    config = make_config(
        SMALL_CONFIG.replace(
            "'^(?P<orgn>[A-Z]+)-(?P<fund>.+)$'", "'^(?P<orgn>[A-Z]{4})-(?P<fund>[0-9]{4})$'"
        )
    )
    load_rows([{}, {"Tags": tags(fund_org="ECON-DEPT")}], config=config)

    message = refused(template="gl", config=config)

    assert "fund/org 'ECON-DEPT' does not match journal.fund_org_regex" in message
    # The credit funds fail it too, and say so.
    assert "credit fund/org 'IT-CLOUD' of source 'aws' does not match" in message
    assert nothing_written(instance_dir)


def test_line_without_an_account_is_refused(load_rows, instance_dir):
    config = make_config(
        SMALL_CONFIG.replace('account_code: "54100"', 'account_code: ""').replace(
            'default_account: "54000"', 'default_account: ""'
        )
    )
    load_rows([{}], config=config)

    message = refused(template="gl", config=config)

    assert "no GL account for its charges of source 'aws'" in message
    assert "no GL account for its credit line of source 'aws'" in message
    assert nothing_written(instance_dir)


def test_template_segment_missing_from_the_regex_is_refused(load_rows, small_config):
    load_rows([{}])
    JournalTemplate.objects.create(
        name="needs-program", kind="gl", row_layout="{{ segment.fund }}\n{{ segment.program }}"
    )
    message = refused(template="needs-program", config=small_config)
    assert "uses segment 'program'" in message


def test_unknown_template_missing_period_and_empty_period(load_rows, small_config):
    assert "no journal template named 'oracle'" in refused(template="oracle", config=small_config)
    assert "period 2025-01 does not exist" in refused(template="gl", config=small_config)
    load_rows([{"Tags": {"project_id": "x"}}])  # no PI, no fund: flagged, not billable
    assert "has no billable charges" in refused(template="gl", config=small_config)


def test_finalized_period_refuses_and_points_to_the_recorded_exports(load_rows, small_config):
    load_rows([{}])
    journal_export(period_key="2025-01", template="gl", config=small_config)
    BillingPeriod.objects.filter(key="2025-01").update(status="finalized")

    message = refused(template="gl", config=small_config)

    assert "finalized and read-only" in message
    assert "journal-2025-01-gl-USD.csv" in message
    assert JournalExport.objects.count() == 1


def test_negative_net_swaps_the_side(load_rows, small_config):
    load_rows(
        [
            {"BilledCost": "10.00"},
            {"Tags": tags(fund_org="PHYS-77", project_id="optics"), "BilledCost": "-4.00"},
        ]
    )
    load_rows(
        [{"Tags": tags(fund_org="PHYS-77", project_id="optics"), "BilledCost": "-1.50"}],
        source="hpc",
    )

    rows = gl(small_config)

    lines = {(r["Fund/Org"], r["Source"]): (r["Debit"], r["Credit"]) for r in rows}
    assert lines == {
        ("MATH-1843", "aws"): ("10.00", ""),
        ("PHYS-77", "aws"): ("", "4.00"),  # a PI fund credited: its credits exceed its charges
        ("PHYS-77", "hpc"): ("", "1.50"),
        ("IT-CLOUD", "aws"): ("", "6.00"),
        ("RC-HPC", "hpc"): ("1.50", ""),  # a source whose net is negative is debited
    }
    debit = sum(Decimal(r["Debit"] or 0) for r in rows)
    credit = sum(Decimal(r["Credit"] or 0) for r in rows)
    assert debit == credit == Decimal("11.50")


def test_zero_lines_are_left_out(load_rows, small_config):
    load_rows([{"BilledCost": "0.00"}, {"Tags": tags(fund_org="PHYS-77"), "BilledCost": "2.00"}])
    rows = gl(small_config)
    assert [(r["Fund/Org"], r["Debit"], r["Credit"]) for r in rows] == [
        ("PHYS-77", "2.00", ""),
        ("IT-CLOUD", "", "2.00"),
    ]


def test_account_precedence_tag_then_source_then_default(load_rows, tmp_path):
    config_text = SMALL_CONFIG.replace(
        "  - {name: nofund", "  - {name: plain, credit_fund_org: RC-PLAIN}\n  - {name: nofund"
    )
    config = make_config(
        config_text + "  account_tag: gl_account\n"
        "  description_template: 'RC {{ source }} {{ account }}'\n"
    )
    load_rows(
        [
            {"Tags": tags(**{" GL_Account ": "61000"}), "BilledCost": "1.00"},
            {"Tags": tags(account_code="99999"), "BilledCost": "2.00"},  # not the tag key
        ],
        config=config,
    )
    load_rows([{"BilledCost": "4.00"}], source="plain", config=config)

    rows = gl(config)

    debits = {(r["Source"], r["Account"]): r["Debit"] for r in rows if r["Debit"]}
    assert debits == {
        ("aws", "61000"): "1.00",
        ("aws", "54100"): "2.00",
        ("plain", "54000"): "4.00",
    }
    credits = {(r["Fund/Org"], r["Account"]): r["Credit"] for r in rows if r["Credit"]}
    assert credits == {("IT-CLOUD", "54100"): "3.00", ("RC-PLAIN", "54000"): "4.00"}
    # A template without its own description uses the configuration's.
    JournalTemplate.objects.create(
        name="bare", kind="gl", header_layout="d", row_layout="{{ description }}"
    )
    assert {r["d"] for r in gl(config, template="bare")} >= {"RC aws 61000", "RC plain 54000"}


def test_description_template_and_limit(load_rows, small_config):
    load_rows([{}])
    JournalTemplate.objects.create(
        name="short",
        kind="gl",
        header_layout="d",
        row_layout="{{ description }}",
        description_template="{{ source_name }}   charges for {{ period }}",
        description_limit=12,
    )
    rows = gl(small_config, template="short")
    assert [r["d"] for r in rows] == ["aws charges", "aws charges"]


def test_split_by_project(load_rows, small_config):
    load_rows(
        [
            {"Tags": tags(project_id="a"), "BilledCost": "1.00"},
            {"Tags": tags(project_id="b"), "BilledCost": "2.00"},
        ]
    )
    assert len(gl(small_config)) == 2  # one debit (fund, account, source), one credit
    rows = gl(small_config, template="workday-gl")
    assert [(r["Project"], r["Debit Amount"]) for r in rows if r["Debit Amount"]] == [
        ("a", "1.00"),
        ("b", "2.00"),
    ]


def test_one_journal_per_currency(load_rows, small_config, tmp_path):
    load_rows([{"BilledCost": "1.00"}, {"BilledCost": "7.00", "BillingCurrency": "EUR"}])
    assert approve_all() == 1  # EUR is flagged (other currency) until approved

    result = journal_export(
        period_key="2025-01", template="gl", config=small_config, output=tmp_path / "j.csv"
    )

    assert result.debit_total == result.credit_total == {"EUR": "7.00", "USD": "1.00"}
    assert sorted(Path(f["file"]).name for f in result.files) == ["j-EUR.csv", "j-USD.csv"]
    assert sorted(JournalExport.objects.values_list("currency", "rows")) == [("EUR", 2), ("USD", 2)]
    eur = read_dicts(tmp_path / "j-EUR.csv")
    assert {r["Currency"] for r in eur} == {"EUR"}
    assert AuditEvent.objects.filter(action="journal.export").count() == 1


def test_created_at_is_the_only_difference_between_two_exports(load_rows, small_config):
    load_rows([{}])
    JournalTemplate.objects.create(
        name="stamped",
        kind="gl",
        header_layout="created\nfund\ndebit",
        row_layout="{{ created_at }}\n{{ fund_org }}\n{{ debit_amount }}",
    )
    first = read_dicts(
        journal_export(period_key="2025-01", template="stamped", config=small_config).files[0][
            "file"
        ]
    )
    second = read_dicts(
        journal_export(period_key="2025-01", template="stamped", config=small_config).files[0][
            "file"
        ]
    )
    assert [(r["fund"], r["debit"]) for r in first] == [(r["fund"], r["debit"]) for r in second]
    assert first[0]["created"].endswith("Z") and first[0]["created"][:4].isdigit()


def test_draft_export_of_an_open_period_is_marked_as_such(
    load_rows, small_config, run, small_config_path
):
    load_rows([{}])
    out = run("export_journal", "-p", "2025-01", "-c", small_config_path)
    assert "draft: the period is still open" in out
    assert JournalExport.objects.get().period_status == "open"
