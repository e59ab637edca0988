"""Install the built-in journal templates (journals/fixtures/journal_templates.json).

Only templates whose name is not taken are created, so staff edits survive; to restore the
shipped versions over edited ones, run `openchargeback loaddata journal_templates`.
"""

import json
from pathlib import Path

from django.db import migrations

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "journal_templates.json"


def install(apps, schema_editor):
    JournalTemplate = apps.get_model("journals", "JournalTemplate")
    for entry in json.loads(FIXTURE.read_text(encoding="utf-8")):
        fields = {
            k: v for k, v in entry["fields"].items() if k not in ("created_at", "updated_at")
        }
        if not JournalTemplate.objects.filter(name=fields["name"]).exists():
            JournalTemplate.objects.create(**fields)


def uninstall(apps, schema_editor):
    JournalTemplate = apps.get_model("journals", "JournalTemplate")
    names = [e["fields"]["name"] for e in json.loads(FIXTURE.read_text(encoding="utf-8"))]
    JournalTemplate.objects.filter(name__in=names, exports__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("journals", "0001_initial")]

    operations = [migrations.RunPython(install, uninstall)]
