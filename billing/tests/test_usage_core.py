"""The usage core: rate cards (YAML, admin rules), pricing by date with allowance and subsidy,
and the FOCUS rows it writes, imported by the ordinary importer. Every figure is worked by hand
in the test."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, transaction

from accounts.models import AuditEvent
from billing.models import Charge, Rate, Source
from billing.services import import_files
from billing.services.rates import RateError, rate_save
from billing.usage import Conversion
from billing.usage.focus import COLUMNS
from billing.usage.pricing import PricingError, RateCard, RateSpec, decimal_text, price
from billing.usage.records import UsageRecord

D = Decimal
NOV = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
ADA = {"pi_email": "ada@example.edu", "project_id": "engines", "fund_org": "MATH-1843"}


def at(day, hour=0):
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def cpu(start, end, hours, account="ada", tags=ADA, key="standard"):
    quantity = hours if isinstance(hours, Fraction) else D(hours)
    return UsageRecord(start, end, account, "hpc-cpu", key, quantity, "core-hour", dict(tags))


def test_rate_change_mid_month_splits_a_record_by_time():
    # 0.02 until 16 November, 0.035 from then on. One record of 48 core-hours from
    # 15 Nov 12:00 to 17 Nov 12:00: 12 h before the change, 36 h after, so 12 and 36 core-hours.
    card = RateCard(
        [
            RateSpec("hpc-cpu", "standard", "core-hour", date(2026, 11, 1), D("0.02")),
            RateSpec("hpc-cpu", "standard", "core-hour", date(2026, 11, 16), D("0.035")),
        ]
    )
    priced = price(
        [cpu(at(15, 12), at(17, 12), 48)], card=card, period_start=NOV[0], period_end=NOV[1]
    )
    lines = [(ln.record.start, ln.quantity, ln.list_cost, ln.billed_cost) for ln in priced.lines]
    assert lines == [
        (at(15, 12), 12, Fraction("0.24"), Fraction("0.24")),  # 12 × 0.02
        (at(16), 36, Fraction("1.26"), Fraction("1.26")),  # 36 × 0.035
    ]


def test_allowance_runs_out_mid_month_then_the_percentage_applies():
    # 10 core-hours free per PI per month, then 25 % subsidy, at 0.04 per core-hour.
    # Three records in time order: 6 h (all free), 8 h (4 free, 4 paid), 5 h (all paid).
    rate = RateSpec(
        "hpc-cpu",
        "standard",
        "core-hour",
        date(2026, 1, 1),
        D("0.04"),
        subsidy_percent=D(25),
        allowance_quantity=D(10),
        allowance_per="pi",
    )
    records = [cpu(at(20), at(21), 5), cpu(at(2), at(3), 6), cpu(at(9), at(10), 8)]
    priced = price(records, card=RateCard([rate]), period_start=NOV[0], period_end=NOV[1])
    got = [
        (
            ln.record.start.day,
            ln.allowance_quantity,
            ln.list_cost,
            ln.allowance_amount,
            ln.subsidy_amount,
            ln.billed_cost,
        )
        for ln in priced.lines
    ]
    F = Fraction
    assert got == [
        # list 6 × 0.04 = 0.24, all of it the allowance; nothing left for the percentage.
        (2, 6, F("0.24"), F("0.24"), 0, 0),
        # list 0.32; allowance 4 × 0.04 = 0.16; subsidy 25 % of 0.16 = 0.04; billed 0.12.
        (9, 4, F("0.32"), F("0.16"), F("0.04"), F("0.12")),
        # list 0.20; subsidy 0.05; billed 0.15.
        (20, 0, F("0.20"), 0, F("0.05"), F("0.15")),
    ]
    assert priced.summary()["allowances"] == [
        {
            "service": "hpc-cpu",
            "key": "standard",
            "unit": "core-hour",
            "holder": "pi:ada@example.edu",
            "quantity_included": "10",
        }
    ]


def test_an_unknown_account_has_an_allowance_of_its_own():
    rate = RateSpec(
        "hpc-cpu",
        "standard",
        "core-hour",
        date(2026, 1, 1),
        D("1"),
        allowance_quantity=D(3),
        allowance_per="project",
    )
    records = [
        cpu(at(2), at(3), 2, account="x", tags={}),
        cpu(at(4), at(5), 2, account="y", tags={}),
    ]
    priced = price(records, card=RateCard([rate]), period_start=NOV[0], period_end=NOV[1])
    assert [ln.billed_cost for ln in priced.lines] == [0, 0]


def test_refusals_name_what_is_missing():
    card = RateCard([RateSpec("hpc-cpu", "standard", "core-hour", date(2026, 11, 5), D("1"))])
    with pytest.raises(PricingError, match=r"no rate for hpc-cpu/gpu \(per core-hour\)"):
        price([cpu(at(6), at(7), 1, key="gpu")], card=card, period_start=NOV[0], period_end=NOV[1])
    wrong_unit = UsageRecord(at(6), at(7), "a", "hpc-cpu", "standard", D(1), "node-hour")
    with pytest.raises(
        PricingError, match="unit mismatch: .* node-hour, its rate is per core-hour"
    ):
        price([wrong_unit], card=card, period_start=NOV[0], period_end=NOV[1])
    with pytest.raises(PricingError, match="first applies from 2026-11-05"):
        price([cpu(at(2), at(3), 1)], card=card, period_start=NOV[0], period_end=NOV[1])
    with pytest.raises(PricingError, match="outside 2026-11"):
        price(
            [cpu(at(30), datetime(2026, 12, 1, 1, tzinfo=UTC), 1)],
            card=card,
            period_start=NOV[0],
            period_end=NOV[1],
        )
    with pytest.raises(PricingError, match="two rates for hpc-cpu/standard"):
        RateCard([card.rates[0], card.rates[0]])


def test_decimal_text_is_exact_or_twenty_places():
    assert decimal_text(Fraction(1, 8)) == "0.125"
    assert decimal_text(Fraction(1, 3)) == "0.33333333333333333333"
    assert decimal_text(Fraction(2, 3)) == "0.66666666666666666667"
    assert decimal_text(Fraction(-5, 2)) == "-2.5"
    assert decimal_text(0) == "0"


RATE_FILE = """\
currency: USD
rates:
  - service: hpc-cpu
    key: standard
    unit: core-hour
    effective_from: 2026-11-01
    list_price: 0.02
    allowance: 10000
    allowance_per: pi
    description: first 10,000 core-hours included
  - service: hpc-gpu
    key: a100
    unit: gpu-hour
    effective_from: 2026-11-01
    list_price: 1.10
    subsidy_percent: 100
"""


@pytest.mark.django_db
def test_rates_load_from_yaml_is_exact_audited_and_refuses_a_clash(tmp_path):
    path = tmp_path / "rates.yaml"
    path.write_text(RATE_FILE)
    out = io.StringIO()
    call_command("rates", "load", str(path), stdout=out)
    assert "2 added, 0 changed, 0 unchanged" in out.getvalue()
    cpu_rate = Rate.objects.get(service="hpc-cpu")
    assert cpu_rate.list_price == D("0.02") and str(cpu_rate.list_price) == "0.02"
    assert cpu_rate.allowance_quantity == 10000 and cpu_rate.allowance_per == "pi"
    assert AuditEvent.objects.filter(action="rate.create").count() == 2

    call_command("rates", "load", str(path), stdout=out)  # the same file again: unchanged
    assert "0 added, 0 changed, 2 unchanged" in out.getvalue()

    path.write_text(RATE_FILE.replace("list_price: 0.02", "list_price: 0.025"))
    with pytest.raises(CommandError, match=rf"rate #{cpu_rate.pk} \(0.02 USD\) and rate 1 in"):
        call_command("rates", "load", str(path), stdout=out)
    call_command("rates", "load", str(path), "--update", stdout=out)
    cpu_rate.refresh_from_db()
    assert cpu_rate.list_price == D("0.025")
    assert AuditEvent.objects.filter(action="rate.change").count() == 1

    listing = io.StringIO()
    call_command("rates", "list", stdout=listing)
    assert "hpc-gpu/a100 from 2026-11-01: 1.10 USD per gpu-hour, subsidy 100%" in listing.getvalue()


@pytest.mark.django_db
def test_a_rate_that_clashes_says_which_terms_differ_as_the_file_writes_them(tmp_path):
    path = tmp_path / "rates.yaml"
    path.write_text(RATE_FILE)
    call_command("rates", "load", str(path), stdout=io.StringIO())
    path.write_text(RATE_FILE.replace("allowance: 10000", "allowance: 20000.0"))
    with pytest.raises(CommandError) as refused:
        call_command("rates", "load", str(path), stdout=io.StringIO())
    message = str(refused.value)
    assert "they differ in allowance 10000 → 20000; use --update" in message
    assert "allowance_quantity" not in message

    path.write_text(RATE_FILE.replace("subsidy_percent: 100", "subsidy_percent: 50"))
    with pytest.raises(CommandError, match=r"rate 2 in .*they differ in subsidy_percent 100 → 50;"):
        call_command("rates", "load", str(path), stdout=io.StringIO())
    assert Rate.objects.get(service="hpc-gpu").subsidy_percent == 100


@pytest.mark.django_db
def test_a_rate_keeps_an_allowance_of_many_places_exactly_and_refuses_one_beyond_the_limit(
    tmp_path,
):
    # The earlier tool's 500 free GB per project, counted in GiB: 500 × 2^30 bytes in TB.
    path = tmp_path / "rates.yaml"
    storage = (
        "rates:\n  - {service: storage, key: standard, unit: TB-month, effective_from: 2026-01-01,"
        " list_price: 9.094947017729282379150390625, allowance: %s, allowance_per: project,"
        " multiplier: %s}\n"
    )
    path.write_text(storage % ("0.536870912", "1.000000000000000000000000000001"))
    call_command("rates", "load", str(path), stdout=io.StringIO())
    rate = Rate.objects.get()
    assert rate.allowance_quantity == D("0.536870912")
    assert rate.multiplier == D("1.000000000000000000000000000001")
    # Priced from the database: 1 TB-month, the allowance covers 0.536870912 of it, exactly.
    priced = price(
        [UsageRecord(
            datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC), "/data/x",
            "storage", "standard", Fraction(1), "TB-month", {"project_id": "x"},
        )],
        card=RateCard.from_database(),
        period_start=datetime(2026, 1, 1, tzinfo=UTC),
        period_end=datetime(2026, 2, 1, tzinfo=UTC),
    )  # fmt: skip
    assert priced.lines[0].allowance_quantity == Fraction(D("0.536870912"))
    listing = io.StringIO()
    call_command("rates", "list", stdout=listing)
    assert "first 0.536870912 TB-months project/month free" in listing.getvalue()

    path.write_text(storage % ("0." + "1" * 31, "1"))
    with pytest.raises(CommandError, match=r"rate 1: allowance out of range \(30 decimal places"):
        call_command("rates", "load", str(path), "--update", stdout=io.StringIO())
    path.write_text(storage.replace("allowance_per: project", "allowance_per: project,"
                                    " subsidy_percent: 12.345") % ("1", "1"))  # fmt: skip
    with pytest.raises(CommandError, match="subsidy_percent has at most 2 decimal places"):
        call_command("rates", "load", str(path), "--update", stdout=io.StringIO())
    assert Rate.objects.get().allowance_quantity == D("0.536870912")


@pytest.mark.django_db
def test_rates_list_prints_exact_amounts_without_padding_zeros(tmp_path):
    path = tmp_path / "rates.yaml"
    path.write_text(
        RATE_FILE.replace("subsidy_percent: 100", "subsidy_percent: 12.5\n    multiplier: 2.5")
    )
    call_command("rates", "load", str(path), stdout=io.StringIO())
    Rate.objects.filter(service="hpc-cpu").update(subsidy_percent=D("0"))  # a 2-place column
    listing = io.StringIO()
    call_command("rates", "list", stdout=listing)
    lines = listing.getvalue().splitlines()
    assert lines[0].endswith(
        "hpc-cpu/standard from 2026-11-01: 0.02 USD per core-hour, subsidy 0%, "
        "first 10000 core-hours pi/month free"
    )
    assert lines[1].endswith(
        "hpc-gpu/a100 from 2026-11-01: 1.10 USD per gpu-hour (×2.5 per gpu-hour), subsidy 12.5%"
    )
    as_json = io.StringIO()
    call_command("rates", "list", "--json", stdout=as_json)
    cpu_rate, gpu_rate = json.loads(as_json.getvalue())
    assert (cpu_rate["allowance"], cpu_rate["multiplier"], cpu_rate["subsidy_percent"]) == (
        "10000",
        "1",
        "0",
    )
    assert (gpu_rate["list_price"], gpu_rate["multiplier"]) == ("1.10", "2.5")


@pytest.mark.django_db
def test_the_database_refuses_two_rates_for_the_same_thing_and_date():
    first = rate_save(
        rate=Rate(
            service="s", key="k", unit="u", effective_from=date(2026, 1, 1), list_price=D("1")
        )
    )
    second = Rate(
        service="s", key="k", unit="u", effective_from=date(2026, 1, 1), list_price=D("2")
    )
    with pytest.raises(RateError, match=rf"rate #{first.pk} \(1 USD\) and this rate \(2 USD\)"):
        rate_save(rate=second)
    with pytest.raises(IntegrityError), transaction.atomic():
        second.save()
    with pytest.raises(IntegrityError), transaction.atomic():
        Rate.objects.create(
            service="s",
            key="k",
            unit="u",
            effective_from=date(2026, 2, 1),
            list_price=D("1"),
            subsidy_percent=D("101"),
        )


@pytest.mark.django_db
def test_focus_rows_are_imported_unchanged_by_the_importer(tmp_path):
    rate = RateSpec(
        "hpc-cpu", "standard", "core-hour", date(2026, 11, 1), D("0.03"), subsidy_percent=D("100")
    )
    # 1/3 of a core-hour: list 0.01 exactly; 100 % subsidy: billed 0.
    records = [cpu(at(3), at(4), Fraction(1, 3)), cpu(at(3), at(4), 2, account="zed", tags={})]
    priced = price(records, card=RateCard([rate]), period_start=NOV[0], period_end=NOV[1])
    conversion = Conversion("test", "2026-11", priced, provider="HPC")
    text = conversion.text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(COLUMNS)
    assert rows[0]["BillingPeriodStart"] == "2026-11-01T00:00:00Z"
    assert rows[0]["ChargePeriodEnd"] == "2026-11-04T00:00:00Z"
    assert (rows[0]["ListCost"], rows[0]["x_SubsidyAmount"], rows[0]["BilledCost"]) == (
        "0.01",
        "0.01",
        "0",
    )
    assert rows[0]["ConsumedQuantity"] == "0.33333333333333333333"
    assert rows[1]["Tags"] == "{}"

    path = tmp_path / "hpc.csv"
    path.write_text(text)
    Source.objects.create(name="hpc")
    result = import_files(paths=[path], source="hpc", period="2026-11")
    assert (result.rows_imported, result.rows_flagged) == (2, 1)
    charge = Charge.objects.get(sub_account_id="ada")
    assert (charge.list_cost, charge.billed_cost) == (D("0.01"), D("0"))
    assert charge.extra["x_SubsidyAmount"] == "0.01"
    assert charge.pi.email == "ada@example.edu"
    assert Charge.objects.get(sub_account_id="zed").flags != 0


@pytest.mark.django_db
def test_the_admin_refuses_a_second_rate_for_the_same_date_naming_the_first(admin_client):
    first = Rate(service="hpc-cpu", key="gpu", unit="core-hour", effective_from=date(2026, 11, 1),
                 list_price=D("0.01"))  # fmt: skip
    rate_save(rate=first)
    form = {
        "service": "hpc-cpu", "key": "gpu", "unit": "core-hour", "effective_from": "2026-11-01",
        "active": "on", "list_price": "0.02", "currency": "USD", "multiplier": "1",
        "subsidy_percent": "0", "allowance_quantity": "0", "allowance_per": "",
    }  # fmt: skip
    page = admin_client.post("/admin/billing/rate/add/", form)
    assert f"Rate #{first.pk} already prices hpc-cpu/gpu per core-hour from 2026-11-01" in (
        page.content.decode()
    )
    assert Rate.objects.count() == 1
    form["effective_from"] = "2026-11-16"
    admin_client.post("/admin/billing/rate/add/", form)
    added = Rate.objects.get(effective_from=date(2026, 11, 16))
    event = AuditEvent.objects.get(action="rate.create", object_id=str(added.pk))
    assert event.user.username == "admin"
    assert event.after["list_price"] == "0.02"


def test_the_admin_saves_an_allowance_of_many_places_exactly_and_refuses_beyond_the_limit(
    admin_client,
):
    form = {
        "service": "storage", "key": "standard", "unit": "TB-month", "effective_from": "2026-01-01",
        "active": "on", "list_price": "10.00", "currency": "USD", "multiplier": "1",
        "subsidy_percent": "0", "allowance_quantity": "0." + "1" * 31, "allowance_per": "project",
    }  # fmt: skip
    page = admin_client.post("/admin/billing/rate/add/", form)
    assert "allowance: out of range (30 decimal places at most)" in page.content.decode()
    assert not Rate.objects.exists()
    form["allowance_quantity"] = "0.536870912"
    admin_client.post("/admin/billing/rate/add/", form)
    assert str(Rate.objects.get().allowance_quantity) == "0.536870912"


def test_ingest_help_says_what_a_shared_converter_option_means_for_each_converter():
    from billing.management.commands.ingest import Command

    parser = Command().create_parser("openchargeback", "ingest")
    helps = {a.option_strings[0]: a.help for a in parser._actions if a.option_strings}
    # --rates: slurm's tiers.json, storage's rates.json, tokens' pricing.json, not slurm's alone
    for converter, rate_file in (
        ("slurm", "tiers.json"), ("storage", "rates.json"), ("tokens", "pricing.json")
    ):  # fmt: skip
        assert f"{converter}: The earlier tool's" in helps["--rates"]
        assert rate_file in helps["--rates"]
    assert "storage: Path or project" in helps["--map"]
    assert "tokens: User or workspace" in helps["--map"]
    lines = parser.format_help().splitlines()
    assert sum(line.lstrip().startswith(("--rates FILE", "--map FILE")) for line in lines) == 2
