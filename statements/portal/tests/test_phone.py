"""The portal on a phone (390 × 844 CSS px, Chromium): the amount due is in the first screen of
the PI's home page and of a statement, and no page scrolls sideways. With
OPENCHARGEBACK_SCREENSHOTS=DIR the tests also save the portal's screenshots there, from the
portal tests' world (conftest.py): portal-{home,statement,delegate-home}-390.png on a phone and
portal-statements.png, portal-statement.png at 1280 px, the files docs/portal.md shows:

    OPENCHARGEBACK_SCREENSHOTS=docs/screenshots pytest statements/portal/tests/test_phone.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .test_browser import CHROMIUM, _login, browser  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"),
]
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def phone(browser):  # noqa: F811
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    page = context.new_page()
    yield page
    context.close()


def _overflow(page) -> dict:
    """Widths that exceed the viewport: the document's, and any element's scrolling box."""
    return page.evaluate(
        """() => {
        const out = {document: document.documentElement.scrollWidth - window.innerWidth};
        document.querySelectorAll('.table-wrap, table, main, .figures').forEach((el, i) => {
            const extra = el.scrollWidth - el.clientWidth;
            if (extra > 0) out[el.tagName + '.' + el.className + '#' + i] = extra;
        });
        return out;
    }"""
    )


def _in_first_screen(page, locator) -> bool:
    box = locator.bounding_box()
    return (
        box is not None
        and box["y"] >= 0
        and box["y"] + box["height"] <= PHONE["height"]
        and box["x"] >= 0
        and box["x"] + box["width"] <= PHONE["width"]
    )


def _shot(page, name: str) -> None:
    folder = os.environ.get("OPENCHARGEBACK_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_amount_due_on_the_first_screen_and_no_sideways_scroll(world, live_server, phone):
    base = live_server.url
    _login(phone, base, "ada@example.edu")
    phone.goto(base + "/portal/")  # the PI's home: her statements
    assert phone.url == f"{base}/portal/pi/{world.ada.pk}/"
    due = phone.locator(".figure.due").first
    assert due.inner_text().split("\n")[-1] == "USD 1,271.76"
    assert _in_first_screen(phone, due)
    assert _overflow(phone) == {"document": 0}
    # In the list, each statement's amounts are visible, labelled, without scrolling sideways.
    row = phone.locator("tbody tr", has_text=world.ada_statement.number)
    amount = row.locator("td[data-label='Amount due']")
    assert amount.inner_text() == "USD 1,271.76" and amount.is_visible()
    assert _in_first_screen(phone, amount)
    _shot(phone, "portal-home-390.png")

    phone.goto(f"{base}/portal/statements/{world.ada_statement.pk}/")
    due = phone.locator(".figure.due")
    assert due.inner_text().split("\n") == ["Amount due", "USD 1,271.76"]
    assert _in_first_screen(phone, due)
    assert _overflow(phone) == {"document": 0}
    # Every line's amount due is shown inside the screen's width.
    amounts = phone.locator("tbody td[data-label='Amount due']")
    assert amounts.count() >= 2
    for i in range(amounts.count()):
        box = amounts.nth(i).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], i
    _shot(phone, "portal-statement-390.png")


def test_a_delegate_s_home_shows_each_pi_s_amount_due(world, live_server, phone):
    from billing.models import PIDelegate

    PIDelegate.objects.create(pi=world.bob, user=world.delegate, granted_by=world.bob_user)
    base = live_server.url
    _login(phone, base, "grants@example.edu")
    phone.goto(base + "/portal/")
    assert phone.url == f"{base}/portal/"  # two PIs: the home page lists them
    for name, due in (("Ada Lovelace", "USD 1,271.76"), ("Bob Babbage", "USD 99.99")):
        amount = phone.locator("tbody tr", has_text=name).locator("td[data-label='Amount due']")
        assert amount.inner_text() == due
        assert _in_first_screen(phone, amount), name
    assert _overflow(phone) == {"document": 0}
    _shot(phone, "portal-delegate-home-390.png")


def test_wide_screens_keep_the_table(world, live_server, browser):  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _login(page, live_server.url, "ada@example.edu")
    assert page.locator("table.stack thead").is_visible()
    headers = page.locator("table.stack thead th").all_inner_texts()
    assert headers[-2:] == ["Amount due", "PDF"]
    assert _overflow(page) == {"document": 0}
    _shot(page, "portal-statements.png")
    page.goto(f"{live_server.url}/portal/statements/{world.ada_statement.pk}/")
    assert _overflow(page) == {"document": 0}
    _shot(page, "portal-statement.png")
    context.close()
