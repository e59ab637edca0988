"""Storage reports: reading each format, the time-weighted rule, and attribution by path."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal as D
from fractions import Fraction

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from billing.models import AccountMapping, Charge, Flag, Import, ImportJob, Rate, Source
from billing.usage import ConversionError, storage

from .usage_fixtures import (
    ADA,
    ISILON_JSON,
    QUMULO_DOTFILES,
    QUMULO_JSON,
    STORAGE_CSV,
    STORAGE_MAP_CSV,
    write,
)

JAN = 31 * 86400


def day(d: int, month: int = 1, hour: int = 0) -> datetime:
    return datetime(2026, month, d, hour, tzinfo=UTC)


def test_csv_samples_become_intervals_covering_the_month(tmp_path):
    samples, _ = storage.read_samples(write(tmp_path, "usage.csv", STORAGE_CSV))
    owners = storage.read_map(write(tmp_path, "map.csv", STORAGE_MAP_CSV))
    got = {
        (i.key, i.start, i.end): (i.tier, i.bytes_used, i.tb_months(JAN))
        for i in storage.intervals(samples, "2026-01", owners)
    }
    assert got == {
        # December's last sample carries in; the Feb 1 sample is February's.
        ("/ifs/research/lovelace-lab", day(1), day(11)): ("standard", 3_100_000_000_000, 1),
        ("/ifs/research/lovelace-lab", day(11), day(21)): ("standard", 6_200_000_000_000, 2),
        ("/ifs/research/lovelace-lab", day(21), day(1, 2)): (
            "standard",
            1_550_000_000_000,
            Fraction("0.55"),
        ),
        # One mid-month sample stands for the whole month.
        ("/ifs/archive/babbage", day(1), day(1, 2)): ("archive", 12 * 10**12, 12),
        ("/ifs/research/orphan", day(1), day(1, 2)): (
            "standard",
            750_000_000_000,
            Fraction("0.75"),
        ),
    }
    # 3.1 TB for 10 days + 6.2 TB for 10 days + 1.55 TB for 11 days, over 31 days.
    lovelace = [i for i in storage.intervals(samples, "2026-01") if "lovelace" in i.key]
    assert sum(i.tb_months(JAN) for i in lovelace) == Fraction("3.55")


def test_map_matches_longest_parent_and_leaves_unmapped_paths_untagged(tmp_path):
    owners = storage.read_map(write(tmp_path, "map.csv", STORAGE_MAP_CSV))
    assert storage.find_owner("/ifs/research/lovelace-lab/sub/deep", owners).tags["project_id"] == (
        "engines"
    )
    assert storage.find_owner("/ifs/research/orphan", owners) is None


def test_isilon_report_bills_directory_quotas_by_logical_usage(tmp_path):
    samples, notes = storage.read_samples(write(tmp_path, "quotas.json", ISILON_JSON))
    assert [(s.key, s.bytes_used, s.sampled_at) for s in samples] == [
        ("/ifs/research/lovelace-lab/sub", 620_000_000_000, None)
    ]
    assert notes == ["1 user/group quota(s) not billed: their bytes are in a directory"]
    (interval,) = storage.intervals(samples, "2026-01")
    assert (interval.start, interval.end, interval.tb_months(JAN)) == (
        day(1),
        day(1, 2),
        Fraction("0.62"),
    )


def test_qumulo_nightly_reports_and_dot_files(tmp_path):
    samples, _ = storage.read_samples(write(tmp_path, "qumulo.json", QUMULO_JSON))
    owners = storage.read_map(write(tmp_path, "dotfiles.json", QUMULO_DOTFILES))
    assert set(owners) == {"engines"}  # the inactive dot file is left out
    got = [
        (i.start, i.end, i.tb_months(JAN), storage.find_owner(i.key, owners).tags["pi_email"])
        for i in storage.intervals(samples, "2026-01", owners)
    ]
    # 0 bytes until Jan 11, then 31 GB for 21 days: 31e9 × 21 / (1e12 × 31) = 0.021 TB-months.
    assert got == [
        (day(1), day(11), 0, "ada@example.edu"),
        (day(11), day(1, 2), Fraction("0.021"), "ada@example.edu"),
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("path,bytes_used\n/a,1\n", "missing column(s) sampled_at"),
        ("path,bytes_used,sampled_at\n/a,1.5,2026-01-01\n", "line 2: bytes used must be a whole"),
        ("path,bytes_used,sampled_at\n/a,1,yesterday\n", "line 2: not an ISO 8601"),
        ("path,bytes_used,sampled_at\n,1,2026-01-01\n", "line 2: no path or project"),
    ],
)
def test_bad_reports_are_refused_naming_the_line(tmp_path, text, message):
    with pytest.raises(ConversionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        storage.read_samples(write(tmp_path, "bad.csv", text))


# -- priced FOCUS output, figures by hand ---------------------------------------------------------


def rate(key, price, from_=date(2026, 1, 1), unit="TB-month", service="storage", **terms):
    return Rate.objects.create(
        service=service, key=key, unit=unit, effective_from=from_, list_price=D(price), **terms
    )


def convert(tmp_path, *args) -> list[dict]:
    out = tmp_path / "out.csv"
    call_command("convert", "storage", *args, "--period", "2026-01", "-o", str(out))
    return list(csv.DictReader(out.open()))


def figures(row) -> tuple[str, ...]:
    return tuple(
        row[c]
        for c in ("ConsumedQuantity", "ListCost", "x_AllowanceAmount", "x_SubsidyAmount")
        + ("BilledCost",)
    )


@pytest.mark.django_db
def test_storage_report_priced_by_tier_with_allowance_and_subsidy(tmp_path):
    # standard: 10.00 per TB-month, the first 0.5 TB-month (500 GB for a month) free per PI,
    # then 25 % off. archive: 4.00, fully subsidised.
    rate("standard", "10.00", subsidy_percent=25, allowance_quantity="0.5", allowance_per="pi")
    rate("archive", "4.00", subsidy_percent=100)
    report = write(tmp_path, "usage.csv", STORAGE_CSV)
    rows = convert(tmp_path, str(report), "--map", str(write(tmp_path, "m.csv", STORAGE_MAP_CSV)))
    by_path = {row["SubAccountId"]: row for row in rows}
    assert len(rows) == 3  # one row per path and tier for the month
    # lovelace: 1.0 + 2.0 + 0.55 = 3.55 TB-months; list 35.50; allowance 0.5 × 10 = 5.00;
    # subsidy (35.50 − 5.00) × 25 % = 7.625; billed 35.50 − 5.00 − 7.625 = 22.875.
    assert figures(by_path["/ifs/research/lovelace-lab"]) == (
        "3.55",
        "35.5",
        "5",
        "7.625",
        "22.875",
    )
    # babbage: 12 TB for the month in archive; list 48.00, all of it subsidy.
    assert figures(by_path["/ifs/archive/babbage"]) == ("12", "48", "0", "48", "0")
    # orphan: untagged, an allowance of its own: 0.75 TB-month, list 7.50, allowance 5.00,
    # subsidy 2.50 × 25 % = 0.625, billed 1.875.
    assert figures(by_path["/ifs/research/orphan"]) == ("0.75", "7.5", "5", "0.625", "1.875")
    assert json.loads(by_path["/ifs/research/lovelace-lab"]["Tags"]) == ADA
    assert by_path["/ifs/research/orphan"]["Tags"] == "{}"
    lovelace = by_path["/ifs/research/lovelace-lab"]
    assert (
        lovelace["ChargePeriodStart"],
        lovelace["ChargePeriodEnd"],
        lovelace["PricingUnit"],
    ) == (
        "2026-01-01T00:00:00Z",
        "2026-02-01T00:00:00Z",
        "TB-month",
    )
    assert lovelace["ServiceCategory"] == "Storage"


@pytest.mark.django_db
def test_a_rate_change_mid_month_prices_the_bytes_held_on_each_side(tmp_path):
    # 10.00 until 16 January, 12.00 from then, 0.5 TB-month free per PI, 25 % off.
    # lovelace before the 16th: 3.1 TB × 10 d + 6.2 TB × 5 d = 2.0 TB-months, list 20.00,
    # allowance 5.00, subsidy 15.00 × 25 % = 3.75, billed 11.25. From the 16th: 6.2 TB × 5 d +
    # 1.55 TB × 11 d = 1.55 TB-months, list 18.60, the allowance is used up, subsidy 4.65,
    # billed 13.95. (Shared pro rata by time it would be 3.55 × 16/31 at 12.00: not what was held.)
    terms = {"subsidy_percent": 25, "allowance_quantity": "0.5", "allowance_per": "pi"}
    rate("standard", "10.00", **terms)
    rate("standard", "12.00", from_=date(2026, 1, 16), **terms)
    rate("archive", "4.00", subsidy_percent=100)
    report = write(tmp_path, "usage.csv", STORAGE_CSV)
    rows = convert(tmp_path, str(report), "--map", str(write(tmp_path, "m.csv", STORAGE_MAP_CSV)))
    lovelace = [r for r in rows if r["SubAccountId"] == "/ifs/research/lovelace-lab"]
    assert [(r["ChargePeriodStart"][:10], *figures(r)) for r in lovelace] == [
        ("2026-01-01", "2", "20", "5", "3.75", "11.25"),
        ("2026-01-16", "1.55", "18.6", "0", "4.65", "13.95"),
    ]


@pytest.mark.django_db
def test_the_earlier_tools_isilon_rates_keep_their_binary_units(tmp_path):
    # ratePerTBMonth 10 per TiB = 10 × 10^12 / 2^40 per TB = 9.094947017729282379150390625;
    # 500 free GiB = 500 × 2^30 bytes = 0.536870912 TB-month per project. 0.62 TB for the month:
    # list 0.62 × 9.094947017729282379150390625 = 5.6388671509921550750732421875; the allowance
    # covers 0.536870912 TB-months = 4.8828125 (500 GiB at 10 per 1024 GiB); billed
    # 0.7560546509921550750732421875. FOCUS text carries 20 places (pricing.decimal_text), half
    # even: 5.63886715099215507507|32… and 0.75605465099215507507|32….
    legacy = write(
        tmp_path,
        "rates.json",
        json.dumps(
            {"serviceName": "HPC Storage", "ratePerTBMonth": 10.00, "freeGBPerProject": 500}
        ),
    )
    mapping = write(tmp_path, "projects.json", json.dumps({"projects": {"/ifs/research": ADA}}))
    quotas = write(tmp_path, "quotas.json", ISILON_JSON)
    rows = convert(tmp_path, str(quotas), "--rates", str(legacy), "--map", str(mapping))
    assert [figures(r) for r in rows] == [
        (
            "0.62",
            "5.63886715099215507507",
            "4.8828125",
            "0",
            "0.75605465099215507507",
        )
    ]


@pytest.mark.django_db
def test_a_tier_without_a_rate_is_refused(tmp_path):
    rate("standard", "10.00")
    report = write(tmp_path, "usage.csv", STORAGE_CSV)
    with pytest.raises(CommandError, match="no rate for storage/archive"):
        convert(tmp_path, str(report))


@pytest.mark.django_db
def test_ingest_from_storage_converts_imports_and_flags_the_unmapped_path(tmp_path):
    rate("standard", "10.00", subsidy_percent=25, allowance_quantity="0.5", allowance_per="pi")
    rate("archive", "4.00", subsidy_percent=100)
    Source.objects.create(name="storage")
    report = write(tmp_path, "usage-2026-01.csv", STORAGE_CSV)
    mapping = write(tmp_path, "m.csv", STORAGE_MAP_CSV)
    args = [
        "--from",
        "storage",
        str(report),
        "-s",
        "storage",
        "-p",
        "2026-01",
        "--map",
        str(mapping),
    ]
    out = io.StringIO()
    call_command("ingest", *args, stdout=out)
    assert "usage-2026-01.csv (storage → FOCUS)" in out.getvalue()
    assert "read 3, imported 3, flagged 1" in out.getvalue()
    run = Import.objects.get()
    assert run.conversion["converter"] == "storage"
    assert run.conversion["notes"]["unmapped paths"] == 1
    # The figures of the hand-priced test above, now charges.
    lovelace = Charge.objects.get(sub_account_id="/ifs/research/lovelace-lab")
    assert (lovelace.pi.email, lovelace.list_cost, lovelace.billed_cost) == (
        "ada@example.edu",
        D("35.5"),
        D("22.875"),
    )
    assert lovelace.extra["x_AllowanceAmount"] == "5"
    orphan = Charge.objects.get(sub_account_id="/ifs/research/orphan")
    assert orphan.flags & Flag.NO_PI and orphan.pi is None
    assert Charge.objects.get(sub_account_id="/ifs/archive/babbage").billed_cost == 0
    # Delivered again: the same FOCUS rows, nothing changes.
    out = io.StringIO()
    call_command("ingest", *args, stdout=out)
    assert "unchanged 3" in out.getvalue()


@pytest.mark.django_db
def test_the_admin_account_map_attributes_a_path_before_pricing(tmp_path):
    # The orphan path mapped to Ada in the admin: her 0.5 TB-month allowance is one for both
    # paths. Lovelace comes first in the report, so it takes the allowance (22.875 as before) and
    # the orphan pays it all: 0.75 × 10.00 = 7.50, less 25 % = 5.625.
    rate("standard", "10.00", subsidy_percent=25, allowance_quantity="0.5", allowance_per="pi")
    rate("archive", "4.00", subsidy_percent=100)
    source = Source.objects.create(name="storage")
    AccountMapping.objects.create(source=source, account_id="/ifs/research/orphan", **ADA)
    report = write(tmp_path, "usage.csv", STORAGE_CSV)
    mapping = write(tmp_path, "m.csv", STORAGE_MAP_CSV)
    call_command(
        "ingest", "--from", "storage", str(report), "-s", "storage", "-p", "2026-01",
        "--map", str(mapping), stdout=io.StringIO(),
    )  # fmt: skip
    orphan = Charge.objects.get(sub_account_id="/ifs/research/orphan")
    assert (orphan.flags, orphan.pi.email, orphan.billed_cost) == (0, "ada@example.edu", D("5.625"))
    assert Charge.objects.get(sub_account_id="/ifs/research/lovelace-lab").billed_cost == D(
        "22.875"
    )


def test_json_samples_and_a_tier_from_the_map(tmp_path):
    report = json.dumps(
        {
            "samples": [
                {"Project": "engines", "bytes": 6200000000000, "sampled_at": "2026-01-01"},
                {"Project": "engines", "bytes": 0, "sampled_at": "2026-01-11T00:00:00+02:00"},
            ]
        }
    )
    samples, _ = storage.read_samples(write(tmp_path, "usage.json", report))
    owners = storage.read_map(
        write(
            tmp_path,
            "m.csv",
            "project,pi_email,project_id,fund_org,tier\nengines,a@x.edu,e,F,fast\n",
        )
    )
    got = [
        (i.tier, i.start, i.end, i.tb_months(JAN))
        for i in storage.intervals(samples, "2026-01", owners)
    ]
    # +02:00 is 10 January 22:00 UTC: 6.2 TB for 9 days 22 hours = 6.2 × 238 / 744 TB-months.
    assert got == [
        ("fast", day(1), day(10, hour=22), Fraction(62, 10) * Fraction(238, 744)),
        ("fast", day(10, hour=22), day(1, 2), 0),
    ]


@pytest.mark.django_db
def test_a_rate_file_with_a_misspelt_term_is_refused(tmp_path):
    # allowance_quantity is the admin's field name; the YAML key is `allowance`. Ignored, it
    # would have priced the storage without its free 500 GB.
    card = write(
        tmp_path,
        "rates.yaml",
        "rates:\n  - {service: storage, key: standard, unit: TB-month, effective_from: 2026-01-01,"
        ' list_price: "10.00", allowance_quantity: "0.5", allowance_per: pi}\n',
    )
    with pytest.raises(CommandError, match="rate 1: unknown key.s. allowance_quantity"):
        call_command("rates", "load", str(card))
    assert not Rate.objects.exists()


UPLOAD = "/admin/billing/importjob/upload/"


@pytest.mark.django_db
def test_the_admin_upload_converts_a_qumulo_report_attributed_by_the_account_map(
    admin_client, tmp_path, settings, config_path, django_capture_on_commit_callbacks
):
    # The upload carries no map file: the admin's account map attributes the path. 31 GB from
    # 11 January for 21 days = 0.021 TB-months × 10.00 = 0.21, nothing free, nothing off.
    settings.OPENCHARGEBACK_CONFIG = config_path
    settings.MEDIA_ROOT = tmp_path / "media"
    rate("standard", "10.00")
    source = Source.objects.get_or_create(name="storage")[0]
    AccountMapping.objects.create(source=source, account_id="/research_projects/engines", **ADA)
    report = write(tmp_path, "qumulo-2026-01.json", QUMULO_JSON)
    assert 'value="storage"' in admin_client.get(UPLOAD).content.decode()
    with report.open("rb") as handle:
        data = {"files": [handle], "source": "storage", "period": "2026-01"}
        admin_client.post(UPLOAD, data | {"input_format": "storage"}, follow=True)
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.CHECKED, job.error
    assert (job.receipt["rows_read"], job.receipt["rows_flagged"]) == (1, 0)
    assert job.receipt["conversion"]["notes"]["format"] == "qumulo"
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(f"/admin/billing/importjob/{job.pk}/confirm/", follow=True)
    charge = Charge.objects.get()
    assert (charge.pi.email, charge.consumed_quantity, charge.billed_cost) == (
        "ada@example.edu",
        D("0.021"),
        D("0.21"),
    )
