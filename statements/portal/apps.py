from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "statements.portal"
    label = "portal"
    verbose_name = "PI portal"

    def ready(self):
        from . import signals  # noqa: F401  (audits login lockouts)
