"""Review patterns as admin-edited rows: seeded from the file, used by imports, audited, and
tested against a period before they are trusted."""

from __future__ import annotations

import json

import pytest

from accounts.models import AuditEvent
from billing.models import BillingPeriod, Charge, Flag, ReviewPattern

from .conftest import EXAMPLE_CONFIG, GOOD_TAGS

pytestmark = pytest.mark.django_db

LIST_URL = "/admin/billing/reviewpattern/"
PREVIEW_URL = "/admin/billing/reviewpattern/preview/"


@pytest.fixture
def config_path(tmp_path):
    """The example configuration with one flag pattern, "^scratch-"."""
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    assert "  flag_patterns: []\n" in text
    path = tmp_path / "config.yaml"
    path.write_text(text.replace("  flag_patterns: []\n", "  flag_patterns: ['^scratch-']\n"))
    return str(path)


def rows(*resource_ids, fund_org="MATH-1843"):
    tags = json.dumps(
        {"pi_email": "ada@example.edu", "project_id": "engines", "fund_org": fund_org}
    )
    return [{"ResourceId": rid, "Tags": tags} for rid in resource_ids]


def flagged_ids() -> set[str]:
    return set(Charge.objects.filter(flags__gt=0).values_list("resource_id", flat=True))


def test_the_file_seeds_the_patterns_once_and_says_so(ingest, write_focus):
    ingest(write_focus(rows("scratch-1", "vm-1")), source="aws")
    seeded = {(p.kind, p.pattern, p.origin) for p in ReviewPattern.objects.all()}
    assert seeded == {
        ("flag", "^scratch-", "config"),
        ("fund_org", "^[A-Z]{2,6}-[A-Z0-9-]+$", "config"),
    }
    assert flagged_ids() == {"scratch-1"}
    ingest(write_focus(rows("scratch-2"), name="again.csv"), source="aws")
    seeds = AuditEvent.objects.filter(action="reviewpattern.seed")
    assert seeds.count() == 1
    assert len(seeds.get().details["added"]) == 2


def test_an_import_flags_with_the_patterns_edited_in_the_admin(
    admin_client, admin_user, ingest, write_focus
):
    ingest(write_focus(rows("vm-0")), source="aws")  # seeds the file's patterns
    response = admin_client.post(
        f"{LIST_URL}add/",
        {"kind": "flag", "pattern": "^gpu-", "ignore_case": "on", "enabled": "on", "note": ""},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    created = AuditEvent.objects.get(action="reviewpattern.create")
    assert created.user == admin_user
    assert created.after["pattern"] == "^gpu-"

    # The file's own pattern, disabled in the admin, stops flagging and is not seeded again.
    scratch = ReviewPattern.objects.get(pattern="^scratch-")
    response = admin_client.post(
        f"{LIST_URL}{scratch.pk}/change/",
        {"kind": "flag", "pattern": "^scratch-", "note": "too noisy"},
    )
    assert response.status_code == 302
    changed = AuditEvent.objects.get(action="reviewpattern.change")
    assert changed.before == {"enabled": "True", "note": ""}
    assert changed.after == {"enabled": "False", "note": "too noisy"}

    receipt = ingest(
        write_focus(rows("GPU-7", "gpu-8", "scratch-9", "cpu-1"), name="feb.csv"), source="aws"
    )
    assert receipt  # the import ran
    pattern_flagged = set(
        Charge.objects.filter(flags=Flag.PATTERN_MATCH).values_list("resource_id", flat=True)
    )
    assert pattern_flagged == {"GPU-7", "gpu-8"}
    assert ReviewPattern.objects.filter(pattern="^scratch-").count() == 1


def test_the_admin_refuses_a_pattern_that_is_not_a_regular_expression(admin_client):
    response = admin_client.post(
        f"{LIST_URL}add/", {"kind": "fund_org", "pattern": "[A-Z", "enabled": "on"}
    )
    assert response.status_code == 200
    assert "Not a valid regular expression" in response.content.decode()
    assert not ReviewPattern.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="reviewpattern").exists()


def test_the_preview_counts_what_each_pattern_would_flag(admin_client, ingest, write_focus):
    ingest(
        write_focus(
            rows("scratch-1", "scratch-2", "vm-1", "DB-1")
            + rows("vm-2", fund_org="lowercase-fund")
            + [{"ResourceId": "vm-3", "Tags": GOOD_TAGS}]
        ),
        source="aws",
    )
    ReviewPattern.objects.create(kind="flag", pattern="^db-", ignore_case=True)
    ReviewPattern.objects.create(kind="flag", pattern="^vm-", enabled=False)
    period = BillingPeriod.objects.get(key="2025-01")
    before = AuditEvent.objects.count()

    response = admin_client.get(
        PREVIEW_URL,
        {"period": period.key, "kind": "fund_org", "pattern": "^[a-z-]+$"},
    )
    assert response.status_code == 200
    result = response.context["result"]
    counts = {(r.pattern.kind, r.pattern.pattern): r.matches for r in result.rows}
    assert counts == {
        ("flag", "^scratch-"): 2,
        ("flag", "^db-"): 1,
        ("flag", "^vm-"): 3,  # disabled: counted, but not in the total below
        ("fund_org", "^[A-Z]{2,6}-[A-Z0-9-]+$"): 5,
        ("fund_org", "^[a-z-]+$"): 1,  # the trial, not saved
    }
    assert result.charges == 6
    assert result.flagged_by_flag_patterns == 3
    assert result.flagged_by_fund_org_patterns == 1
    page = response.content.decode()
    assert "(trial, not saved)" in page
    assert not ReviewPattern.objects.filter(pattern="^[a-z-]+$").exists()
    assert AuditEvent.objects.count() == before

    bad = admin_client.get(PREVIEW_URL, {"period": period.key, "kind": "flag", "pattern": "("})
    assert "Not a valid regular expression" in bad.content.decode()
    assert bad.context["result"] is None

    listing = admin_client.get(LIST_URL).content.decode()
    assert PREVIEW_URL in listing


def test_migrate_seeds_the_configured_patterns(settings, config_path):
    from billing.apps import seed_review_patterns

    settings.OPENCHARGEBACK_CONFIG = config_path
    seed_review_patterns(sender=None)
    assert set(ReviewPattern.objects.values_list("kind", "pattern")) == {
        ("flag", "^scratch-"),
        ("fund_org", "^[A-Z]{2,6}-[A-Z0-9-]+$"),
    }
    settings.OPENCHARGEBACK_CONFIG = str(EXAMPLE_CONFIG) + ".missing"
    seed_review_patterns(sender=None)  # a broken configuration is the commands' to report
    assert ReviewPattern.objects.count() == 2
