"""The dashboard's "Statements and email" panel: filled in by the statements app through
billing's registry (billing imports nothing from statements), each figure once."""

from __future__ import annotations

import pytest

from billing.selectors import dashboard as dashboard_selectors
from statements.selectors import period_status

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sent(january, run, run_json, config_path, settings):
    settings.OPENCHARGEBACK_CONFIG = config_path
    run("periods", "close", "2025-01")
    return run_json("generate", "-p", "2025-01", "-c", config_path, "--send")


def test_the_statements_app_registers_its_status_reader():
    assert dashboard_selectors._PERIOD_STATUS == [period_status]


def test_the_panel_names_each_figure_once(sent, admin_client):
    response = admin_client.get("/admin/", {"period": "2025-01"})
    items = dict(response.context["statement_items"])
    assert list(items) == ["Statements", "By status", "Drafts", "Emails"]
    assert items["Statements"] == "10" and items["Drafts"] == "0"
    assert items["Emails"] == "sent 7"
    html = response.content.decode()
    assert html.count("<dt>Emails</dt>") == 1
    assert "Emails sent" not in html
