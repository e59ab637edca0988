"""Strict input (issue 11, item 7): what the importer must refuse, flag or read as null, each
refusal naming file, line and column, never a traceback; run on SQLite and PostgreSQL (several
of these crashed only PostgreSQL). Every file is generated here."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal as D

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management.base import CommandError

from billing.models import Charge, Flag, ImportJob
from billing.money import cents_text, money_text, round_cents

from .conftest import FOCUS_COLUMNS, GOOD_TAGS, db_state, focus_text

pytestmark = pytest.mark.django_db


def refused(run, config_path, path, *extra) -> str:
    with pytest.raises(CommandError) as info:
        run("ingest", path, "-s", "aws", "-c", config_path, *extra)
    return str(info.value)


@pytest.fixture
def before(ingest, write_focus):
    """One good delivery already imported: a refusal must leave it exactly as it was."""
    ingest(write_focus([{"ResourceId": "kept"}], name="earlier.csv"), source="azure")
    return db_state()


# -- numbers: ASCII digits only -----------------------------------------------------------


@pytest.mark.parametrize(
    "cost",
    ["１０.５０", "١٢٣", "1٢.00", "-１", "１E2"],
    ids=["fullwidth", "arabic", "mixed", "neg", "e"],
)
def test_digits_of_other_scripts_are_refused(run, config_path, write_focus, before, cost):
    path = write_focus([{}, {"BilledCost": cost}], name="digits.csv")

    message = refused(run, config_path, path)

    assert "digits.csv line 3, column BilledCost" in message
    assert "ASCII digits" in message
    assert db_state() == before


def test_other_digits_in_a_quantity_are_refused_too(run, config_path, write_focus, before):
    columns = [*FOCUS_COLUMNS, "ConsumedQuantity"]
    path = write_focus([{"ConsumedQuantity": "٣"}], name="qty.csv", columns=columns)

    message = refused(run, config_path, path)

    assert "qty.csv line 2, column ConsumedQuantity" in message
    assert db_state() == before


# -- dates: months in UTC, end before start flagged ---------------------------------------


def test_a_timestamp_is_given_its_month_in_utc(ingest, write_focus):
    path = write_focus(
        [
            {"BillingPeriodStart": "2025-01-01T00:30:00+01:00", "BilledCost": "3.00"},
            {"BilledCost": "5.00"},
        ]
    )

    receipt = ingest(path, source="aws", extra=("-p", "2025-01"))

    # 2024-12-31 23:30 UTC: a December row, flagged; billed in the month delivered (-p).
    assert receipt["periods"] == ["2025-01"]
    december = Charge.objects.get(billed_cost=D("3.00"))
    assert december.flags & Flag.OTHER_PERIOD
    assert december.period.key == "2025-01"
    assert december.billing_period_start.isoformat() == "2024-12-31T23:30:00+00:00"


@pytest.mark.parametrize(
    ("row", "flagged"),
    [
        ({"BillingPeriodEnd": "2024-12-01T00:00:00Z"}, True),
        ({"BillingPeriodEnd": "2025-01-01T00:00:00Z"}, False),  # zero length: not before
        (
            {
                "ChargePeriodStart": "2025-01-05T10:00:00Z",
                "ChargePeriodEnd": "2025-01-05T09:00:00Z",
            },
            True,
        ),
        (
            {
                "ChargePeriodStart": "2025-01-05T10:00:00Z",
                "ChargePeriodEnd": "2025-01-05T11:00:00Z",
            },
            False,
        ),
        (
            {
                "ChargePeriodStart": "2025-01-05T10:00:00+02:00",
                "ChargePeriodEnd": "2025-01-05T09:00:00Z",
            },
            False,
        ),
    ],
    ids=["billing-before", "billing-equal", "charge-before", "charge-after", "charge-utc"],
)
def test_a_period_that_ends_before_it_starts_is_flagged(ingest, write_focus, row, flagged):
    columns = [*FOCUS_COLUMNS, "ChargePeriodStart", "ChargePeriodEnd"]
    path = write_focus([{"ResourceId": "good"}, {"ResourceId": "odd", **row}], columns=columns)

    ingest(path, source="aws")

    odd = Charge.objects.get(resource_id="odd")
    assert bool(odd.flags & Flag.DATES) is flagged
    assert (odd.review_status == "flagged") is flagged
    assert not Charge.objects.get(resource_id="good").flags & Flag.DATES
    assert Flag.DATES.label == "A period ends before it starts"


# -- null in any letter case ---------------------------------------------------------------


@pytest.mark.parametrize("null", ["null", "Null", "NULL", "nULl"])
def test_the_text_null_is_null_in_any_case(ingest, write_file, null):
    text = (
        "BillingPeriodStart,BilledCost,ListCost,ConsumedQuantity,ResourceId,x_Note,Tags\n"
        f"2025-01-01,1.00,{null},{null},{null},{null},{null}\n"
    )

    ingest(write_file("nulls.csv", text), source="aws")

    charge = Charge.objects.get()
    assert charge.list_cost is None
    assert charge.consumed_quantity is None
    assert charge.resource_id == ""
    assert charge.tags is None
    assert charge.extra == {}


def test_the_text_null_is_null_in_parquet_too(ingest, tmp_path):
    table = pa.table(
        {
            "BillingPeriodStart": ["2025-01-01T00:00:00Z"],
            "BilledCost": ["2.00"],
            "ConsumedQuantity": ["null"],
            "Tags": ["Null"],
        }
    )
    path = tmp_path / "nulls.parquet"
    pq.write_table(table, path)

    ingest(path, source="aws")

    charge = Charge.objects.get()
    assert charge.consumed_quantity is None
    assert charge.tags is None


# -- no traceback from any file ------------------------------------------------------------


def test_tags_nested_200000_deep_are_refused(run, config_path, write_focus, before):
    deep = '{"a":' * 200_000 + "1" + "}" * 200_000
    path = write_focus([{}, {"Tags": deep}], name="deep.csv")

    message = refused(run, config_path, path)

    assert "deep.csv line 3, column Tags" in message
    assert "nested more than 32 levels" in message
    assert db_state() == before


def test_tags_nested_a_little_too_deep_are_refused(run, config_path, write_focus, before):
    path = write_focus([{"Tags": '{"a":' * 40 + "1" + "}" * 40}], name="deep.csv")

    message = refused(run, config_path, path)

    assert "deep.csv line 2, column Tags" in message
    assert db_state() == before


@pytest.mark.parametrize(
    ("escape", "words"),
    [("\\ud800", "\\ud800"), ("x\\udfffy", "\\udfff"), ("\\u0000", "NUL")],
    ids=["high", "low", "nul"],
)
def test_tags_no_database_can_store_are_refused(
    run, config_path, write_focus, before, escape, words
):
    tags = '{"pi_email": "ada@example.edu", "note": "' + escape + '"}'
    path = write_focus([{}, {}, {"Tags": tags}], name="tags.csv")

    message = refused(run, config_path, path)

    assert "tags.csv line 4, column Tags" in message
    assert words in message
    message.encode("utf-8")  # the message itself can be shown (the 500 page crashed on it)
    assert db_state() == before


def test_a_surrogate_pair_in_tags_is_a_character_and_imports(ingest, write_focus):
    tags = json.dumps({**json.loads(GOOD_TAGS), "note": "\U0001f600"}, ensure_ascii=True)
    assert "\\ud83d" in tags

    ingest(write_focus([{"Tags": tags}]), source="aws")

    assert Charge.objects.get().tags["note"] == "\U0001f600"


def test_a_nul_byte_after_the_first_megabyte_is_refused(run, config_path, write_file, before):
    rows = [{"ResourceId": f"vm-{i}"} for i in range(12_000)]  # ~1.3 MB
    text = focus_text(rows) + focus_text([{"ResourceId": "bad\x00id"}]).split("\n", 1)[1]
    assert len(text) > 1 << 20
    path = write_file("nul.csv", text)

    message = refused(run, config_path, path)

    assert "nul.csv line 12002, column ResourceId" in message
    assert "NUL" in message
    assert db_state() == before


def test_a_nul_in_an_extra_column_is_refused(run, config_path, write_file, before):
    columns = [*FOCUS_COLUMNS, "x_Note"]
    rows = [{"ResourceId": f"vm-{i}"} for i in range(12_000)] + [{"x_Note": "a\x00b"}]
    path = write_file("nul.csv", focus_text(rows, columns))

    message = refused(run, config_path, path)

    assert "nul.csv line 12002, column x_Note" in message
    assert db_state() == before


def test_a_row_over_16_mb_is_refused_naming_its_line(run, config_path, write_file, before):
    text = focus_text([{}, {"ResourceId": "x" * (17 << 20)}, {}])
    path = write_file("long.csv", text)

    message = refused(run, config_path, path)

    assert "long.csv" in message
    assert "line 3: a row over 8 MB" in message
    assert "straddl" not in message
    assert db_state() == before


def test_an_unterminated_quote_says_where_it_starts(run, config_path, write_file, before):
    text = (
        focus_text([{}, {}])
        + '2025-01-01,2025-02-01,"1.00,1.00,USD,C,vm,,{}\n'
        + focus_text([{}, {}]).split("\n", 1)[1]
    )
    path = write_file("quote.csv", text)

    message = refused(run, config_path, path)

    assert "quote.csv" in message
    assert "unterminated quote starting on line 4" in message
    assert "expected 9 columns" not in message
    assert db_state() == before


@pytest.mark.parametrize("gz", [False, True], ids=["csv", "csv.gz"])
def test_latin1_input_names_its_line(run, config_path, write_file, before, gz):
    text = focus_text([{"ResourceId": f"vm-{i}"} for i in range(5)])
    text += focus_text([{"ResourceId": "café"}]).split("\n", 1)[1]
    data = text.encode("latin-1")
    path = write_file("latin1.csv.gz" if gz else "latin1.csv", gzip.compress(data) if gz else data)

    message = refused(run, config_path, path)

    assert "not UTF-8 text: line 7, byte" in message
    assert "0xe9" in message
    assert db_state() == before


def test_latin1_in_the_header_block_names_its_line(run, config_path, write_file, before):
    data = focus_text([{}, {"ResourceId": "Zürich"}]).encode("latin-1")
    path = write_file("latin1.csv", data)

    message = refused(run, config_path, path)

    assert "not UTF-8 text: line 3" in message
    assert db_state() == before


# -- the admin upload ends in a clear refusal for each ----------------------------------------

HOSTILE = {
    "deep": lambda: focus_text([{"Tags": '{"a":' * 200_000 + "1" + "}" * 200_000}]),
    "surrogate": lambda: focus_text([{"Tags": '{"a": "\\ud800"}'}]),
    "nul-tags": lambda: focus_text([{"Tags": '{"a": "\\u0000"}'}]),
    "digits": lambda: focus_text([{"BilledCost": "１０.５０"}]),
    "quote": lambda: focus_text([{}]) + '2025-01-01,2025-02-01,"1.00,1,USD,C,vm,,{}\n',
    "latin1": lambda: focus_text([{"ResourceId": "café"}]).encode("latin-1"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_the_admin_upload_refuses_each_clearly(admin_client, settings, config_path, tmp_path, kind):
    from django.core.cache import cache

    settings.OPENCHARGEBACK_CONFIG = config_path
    settings.MEDIA_ROOT = tmp_path / "media"
    cache.clear()
    content = HOSTILE[kind]()
    path = tmp_path / "aws_hostile.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))

    with open(path, "rb") as handle:
        response = admin_client.post(
            "/admin/billing/importjob/upload/",
            {"files": [handle], "source": "", "period": ""},
            follow=True,
        )

    assert response.status_code == 200
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.FAILED
    html = response.content.decode()
    assert "Refused: nothing was imported." in html
    assert "aws_hostile.csv" in html
    assert Charge.objects.count() == 0


def test_an_unexpected_error_fails_the_upload_instead_of_leaving_it_checking(
    admin_client, settings, config_path, tmp_path, monkeypatch
):
    from django.core.cache import cache

    from billing.ingest import pipeline

    settings.OPENCHARGEBACK_CONFIG = config_path
    settings.MEDIA_ROOT = tmp_path / "media"
    cache.clear()

    def broken(**kwargs):
        raise RuntimeError("a defect")

    # uploads imports the pipeline's import_files when it runs a job (billing/services/uploads.py)
    monkeypatch.setattr(pipeline, "import_files", broken)
    path = tmp_path / "aws_fine.csv"
    path.write_text(focus_text([{}]), encoding="utf-8")

    with open(path, "rb") as handle:
        response = admin_client.post(
            "/admin/billing/importjob/upload/",
            {"files": [handle], "source": "", "period": ""},
            follow=True,
        )

    assert response.status_code == 200
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.FAILED
    assert "RuntimeError" in job.error


# -- never -0.00 ---------------------------------------------------------------------------


def test_a_sum_that_rounds_to_zero_prints_0_00():
    assert str(round_cents(D("-0.004"))) == "0.00"
    assert cents_text(D("-0.004")) == "0.00"
    assert cents_text(D("-1234.005")) == "-1,234.01"
    assert money_text(round_cents(D("-0.004"))) == "0.00"
    assert money_text(D("-0.0")) == "0.0"
    assert money_text(D("-0.004")) == "-0.004"  # exact figures keep their sign


def test_the_statement_pdf_money_never_shows_minus_zero():
    from statements.figures import percent_text
    from statements.pdf import money

    assert money(D("-0.004")) == "0.00"
    assert money(D("-0.00")) == "0.00"
    assert "-0.00" not in percent_text(D("-0.00004"), D("1000"), D("1000.00004"))
