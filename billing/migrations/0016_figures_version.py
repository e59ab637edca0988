from django.db import migrations, models


class Migration(migrations.Migration):
    """A per-period counter of changes for cached figures, and the charge list's (status,
    period) index with the id last so a page of one status is read in order."""

    dependencies = [
        ("billing", "0014_charge_pi_period"),
    ]

    operations = [
        migrations.CreateModel(
            name="FiguresVersion",
            fields=[
                (
                    "period",
                    models.OneToOneField(
                        on_delete=models.deletion.CASCADE,
                        primary_key=True,
                        related_name="figures_version",
                        serialize=False,
                        to="billing.billingperiod",
                    ),
                ),
                ("counter", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RemoveIndex(model_name="charge", name="charge_status_period"),
        migrations.AddIndex(
            model_name="charge",
            index=models.Index(
                fields=["review_status", "period", "id"], name="charge_status_period_id"
            ),
        ),
    ]
