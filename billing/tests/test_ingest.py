"""The `ingest` command: reference totals, receipts, re-delivery, review decisions, flags,
formats and refusals. Every test runs the command (or the import service) the way a user does
and checks what they would see: the receipt, the period's totals, the charges."""

from __future__ import annotations

import csv
import gzip
import json
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management.base import CommandError
from django.db import connection

from billing.config import parse_config
from billing.models import AccountMapping, BillingPeriod, Charge, Flag, Import
from billing.services import import_files

from .conftest import GOOD_TAGS, SAMPLE_SOURCES, billed_total, db_state, focus_text
from .reference_month import (
    GENOMICS_GRANT,
    GENOMICS_REQUEST,
    REFERENCE_DISCOUNTS,
    REFERENCE_FILES,
    REFERENCE_STATEMENTS,
)

pytestmark = pytest.mark.django_db

D = Decimal

# The reference month's hand-written figures (reference_month.py): file -> (rows, billed, list).
README_FILES = REFERENCE_FILES
# (PI, project) -> (fund/org, list, discount, due).
README_STATEMENTS = {
    (pi, project): (fund, lst, REFERENCE_DISCOUNTS[project], due)
    for pi, project, fund, lst, due in REFERENCE_STATEMENTS
}


def read_rows(path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def write_rows(path, header, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def csv_billed_sum(path) -> Decimal:
    header, rows = read_rows(path)
    index = header.index("BilledCost")
    return sum((D(row[index]) for row in rows), D(0))


def only_charge(**filters) -> Charge:
    charges = list(Charge.objects.filter(**filters))
    assert len(charges) == 1, charges
    return charges[0]


def refused(run, *args) -> str:
    """Run a command that must be refused; return its message."""
    with pytest.raises(CommandError) as info:
        run(*args)
    return str(info.value)


# -- 1. the reference month ---------------------------------------------------------------


def test_reference_month_totals(import_samples, run_json):
    import_samples()

    summary = run_json("periods", "show", "2025-01")

    assert summary["charges"] == 59
    assert summary["flagged"] == 0
    assert D(summary["totals"]["USD"]["billed"]) == D("20227.00")
    assert D(summary["totals"]["USD"]["list"]) == D("32260.00")
    assert list(summary["totals"]) == ["USD"]


def test_reference_month_per_statement_figures(import_samples):
    import_samples()

    groups = defaultdict(lambda: {"list": D(0), "due": D(0), "fund_orgs": set()})
    for charge in Charge.objects.select_related("pi", "project"):
        group = groups[(charge.pi.email, charge.project.code)]
        group["list"] += charge.list_cost
        group["due"] += charge.billed_cost
        group["fund_orgs"].add(charge.fund_org)

    assert set(groups) == set(README_STATEMENTS)
    for key, (fund_org, list_cost, discount, due) in README_STATEMENTS.items():
        group = groups[key]
        assert group["fund_orgs"] == {fund_org}, key
        assert group["list"] == D(list_cost), key
        assert group["due"] == D(due), key
        assert group["list"] - group["due"] == D(discount), key


def test_reference_tags_fill_references_from_the_mapped_keys(import_samples):
    import_samples()

    # config.example.yaml maps reference_1 to the grant_number tag, reference_2 to request_id.
    charge = Charge.objects.get(resource_id="i-0f3a61c2d9e8b7001")
    assert charge.reference_1 == GENOMICS_GRANT == "NSF-DBI-2025-0410"
    assert charge.reference_2 == GENOMICS_REQUEST == "REQ-2025-00077"
    assert charge.pi.email == "zorp.blinkman@example.edu"
    assert charge.review_status == "clean"


# -- 2. receipts ----------------------------------------------------------------------------


def test_receipts_match_the_reference_table(import_samples):
    receipts = import_samples()

    for name, (rows, billed, listed) in README_FILES.items():
        receipt = receipts[name]
        assert receipt["status"] == "imported", name
        assert receipt["source"] == SAMPLE_SOURCES[name]
        assert receipt["periods"] == ["2025-01"]
        assert receipt["rows_read"] == rows, name
        assert receipt["rows_added"] == rows, name
        assert receipt["rows_flagged"] == 0, name
        assert D(receipt["totals"]["USD"]["billed"]) == billed, name
        assert D(receipt["totals"]["USD"]["list"]) == listed, name
        assert receipt["files"][0]["rows"] == rows
    assert Import.objects.count() == 5


def test_text_receipt_shows_status_rows_and_exact_totals(run, sample_dir, config_path):
    out = run("ingest", sample_dir / "aws_2025-01.csv", "-s", "aws", "-c", config_path)

    assert "source aws: imported" in out
    assert "read 25" in out
    assert "19,086.75" in out
    assert "22,455.00" in out


# -- 3. re-delivery -------------------------------------------------------------------------


def test_same_file_twice_is_unchanged(ingest, sample_dir):
    path = sample_dir / "aws_2025-01.csv"
    ingest(path, source="aws")

    second = ingest(path, source="aws")

    assert second["status"] == "unchanged"
    assert second["rows_added"] == 0
    assert second["rows_removed"] == 0
    assert second["rows_unchanged"] == 25
    assert Charge.objects.count() == 25
    assert billed_total() == D("19086.75")


def test_same_rows_in_another_order_and_column_order_are_unchanged(ingest, sample_dir, tmp_path):
    ingest(sample_dir / "aws_2025-01.csv", source="aws")
    header, rows = read_rows(sample_dir / "aws_2025-01.csv")
    order = list(reversed(range(len(header))))
    write_rows(
        tmp_path / "aws_shuffled.csv",
        [header[i].lower() for i in order],
        [[row[i] for i in order] for row in reversed(rows)],
    )

    receipt = ingest(tmp_path / "aws_shuffled.csv", source="aws")

    assert receipt["status"] == "unchanged"
    assert receipt["rows_unchanged"] == 25
    assert Charge.objects.count() == 25


def test_restated_delivery_replaces_the_month(ingest, sample_dir, tmp_path):
    original = sample_dir / "aws_2025-01.csv"
    ingest(original, source="aws")
    header, rows = read_rows(original)
    billed = header.index("BilledCost")
    rows[0][billed] = "1000.05"  # was 1062.50
    removed = rows.pop(5)
    restated = tmp_path / "aws_2025-01_restated.csv"
    write_rows(restated, header, rows)

    receipt = ingest(restated, source="aws")

    assert receipt["status"] == "replaced"
    assert receipt["rows_read"] == 24
    assert receipt["rows_added"] == 1
    assert receipt["rows_removed"] == 2
    assert receipt["rows_unchanged"] == 23
    new_sum = csv_billed_sum(restated)
    assert new_sum == D("19086.75") - D("62.45") - D(removed[billed])
    assert D(receipt["totals"]["USD"]["billed"]) == new_sum
    assert D(receipt["billed_change"]["USD"]) == new_sum - D("19086.75")
    assert billed_total(source__name="aws", period__key="2025-01") == new_sum
    assert Charge.objects.count() == 24


def test_replacing_one_source_leaves_other_sources_alone(ingest, sample_dir, tmp_path):
    ingest(sample_dir / "azure_2025-01.csv", source="azure")
    ingest(sample_dir / "aws_2025-01.csv", source="aws")
    header, rows = read_rows(sample_dir / "aws_2025-01.csv")
    write_rows(tmp_path / "aws_small.csv", header, rows[:3])

    ingest(tmp_path / "aws_small.csv", source="aws")

    assert Charge.objects.filter(source__name="aws").count() == 3
    assert billed_total(source__name="azure") == D("735.25")


def test_append_parts_adds_them_and_skips_a_part_seen_before(ingest, sample_dir, tmp_path):
    header, rows = read_rows(sample_dir / "storage_2025-01.csv")
    part1, part2 = tmp_path / "storage_part1.csv", tmp_path / "storage_part2.csv"
    write_rows(part1, header, rows[:8])
    write_rows(part2, header, rows[8:])

    first = ingest(part1, source="storage", extra=("--append",))
    second = ingest(part2, source="storage", extra=("--append",))

    assert first["status"] == second["status"] == "imported"
    assert second["rows_added"] == 7
    assert Charge.objects.count() == 15
    assert billed_total() == csv_billed_sum(part1) + csv_billed_sum(part2) == D("45.00")

    again = ingest(part2, source="storage", extra=("--append",))

    assert again["status"] == "unchanged"
    assert again["rows_added"] == 0
    assert again["skipped_files"] == [str(part2)]
    assert Charge.objects.count() == 15
    assert billed_total() == D("45.00")


@pytest.mark.parametrize("first_gzipped", [False, True], ids=["csv-then-gz", "gz-then-csv"])
def test_append_recognises_a_part_by_its_content_whatever_its_compression(
    ingest, write_focus, tmp_path, first_gzipped
):
    plain = write_focus(
        [{"BilledCost": "5.00"}, {"BilledCost": "1.25", "ResourceId": "vm-2"}], name="part1.csv"
    )
    packed = tmp_path / "part1-again.gz"  # another name, another extension, same content
    with gzip.open(packed, "wb") as out:  # a two-member gzip stream, as `cat a.gz b.gz` makes
        out.write(plain.read_bytes()[:40])
    with gzip.open(packed, "ab") as out:
        out.write(plain.read_bytes()[40:])
    first, second = (packed, plain) if first_gzipped else (plain, packed)

    ingest(first, source="aws", extra=("--append",))
    again = ingest(second, source="aws", extra=("--append",))

    assert again["status"] == "unchanged"
    assert again["skipped_files"] == [str(second)]
    assert Charge.objects.count() == 2
    assert billed_total() == D("6.25")


def test_append_of_a_gzip_that_does_not_decompress_is_refused_naming_it(ingest, write_focus):
    plain = write_focus([{"BilledCost": "5.00"}], name="part1.csv")
    broken = plain.with_name("part1.csv.gz")
    broken.write_bytes(gzip.compress(plain.read_bytes() * 200)[:-30])  # cut short in transit

    with pytest.raises(CommandError, match=r"part1\.csv\.gz: cannot read the file"):
        ingest(broken, source="aws", extra=("--append",))
    assert not Charge.objects.exists()


def test_append_keeps_identical_rows_of_different_parts(ingest, write_focus):
    # The same charge delivered in two parts is two charges, not one.
    part1 = write_focus([{"BilledCost": "5.00", "ListCost": "5.00"}], name="part1.csv")
    part2 = write_focus(
        [{"BilledCost": "5.00", "ListCost": "5.00"}, {"BilledCost": "1.25"}], name="part2.csv"
    )

    ingest(part1, source="aws", extra=("--append",))
    ingest(part2, source="aws", extra=("--append",))

    assert Charge.objects.count() == 3
    assert billed_total() == D("11.25")


# -- 4. review decisions ----------------------------------------------------------------------


def test_review_decision_survives_a_restated_delivery(ingest, write_focus):
    rows = [
        {"ResourceId": "vm-untagged", "Tags": "{}", "BilledCost": "3.00"},
        {"ResourceId": "vm-2", "BilledCost": "4.00"},
        {"ResourceId": "vm-3", "BilledCost": "5.00"},
    ]
    ingest(write_focus(rows, name="first.csv"), source="aws")
    flagged = Charge.objects.filter(resource_id="vm-untagged")
    assert flagged.get().review_status == "flagged"
    # Setup: a reviewer's approval (the review service is not under test here).
    flagged.update(review_status="approved")

    rows[2]["BilledCost"] = "5.50"
    receipt = ingest(write_focus(rows, name="second.csv"), source="aws")

    assert receipt["status"] == "replaced"
    assert receipt["rows_added"] == 1
    assert receipt["rows_removed"] == 1
    kept = Charge.objects.get(resource_id="vm-untagged")
    assert kept.review_status == "approved"
    assert kept.flags == Flag.NO_PI | Flag.NO_PROJECT | Flag.NO_FUND_ORG
    assert Charge.objects.get(resource_id="vm-3").billed_cost == D("5.50")


# -- 5. identical rows ------------------------------------------------------------------------


def test_identical_rows_are_separate_charges_across_reimports(ingest, write_focus):
    path = write_focus([{"BilledCost": "2.50"}, {"BilledCost": "2.50"}, {"BilledCost": "1.00"}])

    first = ingest(path, source="aws")
    assert first["rows_added"] == 3
    assert Charge.objects.filter(billed_cost=D("2.50")).count() == 2

    second = ingest(path, source="aws")

    assert second["status"] == "unchanged"
    assert Charge.objects.filter(billed_cost=D("2.50")).count() == 2
    assert billed_total() == D("6.00")


def test_dropping_one_of_two_identical_rows_removes_one(ingest, write_focus):
    ingest(
        write_focus([{"BilledCost": "2.50"}, {"BilledCost": "2.50"}], name="a.csv"), source="aws"
    )

    receipt = ingest(write_focus([{"BilledCost": "2.50"}], name="b.csv"), source="aws")

    assert receipt["status"] == "replaced"
    assert receipt["rows_removed"] == 1
    assert Charge.objects.count() == 1
    assert billed_total() == D("2.50")


# -- 6. flags ---------------------------------------------------------------------------------


def tags(**values) -> str:
    return json.dumps(values)


@pytest.mark.parametrize(
    ("row_tags", "expected"),
    [
        (tags(project_id="engines", fund_org="MATH-1843"), Flag.NO_PI),
        (tags(pi_email="not-an-email", project_id="engines", fund_org="MATH-1843"), Flag.NO_PI),
        (tags(pi_email="ada@example.edu", fund_org="MATH-1843"), Flag.NO_PROJECT),
        (tags(pi_email="ada@example.edu", project_id="engines"), Flag.NO_FUND_ORG),
        (
            tags(pi_email="ada@example.edu", project_id="engines", fund_org="math-1843"),
            Flag.FUND_ORG_PATTERN,
        ),
        (
            tags(pi_email="ada@example.edu", project_id="engines", fund_org="MATHEMATICS-1843"),
            Flag.FUND_ORG_PATTERN,
        ),
        ("[1,2]", Flag.TAGS_INVALID | Flag.NO_PI | Flag.NO_PROJECT | Flag.NO_FUND_ORG),
        ("not json", Flag.TAGS_INVALID | Flag.NO_PI | Flag.NO_PROJECT | Flag.NO_FUND_ORG),
        ("", Flag.NO_PI | Flag.NO_PROJECT | Flag.NO_FUND_ORG),
    ],
)
def test_flag_reasons(ingest, write_focus, row_tags, expected):
    ingest(write_focus([{"Tags": row_tags}]), source="aws")

    charge = only_charge()
    assert Flag(charge.flags) == expected
    assert charge.review_status == "flagged"


def test_clean_row_is_not_flagged(ingest, write_focus):
    receipt = ingest(write_focus([{}]), source="aws")

    charge = only_charge()
    assert charge.flags == 0
    assert charge.review_status == "clean"
    assert charge.pi.email == "ada@example.edu"
    assert charge.project.code == "engines"
    assert charge.fund_org == "MATH-1843"
    assert receipt["rows_flagged"] == 0
    assert D(receipt["totals"]["USD"]["flagged_billed"]) == D(0)


def test_invalid_tags_text_is_kept_for_the_reviewer(ingest, write_focus):
    ingest(write_focus([{"Tags": "not json"}]), source="aws")

    charge = only_charge()
    assert charge.tags is None
    assert charge.extra["Tags"] == "not json"


def test_other_currency_is_flagged_and_totalled_apart(ingest, write_focus):
    path = write_focus([{"BilledCost": "10.00"}, {"BilledCost": "7.00", "BillingCurrency": "EUR"}])

    receipt = ingest(path, source="aws")

    eur = only_charge(billing_currency="EUR")
    assert Flag(eur.flags) == Flag.CURRENCY
    assert only_charge(billing_currency="USD").flags == 0
    assert D(receipt["totals"]["USD"]["billed"]) == D("10.00")
    assert D(receipt["totals"]["EUR"]["billed"]) == D("7.00")
    assert D(receipt["totals"]["EUR"]["flagged_billed"]) == D("7.00")
    assert receipt["rows_flagged"] == 1


def test_row_from_another_month_is_billed_in_the_requested_month_and_flagged(ingest, write_focus):
    path = write_focus(
        [
            {"BilledCost": "10.00"},
            {
                "BilledCost": "4.00",
                "BillingPeriodStart": "2024-12-01T00:00:00Z",
                "BillingPeriodEnd": "2025-01-01T00:00:00Z",
            },
        ]
    )

    receipt = ingest(path, source="aws", extra=("-p", "2025-01"))

    assert receipt["periods"] == ["2025-01"]
    assert not Charge.objects.filter(period__key="2024-12").exists()
    late = only_charge(period__key="2025-01", billed_cost=Decimal("4.00"))
    assert Flag(late.flags) == Flag.OTHER_PERIOD
    assert only_charge(period__key="2025-01", billed_cost=Decimal("10.00")).flags == 0


def test_flag_pattern_matches_service_or_resource(write_focus):
    config = parse_config(
        {
            "sources": [{"name": "aws"}],
            "review": {"flag_patterns": ["(?i)gpu"], "fund_org_patterns": []},
        }
    )
    path = write_focus(
        [
            {"ServiceName": "Compute", "ResourceId": "vm-1"},
            {"ServiceName": "GPU instances", "ResourceId": "vm-2"},
            {"ServiceName": "Compute", "ResourceId": "node-gpu-7"},
        ]
    )

    import_files(paths=[path], source="aws", config=config, actor="test")

    assert Charge.objects.get(resource_id="vm-1").flags == 0
    assert Flag(Charge.objects.get(resource_id="vm-2").flags) == Flag.PATTERN_MATCH
    assert Flag(Charge.objects.get(resource_id="node-gpu-7").flags) == Flag.PATTERN_MATCH


def test_row_with_several_problems_carries_every_reason(ingest, write_focus):
    path = write_focus(
        [
            {
                "Tags": tags(fund_org="lowercase-fund"),
                "BillingCurrency": "EUR",
                "BillingPeriodStart": "2024-11-01",
            }
        ]
    )

    ingest(path, source="aws", extra=("-p", "2025-01"))

    charge = only_charge()
    assert Flag(charge.flags) == (
        Flag.NO_PI | Flag.NO_PROJECT | Flag.FUND_ORG_PATTERN | Flag.CURRENCY | Flag.OTHER_PERIOD
    )
    assert set(charge.reasons) == {
        "no_pi",
        "no_project",
        "fund_org_pattern",
        "currency",
        "other_period",
    }


def test_tag_keys_match_in_any_case_and_with_spaces(ingest, write_focus):
    row_tags = json.dumps(
        {" PI_Email ": "Ada@Example.edu", "Project_ID": "engines", "FUND_ORG ": "MATH-1843"}
    )

    ingest(write_focus([{"Tags": row_tags}]), source="aws")

    charge = only_charge()
    assert charge.flags == 0
    assert charge.pi.email == "ada@example.edu"
    assert charge.project.code == "engines"
    assert charge.fund_org == "MATH-1843"


def test_account_mapping_attributes_an_untagged_row(ingest, write_focus):
    AccountMapping.objects.create(
        account_id="123456789012",
        pi_email="grace@example.edu",
        project_id="compilers",
        fund_org="NAVY-1952",
    )
    path = write_focus(
        [
            {"ResourceId": "untagged", "SubAccountId": "123456789012", "Tags": ""},
            {
                "ResourceId": "tagged",
                "SubAccountId": "123456789012",
                "Tags": tags(pi_email="ada@example.edu", project_id="engines"),
            },
            {"ResourceId": "unmapped", "SubAccountId": "999", "Tags": ""},
        ]
    )

    ingest(path, source="aws")

    untagged = Charge.objects.get(resource_id="untagged")
    assert untagged.flags == 0
    assert (untagged.pi.email, untagged.project.code, untagged.fund_org) == (
        "grace@example.edu",
        "compilers",
        "NAVY-1952",
    )
    # Tags win; the map fills only what they leave empty.
    tagged = Charge.objects.get(resource_id="tagged")
    assert (tagged.pi.email, tagged.project.code, tagged.fund_org) == (
        "ada@example.edu",
        "engines",
        "NAVY-1952",
    )
    assert Flag(Charge.objects.get(resource_id="unmapped").flags) == (
        Flag.NO_PI | Flag.NO_PROJECT | Flag.NO_FUND_ORG
    )


def test_source_specific_account_mapping_wins_and_billing_account_is_a_fallback(
    ingest, write_focus
):
    ingest(write_focus([{}], name="seed.csv"), source="aws")  # creates the aws source
    aws = Charge.objects.get().source
    AccountMapping.objects.create(
        account_id="111", pi_email="any@example.edu", project_id="p-any", fund_org="ANY-1"
    )
    AccountMapping.objects.create(
        source=aws,
        account_id="111",
        pi_email="own@example.edu",
        project_id="p-own",
        fund_org="OWN-1",
    )
    AccountMapping.objects.create(
        account_id="payer-9",
        pi_email="payer@example.edu",
        project_id="p-payer",
        fund_org="PAY-1",
    )
    columns = ["BillingPeriodStart", "BilledCost", "SubAccountId", "BillingAccountId", "Tags"]
    path = write_focus(
        [
            {"SubAccountId": "111", "BillingAccountId": "payer-9", "Tags": ""},
            {"SubAccountId": "222", "BillingAccountId": "payer-9", "Tags": "", "BilledCost": "1"},
        ],
        columns=columns,
    )

    ingest(path, source="aws")

    own = Charge.objects.get(sub_account_id="111")
    assert (own.pi.email, own.project.code, own.fund_org) == ("own@example.edu", "p-own", "OWN-1")
    payer = Charge.objects.get(sub_account_id="222")
    assert (payer.pi.email, payer.fund_org) == ("payer@example.edu", "PAY-1")
    assert payer.flags == 0


# -- 7. formats -------------------------------------------------------------------------------


def test_gzip_csv(ingest, tmp_path):
    path = tmp_path / "aws.csv.gz"
    path.write_bytes(
        gzip.compress(focus_text([{"BilledCost": "1.10"}, {"BilledCost": "2.20"}]).encode())
    )

    receipt = ingest(path, source="aws")

    assert receipt["rows_read"] == 2
    assert D(receipt["totals"]["USD"]["billed"]) == D("3.30")


def test_parquet_with_decimal_and_text_costs(ingest, tmp_path):
    table = pa.table(
        {
            "BillingPeriodStart": pa.array(
                [datetime(2025, 1, 1, tzinfo=UTC)] * 2, pa.timestamp("us", tz="UTC")
            ),
            "BilledCost": pa.array(
                [D("12.34567890123"), D("0.00000080000")], pa.decimal128(20, 11)
            ),
            "ListCost": pa.array(["20.1", None], pa.string()),
            "Tags": pa.array([GOOD_TAGS, None], pa.string()),
            "x_Region": pa.array(["us-east-1", "NULL"], pa.string()),
        }
    )
    path = tmp_path / "aws.parquet"
    pq.write_table(table, path)

    receipt = ingest(path, source="aws")

    assert receipt["rows_read"] == 2
    assert D(receipt["totals"]["USD"]["billed"]) == D("12.34567970123")
    assert D(receipt["totals"]["USD"]["list"]) == D("20.1")
    first = Charge.objects.get(line_number=2)
    assert first.billed_cost == D("12.34567890123")
    assert first.billing_period_start == datetime(2025, 1, 1, tzinfo=UTC)
    assert first.period.key == "2025-01"
    assert first.extra == {"x_Region": "us-east-1"}
    assert first.flags == 0
    second = Charge.objects.get(line_number=3)
    assert second.list_cost is None
    assert second.extra == {}


def test_crlf_line_endings_and_spaces_around_headers(ingest, write_file):
    text = " BillingPeriodStart ,BilledCost , Tags\r\n2025-01-01,1.25,\r\n2025-01-01,2.50,\r\n"

    receipt = ingest(write_file("windows.csv", text), source="aws")

    assert receipt["rows_read"] == 2
    assert D(receipt["totals"]["USD"]["billed"]) == D("3.75")


def test_bom_and_lowercase_headers(ingest, write_file):
    text = "\ufeffbillingperiodstart,billedcost,listcost,tags\n2025-01-01,3.00,4.00,\n"

    receipt = ingest(write_file("bom.csv", text.encode("utf-8")), source="aws")

    assert receipt["rows_read"] == 1
    charge = only_charge()
    assert charge.billed_cost == D("3.00")
    assert charge.list_cost == D("4.00")
    assert charge.period.key == "2025-01"


def test_null_text_and_empty_fields_are_null(ingest, write_file):
    text = (
        "BillingPeriodStart,BilledCost,ListCost,ContractedCost,ResourceId,x_Note,Tags\n"
        "2025-01-01,1.00,NULL,,NULL,NULL,NULL\n"
    )

    ingest(write_file("nulls.csv", text), source="aws")

    charge = only_charge()
    assert charge.list_cost is None
    assert charge.contracted_cost is None
    assert charge.resource_id == ""
    assert charge.tags is None
    assert charge.extra == {}
    assert not charge.flags & Flag.TAGS_INVALID


def test_e_notation_and_eleven_decimals_are_exact(ingest, write_focus, run_json):
    path = write_focus(
        [
            {"ResourceId": "e", "BilledCost": "3.52E-6", "ListCost": "1E+2"},
            {"ResourceId": "tiny", "BilledCost": "0.00000080000", "ListCost": ""},
            {"ResourceId": "big", "BilledCost": "12.34567890123", "ListCost": ""},
        ]
    )

    receipt = ingest(path, source="aws")

    assert Charge.objects.get(resource_id="e").billed_cost == D("0.00000352")
    assert Charge.objects.get(resource_id="e").list_cost == D("100")
    assert Charge.objects.get(resource_id="tiny").billed_cost == D("0.00000080000")
    expected = D("12.34568322123")
    assert D(receipt["totals"]["USD"]["billed"]) == expected
    assert D(run_json("periods", "show", "2025-01")["totals"]["USD"]["billed"]) == expected
    assert billed_total() == expected


def test_several_billing_periods_in_one_file(ingest, write_focus):
    path = write_focus(
        [
            {"BillingPeriodStart": "2024-12-01T00:00:00Z", "BilledCost": "1.00"},
            {"BillingPeriodStart": "2025-01-01T00:00:00Z", "BilledCost": "2.00"},
            {"BillingPeriodStart": "2025-01-01T00:00:00Z", "BilledCost": "3.00"},
        ]
    )

    receipt = ingest(path, source="aws")

    assert receipt["periods"] == ["2024-12", "2025-01"]
    assert billed_total(period__key="2024-12") == D("1.00")
    assert billed_total(period__key="2025-01") == D("5.00")
    assert Charge.objects.filter(flags__gt=0).count() == 0


def test_replacing_a_multi_month_file_replaces_only_its_months(ingest, write_focus):
    ingest(
        write_focus([{"BillingPeriodStart": "2024-12-01", "BilledCost": "9.00"}], name="dec.csv"),
        source="aws",
    )
    ingest(write_focus([{"BilledCost": "1.00"}], name="jan.csv"), source="aws")

    ingest(write_focus([{"BilledCost": "2.00"}], name="jan2.csv"), source="aws")

    assert billed_total(period__key="2024-12") == D("9.00")
    assert billed_total(period__key="2025-01") == D("2.00")


def test_unknown_x_columns_are_kept_in_extra(ingest, write_focus):
    columns = ["BillingPeriodStart", "BilledCost", "Tags", "x_CostCenter", "x_Weird Column"]
    path = write_focus([{"x_CostCenter": "CC-7", "x_Weird Column": "a,b"}], columns=columns)

    ingest(path, source="aws")

    assert only_charge().extra == {"x_CostCenter": "CC-7", "x_Weird Column": "a,b"}


@pytest.mark.parametrize(
    ("text", "expected", "period"),
    [
        ("2025-01-01", datetime(2025, 1, 1, tzinfo=UTC), "2025-01"),
        ("2025-01-01T00:00:00Z", datetime(2025, 1, 1, tzinfo=UTC), "2025-01"),
        ("2024-09-01 00:00:00", datetime(2024, 9, 1, tzinfo=UTC), "2024-09"),
        ("2025-01-01T00:00:00.123Z", datetime(2025, 1, 1, 0, 0, 0, 123000, tzinfo=UTC), "2025-01"),
        (
            "2025-01-01T00:00:00.1234567890Z",
            datetime(2025, 1, 1, 0, 0, 0, 123456, tzinfo=UTC),
            "2025-01",
        ),
        ("2025-01-01T00:00:00+00:00", datetime(2025, 1, 1, tzinfo=UTC), "2025-01"),
        # Stored in UTC: this instant is the evening of 31 January there.
        ("2025-02-01T03:00:00+05:00", datetime(2025, 1, 31, 22, tzinfo=UTC), "2025-01"),
    ],
)
def test_date_formats(ingest, write_focus, text, expected, period):
    ingest(write_focus([{"BillingPeriodStart": text}]), source="aws")

    charge = only_charge()
    assert charge.billing_period_start == expected
    assert charge.period.key == period


# -- 8. refusals ------------------------------------------------------------------------------


@pytest.fixture
def existing(ingest, sample_dir):
    """Some data already imported, so a refusal can be shown to leave it exactly as it was."""
    ingest(sample_dir / "azure_2025-01.csv", source="azure")
    ingest(sample_dir / "aws_2025-01.csv", source="aws")
    return db_state()


def assert_refused(run, config_path, path, source="aws", extra=()) -> str:
    return refused(run, "ingest", path, "-s", source, "-c", config_path, *extra)


def test_a_pi_deleted_while_the_import_runs_refuses_it(
    run, config_path, write_focus, existing, monkeypatch
):
    """Charge.pi has no database-level foreign key: the importer holds every PI and project
    it used before commit, and refuses when one has gone (a concurrent delete)."""
    from billing.ingest import pipeline
    from billing.models import PI

    ingest_args = (write_focus([{"Tags": GOOD_TAGS}]), "-s", "aws", "-c", config_path)
    run("ingest", *ingest_args)
    before = db_state()
    ada = PI.objects.get(email="ada@example.edu")
    real_hold = pipeline.hold_referenced

    def hold_after_a_delete(model, ids):
        if model is PI:
            with connection.cursor() as cursor:  # another session's delete, as if committed
                cursor.execute("DELETE FROM billing_pi WHERE id = %s", [ada.pk])
        return real_hold(model, ids)

    monkeypatch.setattr(pipeline, "hold_referenced", hold_after_a_delete)
    path = write_focus([{"Tags": GOOD_TAGS, "BilledCost": "3.00"}], name="second.csv")

    message = refused(run, "ingest", path, "-s", "aws", "-c", config_path)

    assert f"1 PI(s) (ids {ada.pk})" in message and "deleted while this import ran" in message
    assert db_state() == before
    assert PI.objects.filter(pk=ada.pk).exists()


def test_hold_referenced_names_only_the_missing_rows(db):
    from billing.locking import hold_referenced
    from billing.models import PI

    kept = PI.objects.create(email="kept@example.edu")

    assert hold_referenced(PI, [kept.pk, None]) == set()
    assert hold_referenced(PI, [kept.pk, kept.pk + 1000]) == {kept.pk + 1000}


def test_missing_billed_cost_column_is_refused(run, config_path, write_file, existing):
    path = write_file("nobilled.csv", "BillingPeriodStart,ListCost\n2025-01-01,3.00\n")

    message = assert_refused(run, config_path, path)

    assert "nobilled.csv" in message
    assert "BilledCost" in message
    assert db_state() == existing


@pytest.mark.parametrize(
    "cost", ["abc", "NaN", "Infinity", "-Infinity", "1,000.00", "1e400", "$5.00", "1_000"]
)
def test_bad_cost_is_refused_with_file_line_and_column(
    run, config_path, write_focus, existing, cost
):
    path = write_focus([{"BilledCost": "1.00"}, {"BilledCost": cost}], name="bad_cost.csv")

    message = assert_refused(run, config_path, path)

    assert "bad_cost.csv line 3, column BilledCost" in message
    assert cost in message
    assert db_state() == existing


def test_bad_list_cost_is_refused_too(run, config_path, write_focus, existing):
    path = write_focus([{"ListCost": "12.00 USD"}], name="bad_list.csv")

    message = assert_refused(run, config_path, path)

    assert "bad_list.csv line 2, column ListCost" in message
    assert db_state() == existing


def test_empty_billed_cost_is_refused(run, config_path, write_focus, existing):
    path = write_focus([{"BilledCost": ""}], name="empty_cost.csv")

    message = assert_refused(run, config_path, path)

    assert "empty_cost.csv line 2, column BilledCost" in message
    assert db_state() == existing


@pytest.mark.parametrize("value", ["January 2025", "2025-13-01", "2025-01-32", "1999-12-01"])
def test_unparseable_date_is_refused(run, config_path, write_focus, existing, value):
    path = write_focus([{}, {}, {"BillingPeriodStart": value}], name="bad_date.csv")

    message = assert_refused(run, config_path, path)

    assert "bad_date.csv line 4, column BillingPeriodStart" in message
    assert value in message
    assert db_state() == existing


def test_empty_billing_period_start_is_refused(run, config_path, write_focus, existing):
    path = write_focus([{"BillingPeriodStart": ""}], name="no_start.csv")

    message = assert_refused(run, config_path, path)

    assert "no_start.csv line 2, column BillingPeriodStart" in message
    assert db_state() == existing


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "empty"),
        (b"\n\n", "empty"),
        (focus_text([]).encode(), "no rows"),
        (bytes(range(256)) * 4, "not a CSV"),
        (b"\x89PNG\r\n\x1a\n" + bytes(200), "not a CSV"),
        (b"just one line of prose\nand another\n", "not a FOCUS"),
        ("BillingPeriodStart,BilledCost\n2025-01-01,caf\xe9\n".encode("latin-1"), "UTF-8"),
    ],
    ids=["empty", "blank-lines", "header-only", "binary", "png", "prose", "latin-1"],
)
def test_unreadable_files_are_refused(run, config_path, write_file, existing, content, words):
    path = write_file("delivery.csv", content)

    message = assert_refused(run, config_path, path)

    assert "delivery.csv" in message
    assert words in message
    assert db_state() == existing


RAGGED_ROW = "2025-01-01,2025-02-01,1.00,1.00,USD,Compute,vm-9,,{},EXTRA\n"


def test_row_with_wrong_number_of_fields_is_refused(run, config_path, write_file, existing):
    path = write_file("ragged.csv", focus_text([{}, {}]) + RAGGED_ROW)

    message = assert_refused(run, config_path, path)

    assert "ragged.csv" in message
    assert "expected 9 columns, found 10" in message
    assert db_state() == existing


def test_row_with_wrong_number_of_fields_names_its_line(run, config_path, write_file, existing):
    path = write_file("ragged.csv", focus_text([{}, {}]) + RAGGED_ROW)

    message = assert_refused(run, config_path, path)

    assert "ragged.csv line 4" in message or "ragged.csv: line 4" in message


def test_lines_after_a_ragged_row_keep_their_numbers(run, config_path, write_file, existing):
    text = (
        focus_text([{}, {}]) + RAGGED_ROW + focus_text([{"BilledCost": "oops"}]).split("\n", 1)[1]
    )
    path = write_file("ragged_then_bad.csv", text)

    message = assert_refused(run, config_path, path)

    assert "ragged_then_bad.csv line 5, column BilledCost" in message


def test_repeated_bad_cost_is_reported_on_every_line(run, config_path, write_focus, existing):
    path = write_focus([{"BilledCost": "n/a"}, {}, {"BilledCost": "n/a"}], name="repeat.csv")

    message = assert_refused(run, config_path, path)

    assert "repeat.csv line 2, column BilledCost" in message
    assert "repeat.csv line 4, column BilledCost" in message
    assert message.startswith("refused: 2 value(s)")


def test_bad_currency_code_is_refused(run, config_path, write_focus, existing):
    path = write_focus([{"BillingCurrency": "US Dollars"}], name="cur.csv")

    message = assert_refused(run, config_path, path)

    assert "cur.csv line 2, column BillingCurrency" in message
    assert db_state() == existing


def test_duplicate_column_is_refused(run, config_path, write_file, existing):
    text = "BillingPeriodStart,BilledCost,billedcost\n2025-01-01,1.00,2.00\n"

    message = assert_refused(run, config_path, write_file("dup.csv", text))

    assert "dup.csv" in message
    assert "appears twice" in message
    assert db_state() == existing


def test_closed_period_refuses_imports(run, config_path, write_focus, existing):
    run("periods", "close", "2025-01")
    closed = db_state()
    path = write_focus([{}], name="late.csv")

    for extra in ((), ("-p", "2025-01")):
        message = assert_refused(run, config_path, path, extra=extra)
        assert "2025-01" in message
        assert "closed" in message
        assert db_state() == closed


def test_closed_period_refuses_a_file_mixing_open_and_closed_months(
    run, config_path, write_focus, existing
):
    run("periods", "close", "2025-01")
    closed = db_state()
    path = write_focus(
        [{"BillingPeriodStart": "2025-02-01"}, {"BillingPeriodStart": "2025-01-01"}],
        name="mixed.csv",
    )

    # Without -p the file claims both months, and January is closed: refused, nothing written.
    message = assert_refused(run, config_path, path)

    assert "2025-01" in message
    assert db_state() == closed


def test_unknown_source_is_refused(run, config_path, write_focus, existing):
    message = assert_refused(run, config_path, write_focus([{}]), source="gcp")

    assert "gcp" in message
    assert "aws" in message  # the known sources are named
    assert db_state() == existing


def test_bad_period_argument_is_refused(run, config_path, write_focus, existing):
    message = assert_refused(run, config_path, write_focus([{}]), extra=("-p", "2025-1"))

    assert "YYYY-MM" in message
    assert db_state() == existing


def test_missing_file_is_refused(run, config_path, tmp_path, existing):
    message = assert_refused(run, config_path, tmp_path / "nowhere.csv")

    assert "nowhere.csv" in message
    assert db_state() == existing


def test_one_bad_file_among_good_ones_writes_nothing(run, config_path, write_focus, existing):
    good1 = write_focus([{"BillingPeriodStart": "2025-02-01"}] * 3, name="good1.csv")
    bad = write_focus([{"BillingPeriodStart": "2025-02-01", "BilledCost": "n/a"}], name="bad.csv")
    good2 = write_focus([{"BillingPeriodStart": "2025-03-01"}], name="good2.csv")

    message = refused(run, "ingest", good1, bad, good2, "-s", "aws", "-c", config_path)

    assert "bad.csv line 2, column BilledCost" in message
    assert "good1.csv" not in message
    assert db_state() == existing
    assert not BillingPeriod.objects.filter(key__in=["2025-02", "2025-03"]).exists()


def test_at_most_twenty_problems_are_listed(run, config_path, write_focus, existing):
    path = write_focus([{"BilledCost": f"bad{i}"} for i in range(30)], name="many.csv")

    message = assert_refused(run, config_path, path)

    listed = [line for line in message.splitlines() if "column BilledCost" in line]
    assert len(listed) == 20
    assert "many.csv line 21, column BilledCost" in message
    assert "line 22," not in message
    assert "30" in message.splitlines()[0]
    assert "10 more" in message
    assert db_state() == existing


# -- 9. dry run -------------------------------------------------------------------------------


def test_dry_run_writes_nothing_and_reports_what_would_happen(ingest, sample_dir):
    receipt = ingest(sample_dir / "aws_2025-01.csv", source="aws", extra=("--dry-run",))

    assert receipt["status"] == "dry-run"
    assert receipt["would_be"] == "imported"
    assert receipt["import_id"] is None
    assert receipt["rows_read"] == 25
    assert receipt["rows_added"] == 25
    assert D(receipt["totals"]["USD"]["billed"]) == D("19086.75")
    assert db_state() == {
        "charges": 0,
        "imports": 0,
        "import_files": 0,
        "periods": [],
        "pis": 0,
        "projects": 0,
        "audit_events": 0,
        "billed": None,
        "list": None,
        "statuses": [],
    }


def test_dry_run_of_a_restatement_shows_the_change_and_keeps_the_data(
    ingest, run, config_path, sample_dir, tmp_path
):
    ingest(sample_dir / "aws_2025-01.csv", source="aws")
    before = db_state()
    header, rows = read_rows(sample_dir / "aws_2025-01.csv")
    write_rows(tmp_path / "aws_fewer.csv", header, rows[1:])

    receipt = ingest(tmp_path / "aws_fewer.csv", source="aws", extra=("--dry-run",))
    out = run("ingest", tmp_path / "aws_fewer.csv", "-s", "aws", "-c", config_path, "--dry-run")

    assert receipt["status"] == "dry-run"
    assert receipt["would_be"] == "replaced"
    assert receipt["rows_removed"] == 1
    assert D(receipt["billed_change"]["USD"]) == D("-1062.50")
    assert "dry run (would be replaced); nothing written" in out
    assert "-1,062.50" in out
    assert db_state() == before
