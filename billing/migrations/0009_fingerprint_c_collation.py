"""PostgreSQL: the fingerprint column compares bytes (COLLATE "C").

A fingerprint is 32 hex digits; the unique (period, source, fingerprint) index only needs them
equal or not. Under the database's locale (en_US.UTF-8, or even C.UTF-8) every comparison in that
index goes through strcoll; "C" compares bytes. The index is rebuilt by the ALTER. SQLite already
compares text as bytes (BINARY).
"""

from django.db import migrations

FORWARD = 'ALTER TABLE billing_charge ALTER COLUMN fingerprint TYPE varchar(32) COLLATE "C"'
BACKWARD = "ALTER TABLE billing_charge ALTER COLUMN fingerprint TYPE varchar(32) COLLATE \"default\""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("billing", "0008_finalized_guards")]

    operations = [migrations.RunPython(forward, backward)]
