from django.apps import AppConfig


class StatementsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "statements"

    def ready(self):
        from billing.services import register_finalize_check

        from .selectors import period_emails_settled, period_has_statements

        register_finalize_check(
            period_has_statements,
            "final statements have not been generated for every PI and project",
            label="Final statements generated for every PI and project",
        )
        register_finalize_check(
            period_emails_settled,
            "statement emails are still waiting or being sent; let the batch finish first",
            label="No statement email waiting or being sent",
        )

        from billing.selectors.dashboard import register_period_status

        from .selectors import period_status

        register_period_status(period_status)  # the dashboard's "Statements and email" panel

        from billing.services import register_figures_warmer

        from .selectors import warm_group_totals

        register_figures_warmer(warm_group_totals)  # the period page's statements check

        from . import dbguards  # noqa: F401  (registers this app's database guards)
