"""System checks for the product's own settings (run by `migrate`, `serve`, `check --deploy`)."""

from django.conf import settings
from django.core.checks import Warning as CheckWarning
from django.core.checks import register


@register()
def base_url_check(app_configs=None, **kwargs):
    """Production (DEBUG off) with no OPENCHARGEBACK_BASE_URL mails links to 127.0.0.1."""
    if settings.DEBUG or getattr(settings, "OPENCHARGEBACK_BASE_URL_SET", True):
        return []
    return [
        CheckWarning(
            "OPENCHARGEBACK_BASE_URL is not set: invitations and statement emails will link to "
            f"{settings.OPENCHARGEBACK_BASE_URL}, which a PI's browser can't reach.",
            hint="Set OPENCHARGEBACK_BASE_URL to the site's public address, "
            "e.g. https://billing.example.edu (docs/portal.md).",
            id="openchargeback.W001",
        )
    ]
