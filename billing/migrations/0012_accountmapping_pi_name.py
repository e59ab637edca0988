from django.db import migrations, models


class Migration(migrations.Migration):
    """The account map may name the PI (fills a PI whose name is empty; docs/configuration.md)."""

    dependencies = [("billing", "0011_importjob_batch")]

    operations = [
        migrations.AddField(
            model_name="accountmapping",
            name="pi_name",
            field=models.CharField(
                blank=True,
                help_text="Names the PI when their name is still empty; a name set in the admin "
                "or the portal wins.",
                max_length=200,
                verbose_name="PI name",
            ),
        ),
    ]
