"""PI names: an import fills an empty name from the tag `pi_name` (or the key tag_mapping names)
or from the account map; a name set in the admin or by the PI is never overwritten; the PI sets
their own name in the portal (audited); emails address the PI by name."""

from __future__ import annotations

import json

import pytest

from accounts.models import AuditEvent
from billing.models import PI, AccountMapping, Import
from billing.services.pis import PIAccessError, pi_rename

from .conftest import GOOD_TAGS

pytestmark = pytest.mark.django_db


def _tags(**values) -> str:
    return json.dumps({**json.loads(GOOD_TAGS), **values})


def test_an_import_fills_only_empty_names(ingest, write_focus):
    PI.objects.create(email="bea@example.edu", name="Beatrix Quill")  # set in the admin
    path = write_focus(
        [
            {"Tags": _tags(pi_name="Ada  Lovelace")},
            {"Tags": _tags(pi_name="A. King"), "ResourceId": "vm-2"},  # first name seen wins
            {"Tags": _tags(pi_email="bea@example.edu", pi_name="B. Quill"), "ResourceId": "vm-3"},
            {"Tags": _tags(pi_email="cy@example.edu"), "ResourceId": "vm-4"},  # no name
        ]
    )
    ingest(path, source="aws")
    names = dict(PI.objects.values_list("email", "name"))
    assert names == {
        "ada@example.edu": "Ada Lovelace",
        "bea@example.edu": "Beatrix Quill",
        "cy@example.edu": "",
    }
    event = AuditEvent.objects.get(action="import", object_id=str(Import.objects.get().pk))
    assert event.details["pi_names_filled"] == {"ada@example.edu": "Ada Lovelace"}


def test_the_account_map_names_the_pi_of_untagged_rows(ingest, write_focus):
    AccountMapping.objects.create(
        account_id="381204775044",
        pi_email="ignatius@example.edu",
        pi_name="Ignatius Pemberthorpe",
        project_id="exoplanets",
        fund_org="ASTRO-1",
    )
    ingest(write_focus([{"Tags": "", "SubAccountId": "381204775044"}]), source="aws")
    assert PI.objects.get(email="ignatius@example.edu").name == "Ignatius Pemberthorpe"


def test_tag_mapping_names_the_key(ingest, write_focus, write_file, run_json):
    config = write_file(
        "billing.yaml", "tag_mapping:\n  pi_name: Owner_Name\nsources:\n  - {name: aws}\n"
    )
    path = write_focus([{"Tags": _tags(owner_name="Ada Lovelace", pi_name="Not This")}])
    run_json("ingest", path, "-s", "aws", "-c", config)
    assert PI.objects.get(email="ada@example.edu").name == "Ada Lovelace"


def test_a_dry_run_names_nobody(ingest, write_focus):
    ingest(
        write_focus([{"Tags": _tags(pi_name="Ada Lovelace")}]), source="aws", extra=("--dry-run",)
    )
    assert not PI.objects.filter(name="Ada Lovelace").exists()


def test_rename_is_the_pi_s_or_staff_s_and_audited(django_user_model):
    owner = django_user_model.objects.create(username="ada@example.edu", email="ada@example.edu")
    other = django_user_model.objects.create(username="bob@example.edu", email="bob@example.edu")
    pi = PI.objects.create(email="ada@example.edu", user=owner)
    with pytest.raises(PIAccessError, match="only the PI"):
        pi_rename(pi=pi, name="Mallory", acting_user=other)
    with pytest.raises(PIAccessError, match="give a name"):
        pi_rename(pi=pi, name="   ", acting_user=owner)
    pi_rename(pi=pi, name="  Ada   Lovelace ", acting_user=owner)
    pi.refresh_from_db()
    assert pi.name == "Ada Lovelace"
    event = AuditEvent.objects.filter(object_id=str(pi.pk), action__startswith="pi").latest("id")
    assert event.user == owner
    assert event.before["name"] == "" and event.after["name"] == "Ada Lovelace"


def test_the_account_map_list_in_the_admin_shows_and_finds_the_pi_name(admin_client):
    AccountMapping.objects.create(
        account_id="381204775044", pi_email="ignatius@example.edu", pi_name="Ignatius Pemberthorpe"
    )
    AccountMapping.objects.create(account_id="555566667777", pi_email="ada@example.edu")
    page = admin_client.get("/admin/billing/accountmapping/")
    assert page.status_code == 200
    assert "column-pi_name" in page.content.decode()
    assert "Ignatius Pemberthorpe" in page.content.decode()
    found = admin_client.get("/admin/billing/accountmapping/", {"q": "Pemberthorpe"})
    assert list(found.context["cl"].result_list.values_list("account_id", flat=True)) == [
        "381204775044"
    ]
