"""The review queue: approve, reject, return, reassign — through the services, the command line
and the admin — with each decision recorded on its charges and in the audit trail."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management.base import CommandError
from django.db import transaction

from accounts.models import AuditEvent
from billing.models import (
    PI,
    AccountMapping,
    BillingPeriod,
    Charge,
    Flag,
    Project,
    ReviewDecision,
)
from billing.selectors import period_summary
from billing.services import (
    PeriodError,
    ReviewError,
    charge_approve,
    charge_reassign,
    charge_reject,
    charge_return,
    period_close,
)

from .conftest import GOOD_TAGS

pytestmark = pytest.mark.django_db

D = Decimal
QUEUE_URL = "/admin/billing/reviewitem/"

BAD_FUND = json.dumps(
    {"pi_email": "ada@example.edu", "project_id": "engines", "fund_org": "not a fund"}
)


@pytest.fixture
def config_path(tmp_path):
    """The example configuration, with a flag pattern: rows whose resource id starts "odd-" are
    flagged for review although fully attributed, so they can be approved as they are."""
    from .conftest import EXAMPLE_CONFIG

    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    assert "  flag_patterns: []\n" in text
    path = tmp_path / "config.yaml"
    path.write_text(text.replace("  flag_patterns: []\n", "  flag_patterns: ['^odd-']\n"))
    return str(path)


@pytest.fixture
def odd(month, ingest, write_focus):
    """Two more flagged charges in 2025-01, attributed and matching a flag pattern: approvable."""
    ingest(
        write_focus(
            [
                {"BilledCost": "1.005", "ResourceId": "odd-1", "Tags": GOOD_TAGS},
                {"BilledCost": "2.0000000001", "ResourceId": "odd-2", "Tags": GOOD_TAGS},
            ],
            name="odd.csv",
        ),
        source="aws",
        extra=("--append",),
    )
    return month


@pytest.fixture
def month(ingest, write_focus):
    """2025-01: one clean charge, two flagged with full attribution (fund/org fails the
    pattern), one flagged with no tags at all (no PI, project or fund/org)."""
    ingest(
        write_focus(
            [
                {"BilledCost": "10.00", "ResourceId": "clean", "Tags": GOOD_TAGS},
                {"BilledCost": "1.005", "ResourceId": "bad-fund-1", "Tags": BAD_FUND},
                {"BilledCost": "2.0000000001", "ResourceId": "bad-fund-2", "Tags": BAD_FUND},
                {
                    "BilledCost": "7.25",
                    "ResourceId": "untagged",
                    "SubAccountId": "acct-9",
                    "Tags": "",
                },
            ]
        ),
        source="aws",
    )
    return BillingPeriod.objects.get(key="2025-01")


def charge(resource_id: str) -> Charge:
    return Charge.objects.get(resource_id=resource_id)


def billable(period) -> D:
    return D(period_summary(period)["totals"]["USD"]["billable"])


def test_flagged_charges_are_not_billable_until_approved(odd):
    assert charge("odd-1").review_status == "flagged"
    assert Flag(charge("odd-1").flags) == Flag.PATTERN_MATCH
    assert billable(odd) == D("10.00")

    result = charge_approve(charges=Charge.objects.filter(resource_id__startswith="odd-"))

    assert result.count == 2
    assert result.billed == {"USD": "3.0050000001"}
    assert charge("odd-1").review_status == "approved"
    assert billable(odd) == D("13.0050000001")


def test_approving_what_cant_be_billed_as_it_is_is_refused_as_a_whole(odd, config):
    """A fund/org failing the pattern, or no PI/project/fund/org: reassign first. The reviewer
    confirmed a count and an amount; billing part of it would bill something else."""
    assert Flag(charge("bad-fund-1").flags) == Flag.FUND_ORG_PATTERN
    before = sorted(Charge.objects.values_list("resource_id", "review_status"))

    with pytest.raises(ReviewError) as refused:
        charge_approve(charges=Charge.objects.filter(period=odd))
    message = str(refused.value)
    assert "nothing was approved: 3 of the selected charge(s)" in message
    assert "1 with no PI, project or fund/org" in message
    assert "2 with a fund/org that fails the configured patterns" in message
    assert "Reassign them first" in message
    for picked in ("bad-fund-1", "untagged"):
        with pytest.raises(ReviewError, match="1 of the selected"):
            charge_approve(charges=Charge.objects.filter(resource_id=picked), config=config)

    assert sorted(Charge.objects.values_list("resource_id", "review_status")) == before
    assert not ReviewDecision.objects.exists()
    assert not AuditEvent.objects.filter(action="charge.approve").exists()
    assert billable(odd) == D("10.00")

    # Reassigned to a fund that passes, they are clean and billable without an approval.
    charge_reassign(
        charges=Charge.objects.filter(resource_id__startswith="bad-fund"),
        config=config,
        fund_org="ENG-42",
    )
    assert charge("bad-fund-2").review_status == "clean"


def test_approval_checks_the_fund_org_against_todays_patterns(odd, config):
    """A pattern tightened in the admin after the import: the charge's flags don't say so, the
    patterns the admin holds do."""
    from billing.models import ReviewPattern

    seeded = ReviewPattern.objects.get(kind="fund_org")  # the example file's one pattern
    ReviewPattern.objects.filter(pk=seeded.pk).update(enabled=False)
    stricter = ReviewPattern.objects.create(kind="fund_org", pattern=r"^ENG-\d+$")
    odd_ones = Charge.objects.filter(resource_id__startswith="odd-")
    with pytest.raises(ReviewError, match="2 with a fund/org that fails"):
        charge_approve(charges=odd_ones, config=config)
    stricter.delete()
    ReviewPattern.objects.filter(pk=seeded.pk).update(enabled=True)
    assert charge_approve(charges=odd_ones, config=config).count == 2


def test_a_decision_is_recorded_on_each_charge_and_audited(odd):
    result = charge_approve(charges=Charge.objects.filter(resource_id__startswith="odd-"))

    decision = ReviewDecision.objects.get()
    assert result.decisions == [decision]
    assert decision.charge_count == 2
    assert set(decision.charges.values_list("resource_id", flat=True)) == {"odd-1", "odd-2"}
    assert list(charge("odd-1").decisions.all()) == [decision]
    event = AuditEvent.objects.get(action="charge.approve")
    assert event.details["charges"] == 2
    assert event.details["billed"] == {"USD": "3.0050000001"}
    assert event.object_id == str(decision.pk)


def test_reject_needs_a_note_and_never_bills(month):
    with pytest.raises(ReviewError, match="note"):
        charge_reject(charges=Charge.objects.filter(resource_id="bad-fund-1"), note="  ")

    charge_reject(charges=Charge.objects.filter(resource_id="bad-fund-1"), note="duplicate")

    rejected = charge("bad-fund-1")
    assert rejected.review_status == "rejected"
    assert rejected.decisions.get().note == "duplicate"
    summary = period_summary(month)
    assert summary["rejected"] == 1
    # Rejected charges count nowhere: not billed, not billable, not flagged.
    assert D(summary["totals"]["USD"]["billed"]) == D("10.00") + D("2.0000000001") + D("7.25")


def test_rejected_charge_returns_to_the_queue_only_while_open(month):
    charge_reject(charges=Charge.objects.filter(resource_id="bad-fund-1"), note="dup")
    charge_return(charges=Charge.objects.filter(resource_id="bad-fund-1"))
    assert charge("bad-fund-1").review_status == "flagged"

    charge_reject(charges=Charge.objects.filter(resource_id="bad-fund-1"), note="dup again")
    period_close(key="2025-01")
    with pytest.raises(PeriodError, match="reopen"):
        charge_return(charges=Charge.objects.filter(resource_id="bad-fund-1"))
    assert charge("bad-fund-1").review_status == "rejected"
    actions = list(charge("bad-fund-1").decisions.order_by("id").values_list("action", flat=True))
    assert actions == ["reject", "return", "reject"]


def test_reassign_resolves_flags_and_saves_the_account_map(month, config, ingest, write_focus):
    result = charge_reassign(
        charges=Charge.objects.filter(resource_id="untagged"),
        config=config,
        pi_email="Grace@Example.edu",
        project_id="compilers",
        fund_org="CS-1952",
        save_mapping=True,
    )

    fixed = charge("untagged")
    assert (fixed.pi.email, fixed.project.code, fixed.fund_org) == (
        "grace@example.edu",
        "compilers",
        "CS-1952",
    )
    assert fixed.flags == 0 and fixed.review_status == "clean"
    mapping = AccountMapping.objects.get(account_id="acct-9")
    assert result.account_mapping == mapping
    assert (mapping.pi_email, mapping.project_id, mapping.fund_org) == (
        "grace@example.edu",
        "compilers",
        "CS-1952",
    )
    assert AuditEvent.objects.filter(action="account_mapping.save").count() == 1

    # The next delivery for that account is attributed automatically.
    ingest(
        write_focus(
            [{"BilledCost": "3.00", "ResourceId": "next", "SubAccountId": "acct-9", "Tags": ""}],
            name="feb.csv",
        ),
        source="aws",
        extra=("-p", "2025-01", "--append"),
    )
    assert charge("next").review_status == "clean"
    assert charge("next").pi.email == "grace@example.edu"


def test_reassign_to_a_fund_that_fails_the_pattern_is_refused(month, config):
    with pytest.raises(ReviewError, match="does not match"):
        charge_reassign(charges=Charge.objects.all(), config=config, fund_org="lowercase")
    assert not ReviewDecision.objects.exists()


def test_reassign_flags_a_clean_charge_whose_pi_is_removed_never(month, config):
    # Reassigning only a fund keeps other reasons: a pattern failure fixed, status follows.
    charge_reassign(
        charges=Charge.objects.filter(resource_id__startswith="bad-fund"),
        config=config,
        fund_org="ENG-42",
    )
    assert {c.review_status for c in Charge.objects.filter(resource_id__startswith="bad")} == {
        "clean"
    }
    assert billable(month) == D("13.0050000001")


# ---- command line -------------------------------------------------------------------------


def test_review_list_json(month, run_json):
    rows = run_json("review", "list", "-p", "2025-01")

    assert [r["id"] for r in rows] == sorted(
        Charge.objects.filter(review_status="flagged").values_list("id", flat=True)
    )
    first = rows[0]
    assert {"id", "reasons", "pi_email", "project_id", "billed"} <= set(first)
    assert first["reasons"] == ["fund_org_pattern"]
    assert first["billed"] == "1.005"
    untagged = [r for r in rows if r["pi_email"] is None]
    assert untagged[0]["reasons"] == ["no_pi", "no_project", "no_fund_org"]


def test_review_list_by_reason(month, run_json):
    rows = run_json("review", "list", "-p", "2025-01", "--reason", "no_pi")
    assert [r["billed"] for r in rows] == ["7.25"]


def test_review_approve_by_period_and_reason(odd, run):
    out = run("review", "approve", "-p", "2025-01", "--reason", "pattern_match")
    assert "Approved 2 charge(s): USD 3.0050000001." in out
    assert charge("untagged").review_status == "flagged"


def test_review_approve_refuses_a_fund_org_failing_the_pattern(odd, run):
    with pytest.raises(CommandError, match="2 of the selected charge.*Reassign them first"):
        run("review", "approve", "-p", "2025-01", "--reason", "fund_org_pattern")
    with pytest.raises(CommandError, match="nothing was approved: 3 of the selected"):
        run("review", "approve", "-p", "2025-01")
    with pytest.raises(CommandError, match="1 with no PI"):
        run("review", "approve", "--id", charge("untagged").pk)
    assert not ReviewDecision.objects.exists()
    assert charge("bad-fund-1").review_status == "flagged"


def test_review_approve_by_id_and_reject_by_id(odd, run):
    one = charge("odd-1").pk
    two = charge("bad-fund-2").pk
    run("review", "approve", "--id", one)
    run("review", "reject", "--id", two, "--note", "not ours")
    assert charge("odd-1").review_status == "approved"
    assert charge("bad-fund-2").review_status == "rejected"


def test_review_ids_given_one_flag_each_all_count(odd, run):
    """`--id 1 --id 2` selects both, as `--id 1 2` does (argparse alone would keep the last)."""
    one, two = charge("bad-fund-1").pk, charge("bad-fund-2").pk
    out = run("review", "reject", "--id", one, "--id", two, "--note", "not ours")
    assert "Rejected 2 charge(s)" in out
    assert {charge("bad-fund-1").review_status, charge("bad-fund-2").review_status} == {"rejected"}


def test_review_reassign_by_id_is_audited_like_the_admin(month, run, run_json):
    untagged = charge("untagged").pk
    out = run(
        "review",
        "reassign",
        "--id",
        untagged,
        "--pi",
        "Grace@Example.edu",
        "--project",
        "compilers",
        "--fund-org",
        "CS-1952",
        "--save-mapping",
        "--note",
        "lab moved",
    )
    assert "Reassigned 1 charge(s): USD 7.25." in out
    assert "Saved the account-map entry for acct-9." in out
    fixed = charge("untagged")
    assert (fixed.pi.email, fixed.project.code, fixed.fund_org) == (
        "grace@example.edu",
        "compilers",
        "CS-1952",
    )
    assert fixed.review_status == "clean"
    decision = ReviewDecision.objects.get(action="reassign")
    assert decision.note == "lab moved"
    assert decision.attribution == {
        "pi_email": "grace@example.edu",
        "project_id": "compilers",
        "fund_org": "CS-1952",
    }
    event = AuditEvent.objects.get(action="charge.reassign")
    assert event.reason == "lab moved" and event.details["charges"] == 1
    assert event.actor.endswith("@cli")
    assert AccountMapping.objects.get(account_id="acct-9").fund_org == "CS-1952"


def test_review_reassign_by_period_and_reason_touches_the_queue_only(odd, run_json):
    result = run_json(
        "review",
        "reassign",
        "-p",
        "2025-01",
        "--reason",
        "fund_org_pattern",
        "--fund-org",
        "ENG-42",
    )
    assert result["count"] == 2 and result["billed"] == {"USD": "3.0050000001"}
    assert result["account_mapping"] is None
    assert {charge("bad-fund-1").fund_org, charge("bad-fund-2").fund_org} == {"ENG-42"}
    assert charge("bad-fund-1").review_status == "clean"
    # Without --reason, the month's queue: never its clean or approved charges.
    run_json("review", "reassign", "-p", "2025-01", "--fund-org", "OPS-7")
    assert charge("clean").fund_org == "MATH-1843"
    assert charge("untagged").fund_org == "OPS-7"
    assert charge("odd-1").fund_org == "OPS-7"


def test_review_reassign_refusals_change_nothing(month, run, config_path):
    with pytest.raises(CommandError, match="does not match the configured patterns"):
        run(
            "review",
            "reassign",
            "-c",
            config_path,
            "--id",
            charge("untagged").pk,
            "--fund-org",
            "lowercase",
        )
    with pytest.raises(CommandError, match="at least one of"):
        run("review", "reassign", "-c", config_path, "--id", charge("untagged").pk)
    with pytest.raises(CommandError, match="one source and one account"):
        run(
            "review",
            "reassign",
            "-c",
            config_path,
            "-p",
            "2025-01",
            "--fund-org",
            "ENG-1",
            "--save-mapping",
        )
    assert not ReviewDecision.objects.exists()
    assert charge("untagged").fund_org == ""


def test_review_reject_without_note_is_an_error(month, run):
    with pytest.raises(CommandError):
        run("review", "reject", "--id", charge("bad-fund-1").pk)


def test_review_unknown_id_and_missing_selection(month, run):
    with pytest.raises(CommandError, match="no charge with id 999999"):
        run("review", "approve", "--id", 999999)
    with pytest.raises(CommandError, match="--id"):
        run("review", "approve")


def test_show_pi(month, run_json, run):
    charge_reject(charges=Charge.objects.filter(resource_id="bad-fund-1"), note="dup")
    data = run_json("show", "ADA@example.edu", "-p", "2025-01")

    by_fund = {p["fund_org"]: p for p in data["projects"]}
    assert by_fund["MATH-1843"]["billable"] == "10.00"
    assert by_fund["not a fund"]["billable"] == "0"
    assert by_fund["not a fund"]["flagged"] == 1
    assert by_fund["not a fund"]["flagged_billed"] == "2.0000000001"
    assert data["totals"]["USD"] == {"billable": "10.00", "flagged_billed": "2.0000000001"}
    assert "engines" in run("show", "ada@example.edu", "-p", "2025-01")


# ---- admin --------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, django_user_model, settings, config_path):
    settings.OPENCHARGEBACK_CONFIG = config_path
    user = django_user_model.objects.create_superuser("boss", "boss@example.edu", "pw")
    client.force_login(user)
    return client


def test_queue_shows_flagged_charges_and_totals_per_reason(month, admin_client):
    page = admin_client.get(QUEUE_URL)

    assert page.status_code == 200
    totals = {(r["code"], r["currency"]): r for r in page.context["queue_totals"]}
    assert totals[("fund_org_pattern", "USD")]["count"] == 2
    assert totals[("fund_org_pattern", "USD")]["billed"] == D("3.0050000001")
    assert totals[("no_pi", "USD")]["billed"] == D("7.25")
    assert totals[("", "USD")]["count"] == 3  # all shown
    assert b"clean" not in page.content.split(b"result_list")[1]  # clean charges aren't queued


def test_admin_approve_all_matching_filter_confirms_then_approves(odd, admin_client):
    url = f"{QUEUE_URL}?reason=pattern_match"
    first = charge("odd-1").pk
    confirm = admin_client.post(
        url, {"action": "approve", "select_across": "1", ACTION_CHECKBOX_NAME: [first]}
    )
    assert confirm.status_code == 200
    assert confirm.context["summary"].startswith("2 charges selected")  # all matching, not the page
    assert b"3.01" in confirm.content
    assert charge("odd-1").review_status == "flagged"  # nothing yet

    done = admin_client.post(
        url,
        {"action": "approve", "select_across": "1", ACTION_CHECKBOX_NAME: [first], "post": "yes"},
        follow=True,
    )
    assert done.status_code == 200
    assert charge("odd-2").review_status == "approved"
    assert ReviewDecision.objects.get().acting_user.username == "boss"


def test_admin_approve_of_a_failing_fund_org_is_a_message_not_a_500(odd, admin_client):
    picked = [charge("bad-fund-1").pk, charge("odd-1").pk]
    done = admin_client.post(
        QUEUE_URL,
        {"action": "approve", ACTION_CHECKBOX_NAME: picked, "post": "yes"},
        follow=True,
    )
    assert done.status_code == 200
    shown = [str(m) for m in done.context["messages"]]
    assert any(
        "nothing was approved: 1 of the selected charge(s)" in m and "Reassign them first" in m
        for m in shown
    ), shown
    assert charge("odd-1").review_status == "flagged"  # refused as a whole
    assert charge("bad-fund-1").review_status == "flagged"
    assert not ReviewDecision.objects.exists()


def test_admin_reject_requires_a_note(month, admin_client):
    pk = charge("bad-fund-1").pk
    data = {"action": "reject", ACTION_CHECKBOX_NAME: [pk], "post": "yes", "note": ""}
    page = admin_client.post(QUEUE_URL, data)
    assert page.status_code == 200 and page.context["form"].errors
    assert charge("bad-fund-1").review_status == "flagged"

    admin_client.post(QUEUE_URL, {**data, "note": "test account"})
    assert charge("bad-fund-1").review_status == "rejected"


def test_admin_reassign_with_mapping(month, admin_client):
    pk = charge("untagged").pk
    admin_client.post(
        QUEUE_URL,
        {
            "action": "reassign",
            ACTION_CHECKBOX_NAME: [pk],
            "post": "yes",
            "pi_email": "grace@example.edu",
            "project_id": "compilers",
            "fund_org": "CS-1952",
            "save_mapping": "on",
        },
    )
    assert charge("untagged").review_status == "clean"
    assert AccountMapping.objects.filter(account_id="acct-9").exists()


def test_charge_detail_shows_discount_history_and_import(month, admin_client):
    target = charge("bad-fund-1")
    charge_reject(charges=Charge.objects.filter(pk=target.pk), note="wrong lab")
    page = admin_client.get(f"/admin/billing/charge/{target.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "wrong lab" in text and "Rejected" in text
    assert "import #" in text
    assert "10.995" in text  # discount: list 12.00 − billed 1.005


def listed_resources(admin_client, url: str) -> set[str]:
    page = admin_client.get(url)
    assert page.status_code == 200
    return {obj.resource_id for obj in page.context["cl"].result_list}


def test_charge_search_matches_identifiers_exactly_case_included(month, admin_client):
    charges = "/admin/billing/charge/"
    assert listed_resources(admin_client, f"{charges}?q=bad-fund-1") == {"bad-fund-1"}
    assert listed_resources(admin_client, f"{charges}?q=BAD-FUND-1") == set()
    assert listed_resources(admin_client, f"{charges}?q=bad-fund") == set()  # no substrings
    # The same box finds a sub-account and a fund/org.
    assert listed_resources(admin_client, f"{charges}?q=acct-9") == {"untagged"}
    assert listed_resources(admin_client, f"{QUEUE_URL}?q=not a fund") == {
        "bad-fund-1",
        "bad-fund-2",
    }


def test_charge_search_finds_each_column_it_names_through_the_search_index(month, admin_client):
    """Resource id, fund/org, sub-account and invoice id, as the box's help says; newest first.
    On PostgreSQL the matches are found through the BRIN bloom index of migration 0020, which
    the planner uses only when asked (else the search reads the whole table)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    charges = "/admin/billing/charge/"
    Charge.objects.filter(resource_id="clean").update(invoice_id="INV-2025-01")
    page = admin_client.get(f"{charges}?q=x")
    assert "A resource id, fund/org, sub-account or invoice id" in page.content.decode()
    expected = {
        "clean": {"clean"},
        "INV-2025-01": {"clean"},
        "not a fund": {"bad-fund-1", "bad-fund-2"},
        "acct-9": {"untagged"},
        "no-such-identifier": set(),
    }
    for term, resources in expected.items():
        with CaptureQueriesContext(connection) as queries:
            page = admin_client.get(charges, {"q": term})
        assert page.status_code == 200
        rows = list(page.context["cl"].result_list)
        assert {r.resource_id for r in rows} == resources, term
        assert [r.pk for r in rows] == sorted((r.pk for r in rows), reverse=True)
        if connection.vendor != "postgresql":
            continue
        sqls = [q["sql"] for q in queries.captured_queries]
        asked = sqls.index("SET LOCAL enable_seqscan = off")
        search = next(sql for sql in sqls[asked:] if sql.startswith("SELECT"))
        assert '"billing_charge"."invoice_id" =' in search
        # Four rows: walking the primary key is cheaper still. Without it, the search index
        # answers the whole condition (a scan of it per column, OR-ed).
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_indexscan = off")
            cursor.execute("EXPLAIN " + search)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "charge_search_bloom" in plan, plan


def test_the_queues_search_of_every_charge_lists_every_match_in_its_sort(
    month, admin_client, monkeypatch
):
    """ "All reviewed or waiting" searches every charge. On PostgreSQL it looks the matches up in
    the search index as the charge list does, in the list's order; while they fit under the cap
    the list, its totals and its actions have exactly them, in any of the queue's sorts. Past
    the cap it reads the table, so the totals and "select all" still count every match (the
    charge list, which has neither, keeps the first CAP + 1)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from billing.admin.widgets import CappedCountPaginator

    charge_reject(charges=Charge.objects.filter(resource_id="bad-fund-1"), note="test")
    Charge.objects.filter(resource_id="clean").update(sub_account_id="not a fund")
    matches = Charge.objects.filter(resource_id__in=["clean", "bad-fund-1", "bad-fund-2"])
    by_billed = [c.resource_id for c in sorted(matches, key=lambda c: (c.billed_cost, -c.pk))]
    for cap, through_index in ((10_000, True), (2, False)):
        monkeypatch.setattr(CappedCountPaginator, "CAP", cap)
        for order, expected in (("3", by_billed), ("-3", by_billed[::-1])):
            with CaptureQueriesContext(connection) as queries:
                page = admin_client.get(QUEUE_URL, {"status": "all", "q": "not a fund", "o": order})
            assert page.status_code == 200
            assert [c.resource_id for c in page.context["cl"].result_list] == expected
            totals = {r["code"]: r["count"] for r in page.context["queue_totals"]}
            assert totals[""] == 3  # clean, rejected and flagged
            if connection.vendor != "postgresql":
                continue
            sqls = [q["sql"] for q in queries.captured_queries]
            asked = sqls.index("SET LOCAL enable_seqscan = off")  # the look-up in the index
            head = next(sql for sql in sqls[asked:] if sql.startswith("SELECT"))
            assert head.endswith(f"LIMIT {cap + 1}")  # in the list's order: Django sorts first
            listed = [sql for sql in sqls if "billed_cost" in sql and sql != head]
            assert listed
            for sql in listed:  # the page and the totals: of the matches the head holds, or all
                assert ('"id" IN (' in sql) is through_index, (cap, sql)
    # The queue's other views read their own indexes, not the search index.
    with CaptureQueriesContext(connection) as queries:
        assert listed_resources(admin_client, f"{QUEUE_URL}?q=not a fund") == {"bad-fund-2"}
    assert "SET LOCAL enable_seqscan = off" not in [q["sql"] for q in queries.captured_queries]


def test_pi_and_project_filters_find_their_charges(month, admin_client):
    charges = "/admin/billing/charge/"
    # PI emails are compared without case; project ids exactly.
    assert listed_resources(admin_client, f"{charges}?pi_email=ADA@example.edu") == {
        "clean",
        "bad-fund-1",
        "bad-fund-2",
    }
    # The queue shows the flagged ones only.
    assert listed_resources(admin_client, f"{QUEUE_URL}?project_id=engines") == {
        "bad-fund-1",
        "bad-fund-2",
    }
    assert listed_resources(admin_client, f"{charges}?pi_email=nobody@example.edu") == set()


def test_big_lists_say_more_than_the_cap_not_a_wrong_count(month, admin_client, monkeypatch):
    from billing.admin.review import ReviewQueueAdmin
    from billing.admin.widgets import CappedCountPaginator

    monkeypatch.setattr(CappedCountPaginator, "CAP", 2)
    monkeypatch.setattr(ReviewQueueAdmin, "list_per_page", 1)
    page = admin_client.get("/admin/billing/charge/").content.decode()
    assert "more than 2 charges" in page
    queue = admin_client.get(QUEUE_URL).content.decode()  # three flagged charges
    assert "more than 2 charges" in queue
    assert "Select all matching charges (more than 2)" in queue
    monkeypatch.setattr(CappedCountPaginator, "CAP", 3)
    assert "3 charges" in admin_client.get(QUEUE_URL).content.decode()


def test_pages_in_and_beyond_the_counted_head_hold_the_right_charges(
    month, admin_client, monkeypatch
):
    """Pages up to the cap come from one query of ids; later pages and other orders don't."""
    from billing.admin.charges import ChargeAdmin
    from billing.admin.review import ReviewQueueAdmin
    from billing.admin.widgets import CappedCountPaginator

    monkeypatch.setattr(CappedCountPaginator, "CAP", 2)
    monkeypatch.setattr(ChargeAdmin, "list_per_page", 1)
    monkeypatch.setattr(ReviewQueueAdmin, "list_per_page", 1)
    newest_first = list(Charge.objects.order_by("-id").values_list("resource_id", flat=True))

    pages = [
        listed_resources(admin_client, f"/admin/billing/charge/?p={number}")
        for number in (1, 2, 3)  # a count capped at 3 rows makes three pages
    ]

    assert pages == [{resource} for resource in newest_first[:3]]
    # Sorted by a column (o=1 is "service · resource", sorted by resource id; o counts from 0):
    # the page query Django makes. The queue sorts by its columns (the charge list by id only).
    # The queue has actions: its columns count from 1 (0 is the checkbox), so o=2 is resource id.
    assert listed_resources(admin_client, f"{QUEUE_URL}?o=2&p=1") == {"bad-fund-1"}
    assert listed_resources(admin_client, f"{QUEUE_URL}?o=-2&p=1") == {"untagged"}


def listed_in_order(admin_client, url: str) -> list[str]:
    page = admin_client.get(url)
    assert page.status_code == 200
    return [obj.resource_id for obj in page.context["cl"].result_list]


def test_charge_list_sorts_by_id_only_and_the_queue_by_its_columns(odd, admin_client):
    """A sort by any other column would read every charge in the database (30 s at ten
    million): the charge list ignores it, even from a hand-made URL."""
    charges = "/admin/billing/charge/"
    newest_first = list(Charge.objects.order_by("-id").values_list("resource_id", flat=True))
    for column in (1, 5, 6, -1, -5, -6):  # resource id, fund/org, status
        assert listed_in_order(admin_client, f"{charges}?o={column}") == newest_first
    assert listed_in_order(admin_client, f"{charges}?o=0") == newest_first[::-1]
    page = admin_client.get(charges).content.decode()
    assert "?o=1" not in page and "?o=0" in page  # only the charge column's header sorts
    # The queue (with actions, so o=2 is its resource column) sorts by resource id.
    by_resource = ["bad-fund-1", "bad-fund-2", "odd-1", "odd-2", "untagged"]
    assert listed_in_order(admin_client, f"{QUEUE_URL}?o=2") == by_resource
    assert listed_in_order(admin_client, f"{QUEUE_URL}?o=-2") == by_resource[::-1]
    billed = [
        Charge.objects.get(resource_id=r).billed_cost
        for r in listed_in_order(admin_client, f"{QUEUE_URL}?o=3")
    ]
    assert len(billed) == 5 and billed == sorted(billed) and billed[0] < billed[-1]


def test_a_search_that_fits_on_one_page_reads_the_table_once(month, admin_client):
    """Django shows a one-page result by running the filtered query again; the capped head
    already holds every id, so the page reads the rows by key (at ten million charges a
    search reads the table: 2 s each time)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for url, expected in (
        ("/admin/billing/charge/?q=acct-9", ["untagged"]),
        ("/admin/billing/charge/?q=acct-9&all=", ["untagged"]),
        ("/admin/billing/charge/?q=no-such-id", []),
    ):
        with CaptureQueriesContext(connection) as queries:
            assert listed_in_order(admin_client, url) == expected
        scans = [
            q["sql"]
            for q in queries.captured_queries
            if "sub_account_id" in q["sql"] and '"id" IN (' not in q["sql"]
        ]
        assert len(scans) == 1, scans  # the head; the page reads its rows by id
    newest_first = list(Charge.objects.order_by("-id").values_list("resource_id", flat=True))
    assert listed_in_order(admin_client, "/admin/billing/charge/?all=") == newest_first


def test_a_sorted_page_finds_its_ids_first_then_reads_those_rows(odd, admin_client, monkeypatch):
    """Sorted by a column, a page's ids come from a query of ids alone (an index-only scan of
    the charges in review on PostgreSQL), then the page reads only those rows."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from billing.admin.review import ReviewQueueAdmin

    monkeypatch.setattr(ReviewQueueAdmin, "list_per_page", 2)
    pages = []
    for number in (1, 2, 3):
        with CaptureQueriesContext(connection) as queries:
            pages.append(listed_in_order(admin_client, f"{QUEUE_URL}?o=2&p={number}"))
        rows = [
            q["sql"]
            for q in queries.captured_queries
            if q["sql"].startswith('SELECT "billing_charge"."id", ') and "ORDER BY" in q["sql"]
        ]
        assert rows and all('"id" IN (' in q for q in rows), rows  # the page's rows, by id
    assert pages == [["bad-fund-1", "bad-fund-2"], ["odd-1", "odd-2"], ["untagged"]]


def test_every_filter_returns_its_charges_decided_or_not(month, admin_client):
    """The status and reason filters, and the others, on the charge list and the queue: the
    same charges on SQLite and on PostgreSQL, where they read the index of charges in review."""
    charge_reject(charges=Charge.objects.filter(resource_id="bad-fund-1"), note="test lab")
    charges = "/admin/billing/charge/"
    pi = PI.objects.get(email="ada@example.edu")
    period = month.pk
    expected = {
        f"{charges}?reason=fund_org_pattern": {"bad-fund-1", "bad-fund-2"},
        f"{charges}?reason=no_pi": {"untagged"},
        f"{charges}?reason=pattern_match": set(),
        f"{charges}?reason=nonsense": set(),
        f"{charges}?review_status__exact=flagged": {"bad-fund-2", "untagged"},
        f"{charges}?review_status__exact=rejected": {"bad-fund-1"},
        f"{charges}?review_status__exact=clean": {"clean"},
        f"{charges}?review_status__exact=rejected&reason=fund_org_pattern": {"bad-fund-1"},
        f"{charges}?period__id__exact={period}&reason=no_pi": {"untagged"},
        f"{charges}?pi_email={pi.email}&reason=fund_org_pattern": {"bad-fund-1", "bad-fund-2"},
        f"{charges}?project_id=engines": {"clean", "bad-fund-1", "bad-fund-2"},
        f"{charges}?q=acct-9": {"untagged"},
        f"{charges}?service=Compute": {"clean", "bad-fund-1", "bad-fund-2", "untagged"},
        f"{charges}?service=compute": set(),  # as delivered, case included
        f"{charges}?category=Credit": set(),
        QUEUE_URL: {"bad-fund-2", "untagged"},
        f"{QUEUE_URL}?reason=fund_org_pattern": {"bad-fund-2"},
        f"{QUEUE_URL}?status=rejected": {"bad-fund-1"},
        f"{QUEUE_URL}?status=rejected&reason=fund_org_pattern": {"bad-fund-1"},
        f"{QUEUE_URL}?status=rejected&reason=no_pi": set(),
        f"{QUEUE_URL}?status=approved": set(),
        f"{QUEUE_URL}?status=all": {"clean", "bad-fund-1", "bad-fund-2", "untagged"},
        f"{QUEUE_URL}?status=all&reason=fund_org_pattern": {"bad-fund-1", "bad-fund-2"},
        f"{QUEUE_URL}?period__id__exact={period}": {"bad-fund-2", "untagged"},
        f"{QUEUE_URL}?pi_email=ADA@example.edu": {"bad-fund-2"},
        f"{QUEUE_URL}?q=not a fund": {"bad-fund-2"},
        f"{QUEUE_URL}?q=acct-9": {"untagged"},
    }
    found = {url: listed_resources(admin_client, url) for url in expected}
    assert found == expected


def test_queue_totals_are_the_sums_of_the_rows_shown(odd, admin_client):
    """Per currency: each reason's count and billed amount, and the "All shown" line, equal the
    sums over the charges the list shows, for any filter."""
    charge_reject(charges=Charge.objects.filter(resource_id="bad-fund-1"), note="test lab")
    for url in (
        QUEUE_URL,
        f"{QUEUE_URL}?reason=fund_org_pattern",
        f"{QUEUE_URL}?reason=pattern_match",
        f"{QUEUE_URL}?status=rejected",
        f"{QUEUE_URL}?status=all",
        f"{QUEUE_URL}?q=not a fund",
        f"{QUEUE_URL}?project_id=engines",
    ):
        page = admin_client.get(url)
        rows = list(page.context["cl"].result_list)
        assert rows, url
        expected = {}
        for row in rows:
            codes = [flag.code for flag in Flag if row.flags & flag] + [""]
            for code in codes:
                count, billed = expected.get((code, row.billing_currency), (0, D(0)))
                expected[(code, row.billing_currency)] = (count + 1, billed + row.billed_cost)
        totals = {
            (r["code"], r["currency"]): (r["count"], r["billed"])
            for r in page.context["queue_totals"]
        }
        assert totals == expected, url


@pytest.mark.django_db(transaction=True)
def test_period_figures_are_cached_until_a_decision_or_import_changes_them(
    ingest, write_focus, django_assert_max_num_queries, config_path
):
    from billing.config import load_config
    from billing.selectors import period_summary

    ingest(
        write_focus(
            [
                {"BilledCost": "1.25", "ResourceId": "a", "Tags": BAD_FUND},
                {"BilledCost": "2.50", "ResourceId": "b", "Tags": GOOD_TAGS},
            ]
        ),
        source="aws",
    )
    period = BillingPeriod.objects.get(key="2025-01")
    first = period_summary(period)
    with django_assert_max_num_queries(2):  # only the cache key's two lookups
        assert period_summary(period) == first
    assert first["totals"]["USD"]["billable"] == "2.50"

    charge_reassign(
        charges=Charge.objects.filter(resource_id="a"),
        config=load_config(config_path),
        fund_org="ENG-1",
    )
    assert period_summary(period)["totals"]["USD"]["billable"] == "3.75"

    ingest(
        write_focus([{"BilledCost": "4.00"}], name="more.csv"), source="aws", extra=("--append",)
    )
    assert period_summary(period)["totals"]["USD"]["billable"] == "7.75"


def test_a_restated_delivery_replaces_reviewed_charges_and_keeps_the_decision(
    month, ingest, write_focus
):
    charge_reject(charges=Charge.objects.filter(resource_id="bad-fund-1"), note="dup")
    decision = ReviewDecision.objects.get()
    # The source restates the month: the approved row's cost changed, the rest are identical.
    receipt = ingest(
        write_focus(
            [
                {"BilledCost": "10.00", "ResourceId": "clean", "Tags": GOOD_TAGS},
                {"BilledCost": "1.10", "ResourceId": "bad-fund-1", "Tags": BAD_FUND},
                {"BilledCost": "2.0000000001", "ResourceId": "bad-fund-2", "Tags": BAD_FUND},
                {
                    "BilledCost": "7.25",
                    "ResourceId": "untagged",
                    "SubAccountId": "acct-9",
                    "Tags": "",
                },
            ],
            name="restated.csv",
        ),
        source="aws",
    )
    assert receipt["status"] == "replaced"
    restated = charge("bad-fund-1")
    assert restated.billed_cost == D("1.10")
    assert restated.review_status == "flagged"  # a new row: decided again
    decision.refresh_from_db()
    assert decision.charge_count == 1  # the decision stays in the history with its figures
    assert decision.charges.count() == 0  # its charge was replaced


def test_receipt_counts_flagged_rows_by_reason(ingest, write_focus):
    receipt = ingest(
        write_focus(
            [
                {"BilledCost": "1.00", "Tags": BAD_FUND},
                {"BilledCost": "2.00", "Tags": BAD_FUND},
                {"BilledCost": "3.00", "Tags": ""},
                {"BilledCost": "4.00", "Tags": GOOD_TAGS},
            ]
        ),
        source="aws",
        extra=("--dry-run",),
    )
    assert receipt["rows_flagged"] == 3
    assert receipt["flagged_by_reason"] == {
        "fund_org_pattern": 2,
        "no_fund_org": 1,
        "no_pi": 1,
        "no_project": 1,
    }


def test_approval_never_bills_an_unbillable_charge_even_past_the_check(odd, monkeypatch):
    """Belt and braces: were the refusal ever skipped, the approving UPDATE itself still leaves
    out every charge that can't be billed as it is."""
    from billing.services import review

    monkeypatch.setattr(review, "_unbillable_as_is", lambda charges, config: {})
    result = charge_approve(charges=Charge.objects.filter(period=odd))

    assert result.count == 2  # odd-1 and odd-2 only
    assert {c.resource_id for c in Charge.objects.filter(review_status="approved")} == {
        "odd-1",
        "odd-2",
    }
    assert charge("bad-fund-1").review_status == "flagged"
    assert charge("untagged").review_status == "flagged"


def test_rejecting_from_the_queue_counts_nothing_left_alone(month, admin_client):
    """The queue's selection is "flagged": counted after the decision it read -1 skipped."""
    pk = charge("bad-fund-1").pk
    data = {"action": "reject", ACTION_CHECKBOX_NAME: [pk], "post": "yes", "note": "test account"}

    page = admin_client.post(QUEUE_URL, data, follow=True)

    shown = [str(m) for m in page.context["messages"]]
    assert charge("bad-fund-1").review_status == "rejected"
    assert any(m.startswith("Reject: 1 charge(s)") for m in shown)
    assert not any("left as they were" in m for m in shown), shown


def test_a_decision_on_a_status_filter_counts_what_it_skipped(month):
    flagged = Charge.objects.filter(review_status="flagged")
    picked = flagged.filter(resource_id__in=["bad-fund-1", "bad-fund-2"])

    result = charge_reject(charges=picked, note="dup")

    assert (result.count, result.skipped) == (2, 0)
    # Approving a clean charge picked by its status: nothing to approve, one left alone.
    result = charge_approve(charges=Charge.objects.filter(review_status="clean"))
    assert (result.count, result.skipped) == (0, 1)


def test_review_list_text_cuts_long_emails_and_projects_with_an_ellipsis(month, run):
    """issue 12: `review list` cut an email mid-word with nothing to say it was cut."""
    long_email = "philippa.snodgrass-vane@humanities.example.edu"  # 46 characters
    Charge.objects.filter(resource_id="bad-fund-1").update(
        pi=PI.objects.create(email=long_email),
        project=Project.objects.create(code="medieval-ocr-digitisation-2026"),
    )

    out = run("review", "list", "-p", "2025-01")

    rows = {line.split()[0]: line for line in out.splitlines()}
    row = rows[str(charge("bad-fund-1").pk)]
    assert long_email not in row
    assert f" {long_email[:29]}… " in row  # 30 columns: 29 characters and the ellipsis
    assert " medieval-ocr-digiti… " in row
    # A value that fits is printed whole, without an ellipsis.
    assert "…" not in rows[str(charge("bad-fund-2").pk)]


def test_postgresql_keeps_the_charges_in_review_in_their_own_small_index():
    """Migration 0017: on PostgreSQL, a partial index of every charge that isn't clean, which
    the queue's and the status and reason filters' queries read instead of the table, and one
    of the charges that aren't usage, for the category filter."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL index; SQLite gets none")
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'charge_review_rows'")
        (definition,) = cursor.fetchone()
    assert "WHERE ((review_status)::text <> 'clean'::text)" in definition
    assert "(id) INCLUDE (period_id" in definition
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'charge_not_usage'")
        (definition,) = cursor.fetchone()
    assert "WHERE (charge_category <> 'Usage'::text)" in definition
