"""The admin's lists at a desk's width: the charge list, the review queue, statements, imports and
the audit log fit beside the navigation at 1280 and 1440 px with long names and large amounts,
and the money columns are on screen, to the cent, with the exact value on hover.

The browser half drives the system's Chromium through Playwright, as the portal's browser tests
do, and skips without it. Set OPENCHARGEBACK_SCREENSHOTS=docs/screenshots to save each list at
1280 px (how docs/screenshots/ was made).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from django.urls import reverse

from accounts.models import AuditEvent, User
from billing.admin.widgets import money_cell
from billing.models import PI, BillingPeriod, Charge, Flag, Import, Project
from billing.services import period_close
from billing.tests.conftest import make_charges  # noqa: F401  (fixture)
from openchargeback.listcells import shorten, stacked, truncated, when
from openchargeback.tests.browser import CHROMIUM, chromium

PASSWORD = "a-long-Lists-passphrase-42"

LONG_EMAIL = "philippa.snodgrass-vane.observational-astrophysics@example.edu"
LONG_PROJECT = "DEEP-FIELD-SPECTROSCOPIC-SURVEY-2026-PHASE-II"
LONG_FUND = "FND-104455-ORG-7788-PRG-AST"
LONG_RESOURCE = "arn:aws:ec2:us-east-1:123456789012:instance/i-0abcdef1234567890abc"
BIG = Decimal("1234567.8949999999")  # 1,234,567.89 to the cent (half up: …8949 rounds down)
SMALL = Decimal("0.4392960000")


# ---- the helpers, without a browser ---------------------------------------------------------


def test_money_cell_rounds_half_up_to_cents_with_separators_and_keeps_the_exact_value():
    assert str(money_cell(Decimal("1829.14975"), "USD")) == (
        '<span class="oc-money" title="USD 1829.14975">1,829.15</span>'
    )
    assert 'title="0.4392960000">0.44<' in money_cell(SMALL)
    assert ">1,234,567.89<" in money_cell(BIG, "USD")
    assert ">0.01<" in money_cell(Decimal("0.005"))
    assert ">0.03<" in money_cell(Decimal("0.025"))  # half up: half to even would say 0.02
    assert ">-1,000.00<" in money_cell(Decimal("-999.995"))
    assert ">0.00<" in money_cell(Decimal("-0.004"))  # never "-0.00"
    assert ">12.50<" in money_cell("12.5", "EUR")  # an import's totals are JSON text
    assert money_cell(None) == "—"


def test_truncation_cuts_with_an_ellipsis_and_keeps_the_whole_value_on_hover():
    assert shorten("abcdef", 6) == "abcdef"
    assert shorten("abcdefg", 6) == "abcde…"
    assert len(shorten(LONG_RESOURCE, 30)) == 30
    assert shorten("two\nlines  here", 40) == "two lines here"
    cell = str(truncated(LONG_EMAIL, 30))
    assert f'title="{LONG_EMAIL}"' in cell
    assert f">{LONG_EMAIL[:29]}…<" in cell
    assert "title" not in str(truncated("ada@example.edu", 30))  # nothing cut, nothing to hover
    assert "&lt;script&gt;" in str(truncated("<script>alert(1)</script>", 10))
    assert truncated("") == truncated(None) == "—"
    assert str(when(datetime(2026, 10, 31, 17, 5, 59, tzinfo=UTC))) == (
        '<span class="oc-nowrap">2026-10-31 17:05</span>'  # the site's zone (UTC in the tests)
    )
    assert when(None) == "—"
    assert str(stacked("PI", "", None, "project")) == (
        '<span class="oc-line">PI</span><span class="oc-line">project</span>'
    )


# ---- a month with long names and large amounts ------------------------------------------------


@pytest.fixture
def month(make_charges, settings, tmp_path, django_capture_on_commit_callbacks):  # noqa: F811
    """January closed with statements; February open with flagged charges; an import receipt
    with a total in the millions; audit events with long reasons."""
    from statements.services import statement_generate

    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.OPENCHARGEBACK_CONFIG = None
    pi = PI.objects.create(email=LONG_EMAIL)
    short = PI.objects.create(email="ada@example.edu")
    project = Project.objects.create(code=LONG_PROJECT, name="A long survey")
    common = dict(
        service_name="Amazon Elastic Compute Cloud",
        resource_id=LONG_RESOURCE,
        fund_org=LONG_FUND,
        list_cost=Decimal("2469135.79"),
    )
    make_charges([BIG, SMALL, Decimal("1829.14975")], pi=pi, project=project, **common)
    make_charges([Decimal("99.99")] * 3, pi=short, project=project, **common)
    period_close(key="2025-01", actor="test")
    with django_capture_on_commit_callbacks(execute=True):
        statement_generate(period_key="2025-01", actor="test")
    february = BillingPeriod.objects.create(key="2025-02")
    flagged = make_charges(
        [BIG, Decimal("-120.00"), SMALL] * 10,
        period=february,
        pi=pi,
        project=project,
        billing_period_start=datetime(2025, 2, 1, tzinfo=UTC),
        **common,
    )
    Charge.objects.filter(pk__in=[c.pk for c in flagged]).update(
        review_status=Charge.ReviewStatus.FLAGGED,
        flags=int(Flag.PATTERN_MATCH | Flag.FUND_ORG_PATTERN),
    )
    Import.objects.update(
        periods=["2025-01", "2025-02"],
        rows_read=1_048_576,
        rows_flagged=30_000,
        rows_added=1_048_576,
        totals={"USD": {"billed": "2470964.93975"}, "EUR": {"billed": "12.5"}},
    )
    AuditEvent.objects.create(
        actor=LONG_EMAIL,
        action="charge.reassign",
        object_type="charge",
        object_id="1",
        object_repr=f"Amazon Elastic Compute Cloud {LONG_RESOURCE}",
        reason="Moved to the survey's second phase after the department's grant office asked",
    )
    staff = User(username="finance", email="finance@example.edu", is_staff=True, is_superuser=True)
    staff.set_password(PASSWORD)
    staff.save()
    return staff


LISTS = (  # (screenshot, URL name, the money columns' names)
    ("charges.png", "admin:billing_charge_changelist", ("billed", "listed")),
    ("review-queue.png", "admin:billing_reviewitem_changelist", ("billed",)),
    ("statements.png", "admin:statements_statement_changelist", ("due",)),
    ("imports.png", "admin:billing_import_changelist", ("billed_totals",)),
    ("audit.png", "admin:accounts_auditevent_changelist", ()),
)
CENTS = re.compile(r"^-?\d{1,3}(,\d{3})*\.\d{2}$")


def test_each_list_has_a_human_title_and_counts_in_plain_nouns(month, client):
    client.force_login(month)
    titles = {}
    for _name, url_name, _money in LISTS:
        page = client.get(reverse(url_name)).content.decode()
        titles[url_name] = re.search(r"<h1>(.*?)</h1>", page).group(1)
    assert list(titles.values()) == [
        "Charges",
        "Review queue",
        "Statements",
        "Imports",
        "Audit log",
    ]
    queue = client.get(reverse("admin:billing_reviewitem_changelist")).content.decode()
    assert "30 charges" in queue
    assert "review queue</p>" not in queue and "Select charge to review" not in queue
    # The totals over the queue use the list's formatter: 10 × 1,234,567.8949999999 − 1,200 +
    # 10 × 0.439296 = 12,344,483.342959999 → 12,344,483.34.
    assert 'title="USD 12344483.3429599990">12,344,483.34<' in queue


def test_the_exact_amount_is_on_the_detail_page(month, client):
    client.force_login(month)
    charge = Charge.objects.get(billed_cost=SMALL, period__key="2025-01")
    page = client.get(reverse("admin:billing_charge_change", args=[charge.pk])).content.decode()
    assert "0.4392960000" in page


# ---- in a browser ----------------------------------------------------------------------------

# `table` as laid out (a table wider than its area scrolls); `natural`, the narrowest it can be
# with every cell on as few lines as the cells allow, without the 100% width that stretches it.
MEASURE = """() => {
    const table = document.querySelector('#result_list');
    const area = table.closest('.results');
    const table_width = table.scrollWidth;
    table.style.width = 'min-content';
    const natural = table.scrollWidth;
    table.style.width = '';
    return {
        table: table_width, natural: natural, area: area.clientWidth,
        page: document.documentElement.scrollWidth, viewport: window.innerWidth,
        areaRight: area.getBoundingClientRect().right,
    };
}"""


@pytest.fixture
def browser(monkeypatch):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with chromium() as launched:
        yield launched


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [1280, 1440])
def test_each_list_fits_its_area_with_the_money_on_screen(month, live_server, browser, width):
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.goto(live_server.url + reverse("admin:login"))
    page.fill("input[name=username]", "finance")
    page.fill("input[name=password]", PASSWORD)
    page.click("[type=submit]")
    page.wait_for_load_state()
    shots = os.environ.get("OPENCHARGEBACK_SCREENSHOTS")
    for name, url_name, money_columns in LISTS:
        page.goto(live_server.url + reverse(url_name))
        assert page.locator("#result_list tbody tr").count() > 0, name
        size = page.evaluate(MEASURE)
        assert size["table"] <= size["area"], (name, size)
        assert size["natural"] <= size["area"], (name, size)
        assert size["page"] <= size["viewport"], (name, size)
        for column in money_columns:
            header = page.locator(f"#result_list th.column-{column}")
            box = header.bounding_box()
            assert box and box["x"] + box["width"] <= size["areaRight"], (name, column, box)
            cells = page.locator(f"#result_list td.field-{column} .oc-money")
            assert cells.count() > 0, (name, column)
            first = cells.first
            assert first.is_visible()
            assert CENTS.match(first.inner_text()), (name, column, first.inner_text())
            assert first.get_attribute("title"), (name, column)
            align = first.evaluate("e => getComputedStyle(e.closest('td')).textAlign")
            assert align == "right", (name, column, align)
        if shots and width == 1280:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(shots) / name))
    context.close()
