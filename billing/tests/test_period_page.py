"""The period page as the month's workplace: read-only, the dashboard's figures to the cent,
the lifecycle buttons the role allows (each through the confirmation page), and the checklist
of what finalize still needs. And billing's one-way dependency: it imports nothing above it."""

from __future__ import annotations

import ast
import re

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.urls import reverse

from accounts.roles import FINANCE_ADMIN, REVIEWER
from billing.models import BillingPeriod, Charge

from .conftest import REPO

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _config(settings, config_path, tmp_path):
    settings.OPENCHARGEBACK_CONFIG = config_path
    settings.MEDIA_ROOT = tmp_path / "media"
    cache.clear()


@pytest.fixture
def period(import_samples):
    import_samples()
    return BillingPeriod.objects.get(key="2025-01")


def staff(client, django_user_model, role: str):
    user = django_user_model.objects.create_user(role.replace(" ", "-"), is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client.force_login(user)
    return client


def page_of(client, period):
    response = client.get(reverse("admin:billing_billingperiod_change", args=[period.pk]))
    assert response.status_code == 200
    return response


def figure(html: str, name: str) -> str:
    return re.search(rf'data-figure="{name}">([^<]+)<', html).group(1)


def test_the_page_is_read_only_and_shows_the_dashboards_figures(admin_client, period):
    html = page_of(admin_client, period).content.decode()
    for save in ("_save", "_addanother", "_continue"):
        assert f'name="{save}"' not in html
    dashboard = admin_client.get("/admin/", {"period": period.key}).content.decode()
    for name in ("billable-USD", "list-USD", "discount-USD", "flagged-USD", "billed-USD"):
        assert figure(html, name) == figure(dashboard, name), name
    assert figure(html, "billable-USD") == "USD 20,227.00"  # grouped, to the cent
    assert "each rounded to the cent half up" in html
    assert not re.search(r"\d{5,}\.\d{3,}", re.sub(r'title="[^"]*"', "", html))  # no raw sums

    edit = admin_client.post(
        reverse("admin:billing_billingperiod_change", args=[period.pk]), {"key": "2025-02"}
    )
    assert edit.status_code == 403
    add = admin_client.get(reverse("admin:billing_billingperiod_add"))
    assert add.status_code == 200 and 'name="key"' in add.content.decode()  # a new month


def test_buttons_follow_the_role_and_the_status(client, django_user_model, period):
    finance = staff(client, django_user_model, FINANCE_ADMIN)
    buttons = [b["name"] for b in page_of(finance, period).context["buttons"]]
    assert buttons == [
        "close",
        "generate_statements_action",
        "export_journal_action",
    ]  # open: no reopen, finalize or send yet
    BillingPeriod.objects.filter(pk=period.pk).update(status="closed")
    buttons = [b["name"] for b in page_of(finance, period).context["buttons"]]
    assert buttons == [
        "reopen",
        "generate_statements_action",
        "send_statements_action",
        "export_journal_action",
        "finalize",
    ]

    client.logout()
    reviewer = staff(client, django_user_model, REVIEWER)
    response = page_of(reviewer, period)
    assert response.context["buttons"] == []
    assert "Your role allows no lifecycle action" in response.content.decode()
    url = reverse("admin:billing_billingperiod_lifecycle", args=[period.pk, "reopen"])
    assert reviewer.post(url, {"post": "yes", "reason": "x"}).status_code == 403
    assert BillingPeriod.objects.get(pk=period.pk).status == "closed"


def test_a_button_asks_first_then_acts_and_comes_back(admin_client, period):
    url = reverse("admin:billing_billingperiod_lifecycle", args=[period.pk, "close"])
    ask = admin_client.post(url)
    assert ask.status_code == 200
    assert "admin/confirm_action.html" in {t.name for t in ask.templates}
    assert BillingPeriod.objects.get(pk=period.pk).status == "open"

    done = admin_client.post(url, {"post": "yes", "reason": "month end"})
    assert done.status_code == 302
    assert done["Location"] == reverse("admin:billing_billingperiod_change", args=[period.pk])
    assert BillingPeriod.objects.get(pk=period.pk).status == "closed"

    reopen = reverse("admin:billing_billingperiod_lifecycle", args=[period.pk, "reopen"])
    refused = admin_client.post(reopen, {"post": "yes", "reason": ""})
    assert refused.status_code == 200  # the page again, asking for the reason
    assert "This field is required" in refused.content.decode()
    assert BillingPeriod.objects.get(pk=period.pk).status == "closed"


def test_checklist_says_what_finalize_still_needs(admin_client, period):
    first = Charge.objects.filter(period=period).order_by("id").first()
    Charge.objects.filter(pk=first.pk).update(review_status="flagged", flags=8)  # test set-up
    checklist = page_of(admin_client, period).context["checklist"]
    labels = {item["label"]: item for item in checklist}
    assert not labels["The period is closed (it takes no more imports)"]["ok"]
    assert not labels["Nothing is flagged"]["ok"]
    assert labels["Nothing is flagged"]["explain"].startswith("1 charge(s) are still flagged")
    # The checks statements and journals register, in words.
    assert not labels["Final statements generated for every PI and project"]["ok"]
    assert labels["No statement email waiting or being sent"]["ok"]
    assert not labels["A general-ledger journal exported since the statements last changed"]["ok"]
    html = page_of(admin_client, period).content.decode()
    assert "Before finalizing" in html and "still flagged" in html


def test_billing_imports_nothing_from_statements_or_journals():
    offenders = []
    for path in sorted((REPO / "billing").rglob("*.py")):
        if "tests" in path.relative_to(REPO / "billing").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                if name.split(".")[0] in ("statements", "journals"):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} imports {name}")
    assert offenders == []
