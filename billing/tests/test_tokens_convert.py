"""Token usage files: the ChatGPT Edu export and the generic CSV, and attribution by map."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from decimal import Decimal as D

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from billing.models import AccountMapping, Charge, Flag, Import, ImportJob, Rate, Source
from billing.usage import ConversionError, tokens
from billing.usage.pricing import RateCard

from .usage_fixtures import ADA, EDU_CSV, GENERIC_CSV, GENERIC_MAP_CSV, TOKENS_MAP_JSON, write


def test_edu_export_reads_credits_per_day(tmp_path):
    fmt, uses = tokens.read_uses(write(tmp_path, "edu.csv", EDU_CSV))
    assert fmt == "edu"
    assert [(u.start.day, u.user, u.key, u.quantity, u.unit) for u in uses] == [
        (5, "ada@example.edu", "chat.completion.5.reasoning", Decimal("10"), "credit"),
        (7, "ada@example.edu", "codex", Decimal("217.535"), "credit"),
        (8, "grace@example.edu", "chat.completion.5.reasoning", Decimal("10"), "credit"),
        (11, "ada@example.edu", "chat_tool.imagegen", Decimal("125"), "credit"),
        (12, "ada@example.edu", "codex", Decimal("7.295"), "credit"),
        (20, "ada@example.edu", "chat.completion.5.reasoning", Decimal("100"), "credit"),
    ]
    assert uses[0].end - uses[0].start == datetime(2026, 1, 2) - datetime(2026, 1, 1)
    assert uses[0].start.tzinfo == UTC
    owners = tokens.read_map(write(tmp_path, "projects.json", TOKENS_MAP_JSON))
    assert owners.owner(uses[0]).tags["project_id"] == "engines"
    assert owners.owner(uses[2]) is None  # grace: untagged, flagged on import


def test_generic_file_splits_input_and_output_in_million_tokens(tmp_path):
    fmt, uses = tokens.read_uses(write(tmp_path, "usage.csv", GENERIC_CSV))
    assert fmt == "generic"
    assert [(u.key, u.quantity, u.unit) for u in uses] == [
        ("gpt-4o:input", Decimal("1.2"), "million tokens"),
        ("gpt-4o:output", Decimal("0.3"), "million tokens"),
        ("gpt-4o:input", Decimal("0.4"), "million tokens"),
        ("gpt-4o:output", Decimal("0.05"), "million tokens"),
    ]
    stamped = uses[2]
    assert (stamped.start, (stamped.end - stamped.start).total_seconds()) == (
        datetime(2026, 1, 4, 15, 30, tzinfo=UTC),
        1,
    )
    owners = tokens.read_map(write(tmp_path, "map.csv", GENERIC_MAP_CSV))
    assert [owners.owner(u).tags["project_id"] for u in uses] == ["engines"] * 2 + [
        "difference"
    ] * 2


@pytest.mark.parametrize(
    "text, message",
    [
        ("date,user,model\n2026-01-01,a,m\n", "missing tokens"),
        ("date,user,model,tokens\n2026-01-01,a,m,1.5\n", "line 2: tokens must be a whole"),
        ("date,user,model,tokens\n2026-01-01,a,,5\n", "line 2: no model"),
    ],
)
def test_bad_usage_files_are_refused_naming_the_line(tmp_path, text, message):
    with pytest.raises(ConversionError, match=message):
        tokens.read_uses(write(tmp_path, "bad.csv", text))


@pytest.mark.django_db
def test_a_line_outside_the_month_is_refused_naming_the_file_and_line(tmp_path):
    path = write(tmp_path, "edu.csv", EDU_CSV)
    with pytest.raises(ConversionError, match=r"^edu\.csv line 2: 2026-01-05 is not in 2026-02$"):
        tokens.convert(path, period="2026-02", options={"card": RateCard([])})


# -- priced FOCUS output, figures by hand ---------------------------------------------------------


def rate(key, price, unit, **terms):
    return Rate.objects.create(
        service="tokens",
        key=key,
        unit=unit,
        effective_from=date(2026, 1, 1),
        list_price=D(price),
        **terms,
    )


def convert(tmp_path, *args) -> list[dict]:
    out = tmp_path / "out.csv"
    call_command("convert", "tokens", *args, "--period", "2026-01", "-o", str(out))
    return list(csv.DictReader(out.open()))


def figures(row) -> tuple[str, ...]:
    columns = ("ConsumedQuantity", "ListCost", "x_AllowanceAmount", "x_SubsidyAmount")
    return tuple(row[c] for c in (*columns, "BilledCost"))


@pytest.mark.django_db
def test_edu_export_priced_per_credit_with_a_monthly_cap_and_a_covered_usage_type(tmp_path):
    # 20,000 credits bought for 1,000.00: 0.05 a credit. SUBSIDY-OPTIONS option 2 (a monthly cap
    # per project, here 10.00) is an allowance of 200 credits per project per month. codex has a
    # rate of its own, fully subsidised; the other usage types fall back to `credits`.
    rate("credits", "0.05", "credit", allowance_quantity=200, allowance_per="project")
    rate("codex", "0.05", "credit", subsidy_percent=100)
    edu = write(tmp_path, "edu.csv", EDU_CSV)
    rows = convert(tmp_path, str(edu), "--map", str(write(tmp_path, "p.json", TOKENS_MAP_JSON)))
    got = {(r["SubAccountId"], r["SkuId"]): figures(r) for r in rows}
    assert got == {
        # Ada, chat and imagegen: 10 + 125 + 100 = 235 credits, list 11.75; 200 included
        # (10.00); billed 35 × 0.05 = 1.75.
        ("ada@example.edu", "tokens/credits"): ("235", "11.75", "10", "0", "1.75"),
        # Ada, codex: 217.535 + 7.295 = 224.83 credits, list 11.2415, all subsidy.
        ("ada@example.edu", "tokens/codex"): ("224.83", "11.2415", "0", "11.2415", "0"),
        # Grace: on no map, untagged, her own allowance: 10 credits, list 0.50, all included.
        ("grace@example.edu", "tokens/credits"): ("10", "0.5", "0.5", "0", "0"),
    }
    tags = {r["SubAccountId"]: json.loads(r["Tags"]) for r in rows}
    assert tags == {"ada@example.edu": ADA, "grace@example.edu": {}}
    assert {r["ConsumedUnit"] for r in rows} == {"credit"}
    assert {r["ServiceCategory"] for r in rows} == {"AI and Machine Learning"}


@pytest.mark.django_db
def test_generic_usage_priced_per_million_tokens_by_model_and_direction(tmp_path):
    # gpt-4o input 2.50 per million tokens with 20 % off, output 10.00.
    rate("gpt-4o:input", "2.50", "million tokens", subsidy_percent=20)
    rate("gpt-4o:output", "10.00", "million tokens")
    usage = write(tmp_path, "usage.csv", GENERIC_CSV)
    rows = convert(tmp_path, str(usage), "--map", str(write(tmp_path, "m.csv", GENERIC_MAP_CSV)))
    got = {(r["SubAccountId"], r["SkuId"]): figures(r) for r in rows}
    assert got == {
        # Ada: 1.2 M in × 2.50 = 3.00, less 20 % (0.60) = 2.40; 0.3 M out × 10 = 3.00.
        ("ada@example.edu", "tokens/gpt-4o:input"): ("1.2", "3", "0", "0.6", "2.4"),
        ("ada@example.edu", "tokens/gpt-4o:output"): ("0.3", "3", "0", "0", "3"),
        # Bob, by his workspace (physics → Charles): 0.4 M in = 1.00 less 0.20; 0.05 M out = 0.50.
        ("bob@example.edu", "tokens/gpt-4o:input"): ("0.4", "1", "0", "0.2", "0.8"),
        ("bob@example.edu", "tokens/gpt-4o:output"): ("0.05", "0.5", "0", "0", "0.5"),
    }
    assert {json.loads(r["Tags"])["project_id"] for r in rows if "bob" in r["SubAccountId"]} == {
        "difference"
    }


@pytest.mark.django_db
def test_a_model_without_a_rate_is_refused(tmp_path):
    rate("gpt-4o:input", "2.50", "million tokens")
    usage = write(tmp_path, "usage.csv", GENERIC_CSV)
    with pytest.raises(CommandError, match="no rate for tokens/gpt-4o:output"):
        convert(tmp_path, str(usage))


@pytest.mark.django_db
def test_ingest_from_tokens_converts_imports_and_records_the_conversion(tmp_path):
    rate("credits", "0.05", "credit", allowance_quantity=200, allowance_per="project")
    codex = rate("codex", "0.05", "credit", subsidy_percent=100)
    Source.objects.create(name="openai")
    edu = write(tmp_path, "edu-2026-01.csv", EDU_CSV)
    mapping = write(tmp_path, "projects.json", TOKENS_MAP_JSON)
    args = ["--from", "tokens", str(edu), "-s", "openai", "-p", "2026-01", "--map", str(mapping)]
    out = io.StringIO()
    call_command("ingest", *args, stdout=out)
    assert "edu-2026-01.csv (tokens → FOCUS)" in out.getvalue()
    assert "read 3, imported 3, flagged 1" in out.getvalue()
    run = Import.objects.get()
    assert run.conversion["converter"] == "tokens"
    assert codex.pk in run.conversion["rate_card"]["rate_ids"]
    assert {
        (a["key"], a["holder"], a["quantity_included"]) for a in run.conversion["allowances"]
    } == {
        ("credits", "project:engines", "200"),
        ("credits", "account:grace@example.edu", "10"),
    }
    # The hand-priced figures above, as charges: Ada owes 1.75 in all.
    ada = Charge.objects.filter(pi__email="ada@example.edu")
    assert sorted((c.sku_id, c.list_cost, c.billed_cost) for c in ada) == [
        ("tokens/codex", D("11.2415"), D("0")),
        ("tokens/credits", D("11.75"), D("1.75")),
    ]
    grace = Charge.objects.get(sub_account_id="grace@example.edu")
    assert grace.flags & Flag.NO_PI
    out = io.StringIO()
    call_command("ingest", *args, stdout=out)
    assert "unchanged 3" in out.getvalue()


@pytest.mark.django_db
def test_unreadable_inputs_are_refused_by_name(tmp_path):
    rate("gpt-4o", "2.50", "million tokens")
    latin = tmp_path / "usage.csv"
    latin.write_bytes(
        "date,user,model,tokens\n2026-01-02,andré@example.edu,gpt-4o,5\n".encode("latin-1")
    )
    with pytest.raises(CommandError, match="usage.csv: not UTF-8 text"):
        convert(tmp_path, str(latin))
    usage = write(tmp_path, "ok.csv", "date,user,model,tokens\n2026-01-02,a@x.edu,gpt-4o,5\n")
    with pytest.raises(CommandError, match="missing.json: cannot be read"):
        convert(tmp_path, str(usage), "--map", str(tmp_path / "missing.json"))
    broken = write(tmp_path, "broken.json", "{")
    with pytest.raises(CommandError, match="broken.json: not valid JSON"):
        convert(tmp_path, str(usage), "--map", str(broken))


@pytest.mark.django_db
def test_the_admin_upload_converts_a_chatgpt_edu_export(
    admin_client, tmp_path, settings, config_path, django_capture_on_commit_callbacks
):
    # No map file with an upload: Ada is attributed by the admin's account map, Grace is not.
    # Ada's credits and codex lines as priced by hand above; Grace's 10 credits at 0.50, free.
    settings.OPENCHARGEBACK_CONFIG = config_path
    settings.MEDIA_ROOT = tmp_path / "media"
    rate("credits", "0.05", "credit", allowance_quantity=200, allowance_per="project")
    rate("codex", "0.05", "credit", subsidy_percent=100)
    openai = Source.objects.create(name="openai")
    AccountMapping.objects.create(source=openai, account_id="ada@example.edu", **ADA)
    edu = write(tmp_path, "chatgpt-edu-2026-01.csv", EDU_CSV)
    with edu.open("rb") as handle:
        data = {"files": [handle], "source": "openai", "period": "2026-01"}
        admin_client.post("/admin/billing/importjob/upload/", data | {"input_format": "tokens"})
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.CHECKED, job.error
    assert (job.receipt["rows_read"], job.receipt["rows_flagged"]) == (3, 1)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(f"/admin/billing/importjob/{job.pk}/confirm/", follow=True)
    assert sorted(
        (c.sub_account_id, c.sku_id, c.list_cost, c.billed_cost) for c in Charge.objects.all()
    ) == [
        ("ada@example.edu", "tokens/codex", D("11.2415"), D("0")),
        ("ada@example.edu", "tokens/credits", D("11.75"), D("1.75")),
        ("grace@example.edu", "tokens/credits", D("0.5"), D("0")),
    ]


@pytest.mark.django_db
def test_the_earlier_tools_credit_pool_and_a_monthly_cap(tmp_path):
    # 20,000 credits for 1,000.00: 0.05 a credit. A 10.00 monthly cap per project is 200 credits.
    # Every usage type is `credits` here: Ada 235 + 224.83 = 459.83 credits, list 22.9915,
    # 200 included (10.00), billed 12.9915. Grace: 10 credits, her own 200, nothing billed.
    pricing = write(
        tmp_path,
        "pricing.json",
        json.dumps(
            {
                "currency": "USD",
                "credit_pools": [
                    {
                        "pool_id": "fy26",
                        "effective_date": "2026-01-01",
                        "credits_purchased": 20000,
                        "purchase_amount": 1000,
                    }
                ],
            }
        ),
    )
    monthly = {"name": "provost", "type": "per_project_cap", "cap_amount": 10.00, "period": "month"}
    subsidies = write(tmp_path, "subsidies.json", json.dumps({"subsidies": [monthly]}))
    edu = write(tmp_path, "edu.csv", EDU_CSV)
    mapping = write(tmp_path, "p.json", TOKENS_MAP_JSON)
    args = [str(edu), "--rates", str(pricing), "--subsidies", str(subsidies), "--map", str(mapping)]
    rows = convert(tmp_path, *args)
    assert {r["SubAccountId"]: figures(r) for r in rows} == {
        "ada@example.edu": ("459.83", "22.9915", "10", "0", "12.9915"),
        "grace@example.edu": ("10", "0.5", "0.5", "0", "0"),
    }
    # A cap per fiscal year needs other months' usage: refused, naming the rule.
    yearly = dict(monthly, period="fiscal_year")
    write(tmp_path, "subsidies.json", json.dumps({"subsidies": [yearly]}))
    with pytest.raises(CommandError, match="subsidy 'provost' .per_project_cap, per fiscal_year"):
        convert(tmp_path, *args)
