"""The admin: template editing with validation and a preview that writes nothing, exports
read-only with their file to download, and the export action with its confirmation page."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.urls import reverse

from billing.models import BillingPeriod
from billing.money import cents_text, money_text
from journals.admin import export_journal_action
from journals.models import JournalExport, JournalTemplate
from journals.services import journal_export

from .conftest import EXAMPLE_CONFIG


@pytest.fixture(autouse=True)
def example_config(settings):
    settings.OPENCHARGEBACK_CONFIG = str(EXAMPLE_CONFIG)


@pytest.fixture
def period_admin_with_action(monkeypatch):
    """The BillingPeriod admin with the export action, as the lead wires it."""
    model_admin = admin.site._registry[BillingPeriod]
    monkeypatch.setattr(type(model_admin), "actions", [export_journal_action])
    return model_admin


def journal_files(instance_dir: Path) -> list[Path]:
    return [p for p in (instance_dir / "journals").rglob("*") if p.is_file()]


def test_preview_shows_the_rows_and_writes_nothing(admin_client, samples, instance_dir):
    gl = JournalTemplate.objects.get(name="peoplesoft-gl")
    url = reverse("admin:journals_journaltemplate_preview", args=[gl.pk])

    page = admin_client.get(url, {"period": samples.pk, "rows": 3})

    assert page.status_code == 200
    text = page.content.decode()
    assert "MONETARY_AMOUNT" in text
    assert "20 rows in all; USD debits 20,227.00, credits 20,227.00" in text
    (journal,) = page.context["journals"]
    assert len(journal["rows"]) == 3
    assert journal["rows"][0][:4] == ["RSRCH", "RC202501", "01/31/2025", "1"]
    assert not JournalExport.objects.exists()
    assert not (instance_dir / "journals").exists()


def test_preview_shows_why_an_export_would_be_refused(admin_client, samples):
    template = JournalTemplate.objects.create(
        name="program", kind="gl", row_layout="{{ segment.program }}"
    )
    url = reverse("admin:journals_journaltemplate_preview", args=[template.pk])
    page = admin_client.get(url, {"period": samples.pk})
    assert page.status_code == 200
    assert "would be refused" in page.content.decode()
    assert "uses segment &#x27;program&#x27;" in page.content.decode()


def test_template_form_refuses_an_unknown_variable(admin_client, db):
    page = admin_client.post(
        reverse("admin:journals_journaltemplate_add"),
        {
            "name": "mine",
            "kind": "gl",
            "header_layout": "Fund",
            "row_layout": "{{ fundorg }}",
            "delimiter": ",",
            "line_ending": "crlf",
            "date_format": "%Y-%m-%d",
        },
    )
    assert page.status_code == 200
    assert "unknown variable fundorg" in page.content.decode()
    assert not JournalTemplate.objects.filter(name="mine").exists()


def test_template_change_page_lists_the_variables(admin_client, db):
    gl = JournalTemplate.objects.get(name="gl")
    page = admin_client.get(reverse("admin:journals_journaltemplate_change", args=[gl.pk]))
    assert page.status_code == 200
    assert "{{ signed_amount }}" in page.content.decode()


def test_exports_are_read_only_and_download_their_file(admin_client, samples, config):
    result = journal_export(period_key="2025-01", template="gl", config=config)
    record = JournalExport.objects.get()

    listing = admin_client.get(reverse("admin:journals_journalexport_changelist"))
    assert listing.status_code == 200
    assert record.file_name in listing.content.decode()
    # Debits and credits to the cent with separators, the exact amount on hover.
    debits = f'title="{record.currency} {money_text(record.debit_amount)}"'
    assert f"{debits}>{cents_text(record.debit_amount)}<" in listing.content.decode()
    download = admin_client.get(reverse("admin:journals_journalexport_download", args=[record.pk]))
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == Path(result.files[0]["file"]).read_bytes()
    assert record.file_name in download["Content-Disposition"]
    assert admin_client.get(reverse("admin:journals_journalexport_add")).status_code == 403
    change = admin_client.post(
        reverse("admin:journals_journalexport_change", args=[record.pk]), {"rows": 1}
    )
    assert change.status_code == 403
    record.refresh_from_db()
    assert record.rows == 20

    Path(result.files[0]["file"]).write_text("tampered")
    url = reverse("admin:journals_journalexport_download", args=[record.pk])
    assert admin_client.get(url).status_code == 404


def test_export_action_confirms_then_exports(
    admin_client, admin_user, samples, period_admin_with_action, instance_dir
):
    changelist = reverse("admin:billing_billingperiod_changelist")
    selection = {"action": "export_journal_action", "_selected_action": [samples.pk]}

    confirm = admin_client.post(changelist, selection)

    assert confirm.status_code == 200
    text = confirm.content.decode()
    assert "2025-01 (open): still open, so this is a draft" in text
    assert 'value="Export"' in text
    assert not JournalExport.objects.exists()

    banner = JournalTemplate.objects.get(name="banner-gl")
    done = admin_client.post(
        changelist, {**selection, "post": "yes", "template": banner.pk}, follow=True
    )

    record = JournalExport.objects.get()
    assert (record.template, record.acting_user, record.rows) == (banner, admin_user, 20)
    assert "2025-01: journal exported with banner-gl, 20 rows" in done.content.decode()
    assert len(journal_files(instance_dir)) == 1


def test_export_action_refusal_is_a_message(
    admin_client, samples, config, period_admin_with_action
):
    journal_export(period_key="2025-01", template="gl", config=config)
    BillingPeriod.objects.filter(pk=samples.pk).update(status="finalized")
    gl = JournalTemplate.objects.get(name="gl")
    done = admin_client.post(
        reverse("admin:billing_billingperiod_changelist"),
        {
            "action": "export_journal_action",
            "_selected_action": [samples.pk],
            "post": "yes",
            "template": gl.pk,
        },
        follow=True,
    )
    assert "finalized and read-only" in done.content.decode()
    assert JournalExport.objects.count() == 1


def test_export_action_needs_the_export_permission(
    client, django_user_model, samples, period_admin_with_action
):
    clerk = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_billingperiod"))
    client.force_login(clerk)
    selection = {"action": "export_journal_action", "_selected_action": [samples.pk]}

    page = client.post(reverse("admin:billing_billingperiod_changelist"), selection)

    assert page.status_code == 403
    assert not JournalExport.objects.exists()

    clerk.user_permissions.add(Permission.objects.get(codename="export_journal"))
    clerk = django_user_model.objects.get(pk=clerk.pk)  # fresh permission cache
    client.force_login(clerk)
    page = client.post(reverse("admin:billing_billingperiod_changelist"), selection)
    assert page.status_code == 200
