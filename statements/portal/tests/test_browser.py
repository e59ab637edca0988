"""A real browser (Playwright driving Debian's headless Chromium, never a downloaded one)
against a live server: a PI from login to a statement's PDF, another PI's statement URL, and a
reviewer approving a flagged charge in the admin. No page may trip the Content-Security-Policy.

Skips only when /usr/bin/chromium (or OPENCHARGEBACK_CHROMIUM) or Playwright is absent; CI
installs both (apt-get install chromium; requirements-dev.txt).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.db import connection

from openchargeback.tests.browser import CHROMIUM, chromium

from .conftest import PASSWORD

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"),
]


@pytest.fixture
def browser(monkeypatch):
    # The test's own ORM calls beside the event loop are still synchronous and safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with chromium() as launched:
        yield launched


def _database_sessions() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_orm_calls_beside_the_browser_leave_no_database_session(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("a session that outlives its test is PostgreSQL's (SQLite has none)")
    from accounts.models import User

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    before = _database_sessions()
    with chromium():
        User.objects.count()  # as a test's body does
        assert _database_sessions() == before + 1  # the body's own connection
    assert _database_sessions() == before


@pytest.fixture
def page(browser):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.csp_violations = []
    page.on(
        "console",
        lambda msg: (
            page.csp_violations.append(msg.text) if "Content Security Policy" in msg.text else None
        ),
    )
    yield page
    context.close()


def _login(page, base, username, password=PASSWORD, path="/accounts/login/"):
    page.goto(base + path)
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("[type=submit]")
    page.wait_for_load_state()


def test_pi_logs_in_and_downloads_a_statement_pdf(world, live_server, page):
    from pypdf import PdfReader

    base = live_server.url
    _login(page, base, "ada@example.edu")
    assert page.url == f"{base}/portal/pi/{world.ada.pk}/"
    assert page.locator("h1").inner_text() == "Statements"
    number = world.ada_statement.number
    row = page.locator("tr", has_text=number)
    assert "USD 1,271.76" in row.inner_text()
    row.get_by_role("link", name=number).click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == f"Statement {number}"
    assert "Compute" in page.locator("table").inner_text()
    with page.expect_download() as info:
        page.get_by_role("link", name="Download PDF").click()
    download = info.value
    assert download.suggested_filename == f"{number}.pdf"
    data = Path(download.path()).read_bytes()
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)
    assert number in text and "1,271.76" in text
    assert page.csp_violations == []


def test_another_pis_statement_is_a_404(world, live_server, page):
    base = live_server.url
    _login(page, base, "ada@example.edu")
    for url in (
        f"/portal/statements/{world.bob_statement.pk}/",
        f"/portal/statements/{world.bob_statement.pk}/pdf/",
        f"/portal/pi/{world.bob.pk}/",
    ):
        response = page.goto(base + url)
        assert response.status == 404, url
        assert world.bob_statement.number not in page.content()


def test_reviewer_approves_a_flagged_charge_in_the_admin(world, live_server, page):
    from django.contrib.auth.models import Group, Permission

    from accounts.models import User
    from accounts.roles import REVIEWER, sync_role_permissions
    from billing.models import Charge

    sync_role_permissions(Group, Permission)
    reviewer = User.objects.create_user("rita", "rita@example.edu", PASSWORD, is_staff=True)
    reviewer.groups.add(Group.objects.get(name=REVIEWER))
    flagged = Charge.objects.get(review_status=Charge.ReviewStatus.FLAGGED)

    base = live_server.url
    _login(page, base, "rita", path="/admin/login/")
    page.goto(f"{base}/admin/billing/reviewitem/")
    page.check(f"input[name=_selected_action][value='{flagged.pk}']")
    page.select_option("select[name=action]", "approve")
    page.click("button[name=index]")
    page.wait_for_load_state()
    assert "Approve charges" in page.content()
    page.click("input[type=submit][value='Approve 1 charge']")
    page.wait_for_load_state()
    assert "Approve: 1 charge(s), USD 50" in page.locator(".messagelist").inner_text()
    flagged.refresh_from_db()
    assert flagged.review_status == Charge.ReviewStatus.APPROVED
    assert page.csp_violations == []
