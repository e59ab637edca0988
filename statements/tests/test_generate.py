"""`openchargeback generate`: drafts and finals, numbering, replacement and revision, sending
once, the JSON a cron job reads, and refusals."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management.base import CommandError
from django.db import transaction

from accounts.models import AuditEvent
from billing.models import BillingPeriod, Charge
from billing.services.figures import figures_changed
from statements.models import Statement, StatementEmail
from statements.selectors import period_has_statements, period_status

from .conftest import mailed, pdf_pages, pdf_text
from .test_figures import README

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def generate(run_json, config_path):
    def generate(*args):
        return run_json("generate", "-p", "2025-01", "-c", config_path, *args)

    return generate


@pytest.fixture
def closed(january, run):
    run("periods", "close", "2025-01")


def test_open_period_gives_drafts_with_the_readme_figures(january, generate):
    out = generate()
    assert out["draft"] is True
    assert out["pis"] == 7
    assert len(out["statements"]) == 10
    got = {
        (s["pi_email"], s["project"], s["fund_org"]): (s["list"], s["discount"], s["amount_due"])
        for s in out["statements"]
    }
    assert got == README
    assert out["total_due"] == {"USD": "20227.00"}
    assert out["billable_total"] == {"USD": "20227.00"}
    assert out["excluded"]["count"] == 0
    assert out["emails"] == {"queued": 0, "sent": 0, "failed": 0}
    for s in out["statements"]:
        assert s["status"] == "ready"
        pages = pdf_pages(s["pdf"])
        assert all("DRAFT" in page for page in pages)
        text = "\n".join(pages)
        assert f"USD {Decimal(s['amount_due']):,.2f}" in text
        assert f"USD {Decimal(s['list']):,.2f}" in text
        assert s["number"] in text and s["pi_email"] in text
        assert hashlib.sha256(Path(s["pdf"]).read_bytes()).hexdigest() == s["sha256"]
    assert AuditEvent.objects.filter(action="statement.generate").count() == 1


def test_numbers_are_stable_and_a_draft_is_replaced(january, generate):
    first = {s["project"]: s for s in generate()["statements"]}
    second_out = generate()
    second = {s["project"]: s for s in second_out["statements"]}
    assert {k: v["number"] for k, v in first.items()} == {k: v["number"] for k, v in second.items()}
    assert second_out["changes"]["unchanged"] == 10
    # A change to the data replaces the draft: same number, new figures, old file gone.
    charge = Charge.objects.filter(project__code="climate-modeling", billed_cost=Decimal("12.50"))
    charge.update(billed_cost=Decimal("13.50"))
    third = {s["project"]: s for s in generate()["statements"]}
    assert third["climate-modeling"]["number"] == first["climate-modeling"]["number"]
    assert third["climate-modeling"]["amount_due"] == "13.50"
    assert not Path(first["climate-modeling"]["pdf"]).exists()
    assert Statement.objects.count() == 10


def test_final_statements_need_a_closed_period_and_are_sent_once(closed, generate, settings):
    out = generate("--send")
    assert out["draft"] is False
    assert out["emails"] == {"queued": 0, "sent": 7, "failed": 0}
    messages = mailed(settings.EMAIL_FILE_PATH)
    assert sorted(m["To"] for m in messages) == sorted({k[0] for k in README})
    zorp = next(m for m in messages if m["To"] == "zorp.blinkman@example.edu")
    attachments = [p.get_filename() for p in zorp.walk() if p.get_filename()]
    assert len(attachments) == 2 and all(a.endswith(".pdf") for a in attachments)
    for s in out["statements"]:
        assert s["status"] == "sent"
        assert "DRAFT" not in pdf_text(s["pdf"])
    # --send again: nothing new to send, nobody mailed twice.
    again = generate("--send")
    assert again["changes"]["unchanged"] == 10
    assert again["emails"] == {"queued": 0, "sent": 0, "failed": 0}
    assert len(mailed(settings.EMAIL_FILE_PATH)) == 7
    # --resend asks for it.
    resent = generate("--send", "--resend", "--pi", "tarn.voxley@example.edu")
    assert resent["emails"]["sent"] == 1
    assert len(mailed(settings.EMAIL_FILE_PATH)) == 8
    assert AuditEvent.objects.filter(action="statement.email.sent").count() == 8


def test_after_sending_a_change_makes_a_revision_and_keeps_the_sent_one(
    closed, generate, run, settings
):
    sent = {s["project"]: s for s in generate("--send")["statements"]}
    old = sent["ocean-circulation"]
    old_bytes = Path(old["pdf"]).read_bytes()
    run("periods", "open", "2025-01", "--reason", "late credit")
    Charge.objects.filter(project__code="ocean-circulation").order_by("pk").first()
    charge = Charge.objects.filter(project__code="ocean-circulation").order_by("pk").first()
    Charge.objects.filter(pk=charge.pk).update(billed_cost=charge.billed_cost - Decimal("100"))
    run("periods", "close", "2025-01")
    out = generate("--send")
    assert out["changes"] == {"new": 0, "replaced": 0, "revised": 1, "unchanged": 9, "removed": 0}
    revised = next(s for s in out["statements"] if s["project"] == "ocean-circulation")
    assert revised["number"] == old["number"] + "-R1"
    assert revised["amount_due"] == "1593.00"
    assert out["emails"]["sent"] == 1  # only the revision is mailed
    kept = Statement.objects.get(number=old["number"])
    assert kept.superseded_by.number == revised["number"]
    assert Path(old["pdf"]).read_bytes() == old_bytes
    assert kept.pdf_sha256 == hashlib.sha256(old_bytes).hexdigest()
    assert "Replaces" in pdf_text(revised["pdf"]) and old["number"] in pdf_text(revised["pdf"])
    assert len(mailed(settings.EMAIL_FILE_PATH)) == 8


def test_drafts_are_not_mailed(january, generate):
    with pytest.raises(CommandError, match="drafts are not mailed"):
        generate("--send")
    assert Statement.objects.count() == 0


def test_a_finalized_period_refuses(closed, generate):
    BillingPeriod.objects.filter(key="2025-01").update(status="finalized")
    with pytest.raises(CommandError, match="finalized"):
        generate()
    assert Statement.objects.count() == 0


def test_unknown_period_and_pi_are_refused(january, generate, run_json, config_path):
    with pytest.raises(CommandError, match="does not exist"):
        run_json("generate", "-p", "2031-01", "-c", config_path)
    with pytest.raises(CommandError, match="no PI"):
        generate("--pi", "nobody@example.edu")


def test_dry_run_writes_nothing(closed, generate, settings):
    out = generate("--dry-run", "--send")
    assert out["status"] == "dry-run"
    assert len(out["statements"]) == 10
    assert out["total_due"] == {"USD": "20227.00"}
    assert Statement.objects.count() == 0
    assert StatementEmail.objects.count() == 0
    assert mailed(settings.EMAIL_FILE_PATH) == []


def test_one_pi(closed, generate, settings):
    out = generate("--pi", "Grix.Mottershaw@example.edu", "--send")
    assert [s["project"] for s in out["statements"]] == [
        "alzheimers-biomarkers",
        "neuroimaging-atlas",
    ]
    assert out["pis"] == 1
    assert out["total_due"] == {"USD": "5509.50"}
    assert [m["To"] for m in mailed(settings.EMAIL_FILE_PATH)] == ["grix.mottershaw@example.edu"]


def test_flagged_charges_are_left_out_and_counted(january, ingest, write_focus, generate):
    bad = {"pi_email": "ada@example.edu", "project_id": "engines", "fund_org": "lowercase"}
    import json

    path = write_focus(
        [{"BilledCost": "99.99", "Tags": json.dumps(bad)}, {"BilledCost": "1.01", "Tags": "{}"}],
        name="extra.csv",
    )
    ingest(path, source="aws", extra=("-p", "2025-01", "--append"))
    out = generate()
    assert out["total_due"] == {"USD": "20227.00"}
    assert out["excluded"]["count"] == 2
    assert out["excluded"]["amount"] == {"USD": "101.00"}
    assert out["excluded"]["by_reason"]["fund_org_pattern"]["amount"] == {"USD": "99.99"}
    assert out["excluded"]["by_reason"]["no_pi"]["count"] == 1


def test_text_output(january, run, config_path):
    out = run("generate", "-p", "2025-01", "-c", config_path)
    assert "Generated 10 draft statements for 2025-01 (7 PIs)." in out
    assert "total due USD 20227.00" in out


def test_period_checks_for_finalizing_and_the_dashboard(closed, generate):
    period = BillingPeriod.objects.get(key="2025-01")
    assert period_has_statements(period) is False
    generate()
    assert period_has_statements(period) is True
    status = period_status(period)
    assert status["statements"] == 10 and status["by_status"]["ready"] == 10
    # A review change after generation: the statements no longer show the figures. (Rejecting
    # clean charges has no service; done by hand, it raises the figures' version as every
    # change to charges does, or the cached check would not see it.)
    with transaction.atomic():
        Charge.objects.filter(project__code="labor-economics").update(
            review_status="rejected", flags=16
        )
        figures_changed([period.pk])
    assert period_has_statements(period) is False
    out = generate()
    assert out["changes"]["removed"] == 1
    assert period_has_statements(period) is True


def test_the_statements_check_is_cached_until_the_charges_change(closed, generate, config):
    """The period page asks the check on every visit; with statements on record it adds up the
    month's charges once per figures version, and any change to the charges shows at once."""
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from billing.services import charge_reassign

    def adds_up_the_month(queries) -> bool:
        return any("GROUP BY" in q["sql"] and "billing_charge" in q["sql"] for q in queries)

    cache.clear()
    period = BillingPeriod.objects.get(key="2025-01")
    generate()
    with CaptureQueriesContext(connection) as first:
        assert period_has_statements(period) is True
    with CaptureQueriesContext(connection) as again:
        assert period_has_statements(period) is True
    assert adds_up_the_month(first.captured_queries)
    assert not adds_up_the_month(again.captured_queries)  # from the cache

    # A reviewer moves one charge to another fund/org: its group's total changes, and a group
    # no statement shows appears. The statements no longer show the figures.
    charge = Charge.objects.filter(period=period, review_status="clean").order_by("id").first()
    charge_reassign(
        charges=Charge.objects.filter(pk=charge.pk), config=config, fund_org="MATH-9999",
        actor="test",
    )  # fmt: skip
    with CaptureQueriesContext(connection) as changed:
        assert period_has_statements(period) is False
    assert adds_up_the_month(changed.captured_queries)
    generate()
    assert period_has_statements(period) is True


def test_a_sent_statement_whose_charges_were_all_rejected_is_revised_to_zero(closed, generate, run):
    generate("--send")
    run("periods", "open", "2025-01", "--reason", "rejected after sending")
    Charge.objects.filter(project__code="labor-economics").update(
        review_status="rejected", flags=16
    )
    run("periods", "close", "2025-01")
    out = generate()
    revised = next(s for s in out["statements"] if s["project"] == "labor-economics")
    assert revised["number"].endswith("-R1")
    assert (revised["list"], revised["amount_due"]) == ("0.00", "0.00")
    assert out["orphaned"] and out["total_due"] == {"USD": "19515.25"}
    assert period_has_statements(BillingPeriod.objects.get(key="2025-01"))


def test_reopening_after_sending_without_a_change_keeps_the_sent_statements(closed, generate, run):
    sent = generate("--send")
    run("periods", "open", "2025-01", "--reason", "late file that changed nothing")
    out = generate()
    assert out["changes"]["unchanged"] == 10
    assert [s["number"] for s in out["statements"]] == [s["number"] for s in sent["statements"]]
    assert {s["status"] for s in out["statements"]} == {"sent"}


def test_generating_while_emails_are_in_flight_is_refused(closed, generate, config):
    from statements.models import StatementRun

    generate()
    run = StatementRun.objects.get()
    statement = Statement.objects.first()
    email = StatementEmail.objects.create(
        run=run, pi=statement.pi, to_address="x@example.edu", status="queued"
    )
    email.statements.add(statement)
    with pytest.raises(CommandError, match="still being sent"):
        generate()
    assert generate("--dry-run")["status"] == "dry-run"


def _reassign(fund_org: str, **filters):
    from billing.config import load_config
    from billing.services import charge_reassign

    charge_reassign(
        charges=Charge.objects.filter(**filters), config=load_config(), fund_org=fund_org
    )


def test_regenerating_after_a_fund_moved_after_sending_never_wedges_the_month(
    closed, generate, run, settings
):
    """issue 11: a sent statement, its charges moved to another fund/org, then every
    `generate` failed with ProtectedError on Statement.superseded_by and finalize refused."""
    sent = {s["project"]: s for s in generate("--send")["statements"]}
    old = sent["labor-economics"]
    old_bytes = Path(old["pdf"]).read_bytes()
    run("periods", "open", "2025-01", "--reason", "fund moved")
    _reassign("ECON-NEW-01", project__code="labor-economics")
    run("periods", "close", "2025-01")
    preview = generate("--dry-run")
    out = generate()
    assert out["changes"] == preview["changes"]
    assert out["changes"] == {"new": 1, "replaced": 0, "revised": 1, "unchanged": 9, "removed": 0}
    numbers = sorted(s["number"] for s in out["statements"])
    assert numbers == sorted(s["number"] for s in preview["statements"])
    zero = next(s for s in out["statements"] if s["number"] == old["number"] + "-R1")
    moved = next(
        s for s in out["statements"] if s["project"] == "labor-economics" and s is not zero
    )
    assert (zero["amount_due"], moved["amount_due"]) == ("0.00", old["amount_due"])
    assert f"moved to statement {moved['number']}" in pdf_text(zero["pdf"])
    again = generate()  # used to raise ProtectedError
    assert again["changes"]["unchanged"] == 11 and not again["changes"]["removed"]
    mailed_before = len(mailed(settings.EMAIL_FILE_PATH))
    done = generate("--send")
    assert done["emails"]["sent"] == 1  # one PI: the 0.00 revision and the new fund's statement
    assert len(mailed(settings.EMAIL_FILE_PATH)) == mailed_before + 1
    assert generate("--send")["emails"]["sent"] == 0  # nothing left to mail
    kept = Statement.objects.get(number=old["number"])
    assert kept.pdf_sha256 == hashlib.sha256(old_bytes).hexdigest()
    assert Path(old["pdf"]).read_bytes() == old_bytes
    assert period_has_statements(BillingPeriod.objects.get(key="2025-01"))
    # The fund moves back: the revision is revised again (sent), never deleted.
    run("periods", "open", "2025-01", "--reason", "fund moved back")
    _reassign("ECON-DEPT-2024", project__code="labor-economics")
    run("periods", "close", "2025-01")
    back = generate("--send")
    assert back["changes"]["revised"] == 2 and back["changes"]["removed"] == 0
    current = {s["number"]: s["amount_due"] for s in back["statements"]}
    assert current[old["number"] + "-R2"] == old["amount_due"]
    assert current[moved["number"] + "-R1"] == "0.00"
    assert period_has_statements(BillingPeriod.objects.get(key="2025-01"))


def test_the_dry_run_text_shows_the_numbers_and_changes_the_run_makes(
    closed, generate, run, config_path
):
    """issue 12: the dry run listed ST-…-00008 where the run made ST-…-00008-R1, and printed
    `changes: {}`."""
    sent = {s["project"]: s for s in generate("--send")["statements"]}
    old = sent["labor-economics"]["number"]
    run("periods", "open", "2025-01", "--reason", "fund moved")
    _reassign("ECON-NEW-01", project__code="labor-economics")
    run("periods", "close", "2025-01")

    preview = run("generate", "-p", "2025-01", "-c", config_path, "--dry-run")
    planned = generate("--dry-run")
    out = run("generate", "-p", "2025-01", "-c", config_path)

    assert f"{old}-R1 " in preview and f"[revises {old}]" in preview
    lines = preview.splitlines()
    assert sum("[unchanged]" in line for line in lines) == 9
    assert sum("[new]" in line for line in lines) == 1
    assert (
        "  Would change: 1 new, 1 revised (sent: a new -R number replaces it), 9 unchanged."
        in lines
    )
    assert "  Changes: 1 new, 1 revised (sent: a new -R number replaces it), 9 unchanged." in (
        out.splitlines()
    )
    assert {s["change"] for s in planned["statements"]} == {"new", "revised", "unchanged"}
    made = Statement.objects.get(number=f"{old}-R1")
    assert made.due_amount == 0
    numbers = {ln.split()[0] for ln in lines if ln.startswith("  ST-")}
    assert numbers == {ln.split()[0] for ln in out.splitlines() if ln.startswith("  ST-")}


def test_generate_one_pi_and_send_leaves_the_other_pis_alone(
    closed, generate, run, config_path, settings
):
    """`generate --pi EMAIL --send`: one PI's statements made (or brought up to date) and
    their one email queued and sent; every other PI's statements untouched and unsent."""
    everyone = generate()  # all ten, final, none sent
    others_before = {
        s.number: (s.version, s.pdf_sha256, s.status)
        for s in Statement.objects.exclude(pi__email="tarn.voxley@example.edu")
    }

    out = generate("--pi", "Tarn.Voxley@example.edu", "--send")

    assert {s["pi_email"] for s in out["statements"]} == {"tarn.voxley@example.edu"}
    assert out["changes"]["unchanged"] == len(out["statements"]) >= 1
    assert out["emails"] == {"queued": 0, "sent": 1, "failed": 0}
    (message,) = mailed(settings.EMAIL_FILE_PATH)
    assert message["To"] == "tarn.voxley@example.edu"
    attached = [p.get_filename() for p in message.walk() if p.get_filename()]
    assert sorted(attached) == sorted(f"{s['number']}.pdf" for s in out["statements"])
    assert {s.status for s in Statement.objects.filter(pi__email="tarn.voxley@example.edu")} == {
        "sent"
    }
    others_after = {
        s.number: (s.version, s.pdf_sha256, s.status)
        for s in Statement.objects.exclude(pi__email="tarn.voxley@example.edu")
    }
    assert others_after == others_before
    assert {status for _, _, status in others_after.values()} == {"ready"}
    assert len(everyone["statements"]) == len(others_after) + len(out["statements"])
    text = run("generate", "-p", "2025-01", "-c", config_path, "--pi", "tarn.voxley@example.edu")
    assert f"Generated {len(out['statements'])} statements for 2025-01 (1 PI)." in text
    # Sent once: asking again mails nothing.
    again = generate("--pi", "tarn.voxley@example.edu", "--send")
    assert again["emails"]["sent"] == 0
    assert len(mailed(settings.EMAIL_FILE_PATH)) == 1
