"""Slurm: a hand-written sacct extract converted, priced and imported, every figure worked by
hand here. Rates and the account map are the stored ones unless the test gives the earlier
tool's tiers.json and accounts.json (written below in their format)."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from billing.models import AccountMapping, Charge, Flag, Import, ImportJob, Rate, Source
from billing.usage.pricing import decimal_text

pytestmark = pytest.mark.django_db
D = Decimal
F = Fraction

HEADER = "JobID|Account|User|Partition|State|Start|End|AllocCPUS|AllocTRES"
EXTRACT = f"""{HEADER}
101|ada-lab|ada|standard|COMPLETED|2026-11-02T00:00:00|2026-11-02T10:00:00|4|billing=4,cpu=4,mem=8G,node=1
102|ada-lab|ada|largemem|FAILED|2026-11-03T00:00:00|2026-11-03T01:30:00|16|cpu=16,mem=512G,node=1
103|ada-lab|ada|gpu|COMPLETED|2026-11-05T00:00:00|2026-11-05T02:00:00|8|cpu=8,gres/gpu=2,gres/gpu:a100=2,node=1
104|grace|grace|gpu|TIMEOUT|2026-11-10T00:00:00|2026-11-10T03:00:00|4|cpu=4,gres/gpu=1,gres/gpu:v100=1,node=1
105|grace|grace|standard|COMPLETED|2026-11-30T20:00:00|2026-12-01T04:00:00|2|cpu=2,node=1
106|grace|grace|standard|PENDING|Unknown|Unknown|2|
107|mystery|bob|standard|CANCELLED by 1001|2026-11-12T00:00:00|2026-11-12T00:20:00|3|cpu=3,node=1
108|ada-lab|ada|standard|CANCELLED by 1001|None|2026-11-12T00:00:00|4|
109|grace|grace|standard|COMPLETED|2026-10-31T22:00:00|2026-11-01T01:00:00|1|cpu=1,node=1
110|ada-lab|ada|standard|OUT_OF_MEMORY|2026-11-20T00:00:00|2026-11-20T00:00:10|1|cpu=1,node=1
"""


@pytest.fixture
def rates():
    def rate(service, key, unit, price, subsidy="0"):
        return Rate.objects.create(
            service=service, key=key, unit=unit, effective_from=date(2026, 1, 1),
            list_price=D(price), subsidy_percent=D(subsidy),
        )  # fmt: skip

    rate("hpc-cpu", "standard", "core-hour", "0.02")
    rate("hpc-cpu", "largemem", "core-hour", "0.05", subsidy="50")
    rate("hpc-cpu", "gpu", "core-hour", "0.01")
    rate("hpc-gpu", "a100", "gpu-hour", "1.50")
    rate("hpc-gpu", "v100", "gpu-hour", "0.80", subsidy="100")
    hpc = Source.objects.create(name="hpc")
    AccountMapping.objects.create(
        source=hpc, account_id="ada-lab", pi_email="ada@example.edu", project_id="engines",
        fund_org="MATH-1843",
    )  # fmt: skip
    AccountMapping.objects.create(
        account_id="grace", pi_email="grace@example.edu", project_id="compilers",
        fund_org="NAVY-1952",
    )  # fmt: skip


def convert(tmp_path, *args, text=EXTRACT):
    src = tmp_path / "sacct.txt"
    src.write_text(text)
    out, err = tmp_path / "out.csv", io.StringIO()
    call_command(
        "convert", "slurm", str(src), "-p", "2026-11", "-s", "hpc", "-o", str(out), *args,
        stderr=err,
    )  # fmt: skip
    return list(csv.DictReader(out.open())), err.getvalue()


def test_sacct_extract_priced_by_hand(tmp_path, rates):
    rows, err = convert(tmp_path)
    got = [
        (r["SubAccountId"], r["SkuId"], r["ConsumedQuantity"], r["ListCost"],
         r["x_SubsidyAmount"], r["BilledCost"])
        for r in rows
    ]  # fmt: skip
    # Worked by hand, in the rows' order (account, partition, resource):
    ada_standard = F(40) + F(10, 3600)  # job 101: 4 CPUs × 10 h; job 110: 1 CPU × 10 s
    assert got == [
        # job 103: 8 CPUs × 2 h = 16 core-hours × 0.01
        ("ada-lab", "hpc-cpu/gpu", "16", "0.16", "0", "0.16"),
        # job 103: 2 A100 × 2 h = 4 GPU-hours × 1.50
        ("ada-lab", "hpc-gpu/a100", "4", "6", "0", "6"),
        # job 102 (failed, billed): 16 CPUs × 1.5 h = 24 × 0.05 = 1.20; 50 % subsidy
        ("ada-lab", "hpc-cpu/largemem", "24", "1.2", "0.6", "0.6"),
        # 40 + 1/360 core-hours × 0.02 = 0.8 + 1/18000 (twenty places, half-even)
        (
            "ada-lab",
            "hpc-cpu/standard",
            "40.00277777777777777778",
            "0.80005555555555555556",
            "0",
            "0.80005555555555555556",
        ),
        # job 104 (timeout): 4 CPUs × 3 h = 12 × 0.01
        ("grace", "hpc-cpu/gpu", "12", "0.12", "0", "0.12"),
        # job 104: 1 V100 × 3 h = 3 × 0.80 = 2.40, all subsidised
        ("grace", "hpc-gpu/v100", "3", "2.4", "2.4", "0"),
        # job 105: 20:00 to midnight of the month end = 4 h × 2 CPUs = 8; job 109: from
        # midnight of 1 November to 01:00 = 1 h × 1 CPU = 1; 9 × 0.02
        ("grace", "hpc-cpu/standard", "9", "0.18", "0", "0.18"),
        # job 107 (cancelled after 20 minutes): 3 CPUs × 1/3 h = 1 × 0.02; no account map entry
        ("mystery", "hpc-cpu/standard", "1", "0.02", "0", "0.02"),
    ]
    assert decimal_text(ada_standard) == got[3][2]
    assert decimal_text(ada_standard * F("0.02")) == got[3][3]
    assert json.loads(rows[0]["Tags"]) == {
        "pi_email": "ada@example.edu", "project_id": "engines", "fund_org": "MATH-1843"
    }  # fmt: skip
    assert rows[-1]["Tags"] == "{}"
    assert {r["ChargePeriodStart"] for r in rows} == {"2026-11-01T00:00:00Z"}
    assert {r["ChargePeriodEnd"] for r in rows} == {"2026-12-01T00:00:00Z"}
    assert "8 FOCUS rows for 2026-11" in err
    assert "1 account(s) with no entry in the account map, flagged on import: mystery" in err


def test_per_job_rows_and_the_states_billed(tmp_path, rates):
    rows, _ = convert(tmp_path, "--per-job")
    jobs = {(r["ResourceId"].split("/")[2], r["SkuId"]): r for r in rows}
    # 106 (pending) and 108 (cancelled before it started) are never billed.
    assert sorted({job for job, _ in jobs}) == ["101", "102", "103", "104", "105", "107", "109",
                                                "110"]  # fmt: skip
    month_end = jobs[("105", "hpc-cpu/standard")]
    assert (month_end["ChargePeriodStart"], month_end["ChargePeriodEnd"]) == (
        "2026-11-30T20:00:00Z", "2026-12-01T00:00:00Z")  # fmt: skip
    assert month_end["ConsumedQuantity"] == "8"
    # --states narrows what is billed: FAILED out, so job 102 goes.
    rows, err = convert(tmp_path, "--per-job", "--states", "COMPLETED,TIMEOUT")
    assert {r["ResourceId"].split("/")[2] for r in rows} == {"101", "103", "104", "105", "109"}


def test_a_rate_change_mid_month_splits_a_job_by_time(tmp_path, rates):
    Rate.objects.create(service="hpc-cpu", key="standard", unit="core-hour",
                        effective_from=date(2026, 11, 16), list_price=D("0.03"))  # fmt: skip
    text = (
        f"{HEADER}\n201|ada-lab|ada|standard|COMPLETED|2026-11-15T18:00:00|2026-11-16T06:00:00|2|\n"
    )
    rows, _ = convert(tmp_path, text=text)
    # 6 h × 2 CPUs before midnight of the 16th at 0.02 = 0.24; 6 h × 2 after at 0.03 = 0.36.
    assert [(r["ChargePeriodStart"], r["ConsumedQuantity"], r["ListUnitPrice"], r["ListCost"])
            for r in rows] == [
        ("2026-11-01T00:00:00Z", "12", "0.02", "0.24"),
        ("2026-11-16T00:00:00Z", "12", "0.03", "0.36"),
    ]  # fmt: skip


def test_an_allowance_has_its_own_figures(tmp_path, rates):
    Rate.objects.filter(key="standard").update(allowance_quantity=D(30), allowance_per="pi")
    rows, _ = convert(tmp_path, "--per-job")
    ada = [r for r in rows if r["SubAccountId"] == "ada-lab" and r["SkuId"] == "hpc-cpu/standard"]
    # Job 101 (40 core-hours, 2 November) uses the 30 free hours; job 110 (20 November) pays.
    assert [(r["x_AllowanceQuantity"], r["x_AllowanceAmount"], r["BilledCost"]) for r in ada] == [
        ("30", "0.6", "0.2"),  # 40 × 0.02 = 0.80, 30 × 0.02 = 0.60 included
        ("0", "0", decimal_text(F(10, 3600) * F("0.02"))),
    ]


def test_memory_is_billed_where_the_rate_card_has_a_memory_rate(tmp_path, rates):
    # Without an hpc-mem rate (the extract above), nobody is billed for memory.
    rows, _ = convert(tmp_path)
    assert not [r for r in rows if r["SkuId"].startswith("hpc-mem/")]

    for partition, price in (("standard", "0.001"), ("largemem", "0.002"), ("gpu", "0.001")):
        Rate.objects.create(service="hpc-mem", key=partition, unit="gib-hour",
                            effective_from=date(2026, 1, 1), list_price=D(price))  # fmt: skip
    text = (
        f"{HEADER}\n"
        # 8G (8 GiB) × 10 h = 80 GiB-hours
        "301|ada-lab|ada|standard|COMPLETED|2026-11-02T00:00:00|2026-11-02T10:00:00|4|cpu=4,mem=8G\n"
        # 512G × 1.5 h = 768 GiB-hours
        "302|ada-lab|ada|largemem|FAILED|2026-11-03T00:00:00|2026-11-03T01:30:00|16|mem=512G\n"
        # 1500M = 1500/1024 GiB × 2 h = 375/128 GiB-hours (2.9296875)
        "303|ada-lab|ada|standard|COMPLETED|2026-11-04T00:00:00|2026-11-04T02:00:00|1|mem=1500M\n"
        # 1T = 1024 GiB × 30 min = 512 GiB-hours; a job with no mem= is billed no memory
        "304|grace|grace|largemem|COMPLETED|2026-11-05T00:00:00|2026-11-05T00:30:00|2|mem=1T\n"
        "305|grace|grace|standard|COMPLETED|2026-11-05T00:00:00|2026-11-05T01:00:00|1|cpu=1\n"
    )
    rows, _ = convert(tmp_path, text=text)
    memory = {
        (r["SubAccountId"], r["SkuId"]): (r["ConsumedQuantity"], r["ListCost"], r["BilledCost"])
        for r in rows if r["SkuId"].startswith("hpc-mem/")
    }  # fmt: skip
    assert {r["ConsumedUnit"] for r in rows if r["SkuId"].startswith("hpc-mem/")} == {"gib-hour"}
    standard = F(80) + F(375, 128)  # 82.9296875 GiB-hours × 0.001 = 0.0829296875
    assert memory == {
        ("ada-lab", "hpc-mem/largemem"): ("768", "1.536", "1.536"),  # 768 × 0.002
        ("ada-lab", "hpc-mem/standard"): ("82.9296875", "0.0829296875", "0.0829296875"),
        ("grace", "hpc-mem/largemem"): ("512", "1.024", "1.024"),  # 512 × 0.002
    }
    assert decimal_text(standard) == "82.9296875"
    assert decimal_text(standard * F("0.001")) == "0.0829296875"
    # A memory size that isn't one is refused, naming the line.
    bad = (
        f"{HEADER}\n"
        "306|grace|grace|standard|COMPLETED|2026-11-05T00:00:00|2026-11-05T01:00:00|1|mem=lotsG\n"
    )
    with pytest.raises(CommandError, match="line 2: AllocTRES has a memory size"):
        convert(tmp_path, text=bad)


def test_missing_rate_and_bad_input_are_refused(tmp_path, rates):
    Rate.objects.filter(key="largemem").delete()
    with pytest.raises(CommandError, match=r"no rate for hpc-cpu/largemem \(per core-hour\)"):
        convert(tmp_path)
    with pytest.raises(CommandError, match="missing AllocCPUS"):
        convert(tmp_path, text="JobID|Account|Partition|State|Start|End\n")


TIERS = {
    "serviceName": "HPC Compute",
    "partitions": {
        "def": {"suMultiplier": 1, "subsidyPercent": 0, "description": "Standard CPU"},
        "def-sm": {"suMultiplier": 1, "subsidyPercent": 100, "description": "Free-tier CPU"},
        "gpu": {"suMultiplier": 20, "subsidyPercent": 0, "description": "GPU"},
    },
    "rates": {"suRate": 0.01, "unit": "per SU"},
    "billableStates": ["COMPLETED", "TIMEOUT", "OUT_OF_MEMORY"],
    "excludeAccounts": ["root"],
}
ACCOUNTS = {"accounts": {"smithPrj": {"piEmail": "smith@example.edu", "projectId": "smith-lab",
                                      "fundOrg": "NIH-2024-001"}}}  # fmt: skip
TIERS_EXTRACT = f"""{HEADER}
1|smithPrj|smith|gpu|COMPLETED|2026-11-02T00:00:00|2026-11-02T10:00:00|4|cpu=4,gres/gpu:a100=1
2|smithPrj|smith|def-sm|COMPLETED|2026-11-03T00:00:00|2026-11-03T10:00:00|4|cpu=4
3|smithPrj|smith|def|FAILED|2026-11-04T00:00:00|2026-11-04T10:00:00|4|cpu=4
4|root|root|def|COMPLETED|2026-11-04T00:00:00|2026-11-04T10:00:00|4|cpu=4
"""


def test_the_earlier_tools_tiers_and_accounts_keep_their_prices(tmp_path):
    (tmp_path / "tiers.json").write_text(json.dumps(TIERS))
    (tmp_path / "accounts.json").write_text(json.dumps(ACCOUNTS))
    rows, err = convert(tmp_path, "--rates", str(tmp_path / "tiers.json"), "--accounts",
                        str(tmp_path / "accounts.json"), text=TIERS_EXTRACT)  # fmt: skip
    got = [(r["SkuId"], r["ConsumedQuantity"], r["PricingQuantity"], r["PricingUnit"],
            r["ListCost"], r["BilledCost"]) for r in rows]  # fmt: skip
    # The earlier README's example: 4 CPUs × 10 h on gpu (×20) = 800 SU × 0.01 = 8.00; the same
    # on def-sm: 40 SU = 0.40 at list, 100 % subsidy, 0 due. The GPU itself is in the multiplier.
    # Job 3 failed (not in the file's billableStates), job 4 is root's (excluded).
    assert got == [
        ("hpc-cpu/def-sm", "40", "40", "SU", "0.4", "0"),
        ("hpc-cpu/gpu", "40", "800", "SU", "8", "8"),
    ]
    assert json.loads(rows[0]["Tags"])["project_id"] == "smith-lab"
    assert rows[0]["ServiceName"] == "HPC Compute - CPU"


def test_ingest_from_slurm_converts_imports_and_records_the_conversion(tmp_path, rates):
    src = tmp_path / "sacct-2026-11.txt"
    src.write_text(EXTRACT)
    out = io.StringIO()
    call_command("ingest", "--from", "slurm", str(src), "-s", "hpc", "-p", "2026-11", stdout=out)
    receipt = out.getvalue()
    assert "sacct-2026-11.txt (slurm → FOCUS)" in receipt
    assert "read 8, imported 8, flagged 1" in receipt
    assert "rate card database version" in receipt
    run = Import.objects.get()
    assert run.conversion["converter"] == "slurm"
    assert run.conversion["notes"]["unknown_accounts"] == ["mystery"]
    assert len(run.conversion["rate_card"]["rate_ids"]) == 5
    mystery = Charge.objects.get(sub_account_id="mystery")
    assert mystery.flags & Flag.NO_PI and mystery.pi is None
    grace = Charge.objects.get(sub_account_id="grace", sku_id="hpc-cpu/standard")
    assert (grace.pi.email, grace.project.code, grace.billed_cost) == (
        "grace@example.edu", "compilers", D("0.18"))  # fmt: skip
    # The same export again: the same FOCUS file, nothing changes.
    out = io.StringIO()
    call_command("ingest", "--from", "slurm", str(src), "-s", "hpc", "-p", "2026-11", stdout=out)
    assert "unchanged 8" in out.getvalue()
    with pytest.raises(CommandError, match="needed"):
        call_command("ingest", "--from", "slurm", str(src), "-s", "hpc")


UPLOAD = "/admin/billing/importjob/upload/"


def test_the_admin_upload_converts_a_sacct_export(
    admin_client, rates, tmp_path, settings, config_path, django_capture_on_commit_callbacks
):
    settings.OPENCHARGEBACK_CONFIG = config_path
    settings.MEDIA_ROOT = tmp_path / "media"
    src = tmp_path / "sacct-2026-11.txt"
    src.write_text(EXTRACT)
    page = admin_client.get(UPLOAD).content.decode()
    assert 'value="slurm"' in page
    with src.open("rb") as handle:
        data = {"files": [handle], "source": "hpc", "period": "2026-11", "input_format": "slurm"}
        admin_client.post(UPLOAD, data, follow=True)
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.CHECKED, job.error
    assert (job.receipt["rows_read"], job.receipt["rows_flagged"]) == (8, 1)
    assert job.receipt["conversion"]["notes"]["unknown_accounts"] == ["mystery"]
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(f"/admin/billing/importjob/{job.pk}/confirm/", follow=True)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE
    assert job.import_run.conversion["converter"] == "slurm"
    # The same totals as the command line's: the sums worked by hand above.
    assert job.import_run.totals["USD"]["list"] == decimal_text(
        F("0.16") + 6 + F("1.2") + (F(40) + F(10, 3600)) * F("0.02") + F("0.12") + F("2.4")
        + F("0.18") + F("0.02")
    )  # fmt: skip


def test_the_admin_upload_needs_the_period_for_a_usage_export(admin_client, tmp_path, settings,
                                                               config_path):  # fmt: skip
    settings.OPENCHARGEBACK_CONFIG = config_path
    settings.MEDIA_ROOT = tmp_path / "media"
    src = tmp_path / "sacct.txt"
    src.write_text(EXTRACT)
    with src.open("rb") as handle:
        data = {"files": [handle], "source": "hpc", "period": "", "input_format": "slurm"}
        response = admin_client.post(UPLOAD, data, follow=True)
    assert "needs the period it covers" in response.content.decode()
    assert not ImportJob.objects.exists()


def test_an_export_with_nothing_to_bill_says_why(tmp_path, rates):
    src = tmp_path / "sacct.txt"
    src.write_text(
        f"{HEADER}\n"
        "401|ada-lab|ada|standard|RUNNING|2026-11-02T00:00:00|Unknown|4|cpu=4\n"
        "402|ada-lab|ada|standard|PENDING|Unknown|Unknown|4|\n"
    )
    with pytest.raises(CommandError, match=r"nothing to bill in 2026-11 \(not billed, by state: "
                       r"1 PENDING, 1 RUNNING\); nothing was imported"):  # fmt: skip
        call_command("ingest", "--from", "slurm", str(src), "-s", "hpc", "-p", "2026-11")
    assert not Import.objects.exists()
