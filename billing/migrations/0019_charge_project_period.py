from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("billing", "0018_rate_exact_quantities")]

    operations = [
        migrations.AddIndex(
            model_name="charge",
            index=models.Index(fields=["project", "period"], name="charge_project_period"),
        ),
    ]
