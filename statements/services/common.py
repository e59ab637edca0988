"""What the statement services share: their error, the configuration frozen on a batch, the
current statements of a period, where a stored PDF lives."""

from __future__ import annotations

from pathlib import Path

import yaml
from django.core.files.storage import default_storage

from billing.config import BillingConfig
from billing.models import BillingPeriod

from ..figures import REFERENCE_FIELDS
from ..models import Statement


class StatementError(Exception):
    """A statement operation that isn't allowed; the message says why."""


# ---------------------------------------------------------------------------------------------
# Configuration the statements show, frozen on the batch so every worker renders the same thing.


def _logo_path(config: BillingConfig) -> str:
    """`institution.logo` from the configuration (a path, relative to the file's folder)."""
    logo = getattr(config, "logo", "") or ""
    if not logo and config.path:
        try:
            data = yaml.safe_load(Path(config.path).read_text(encoding="utf-8")) or {}
            logo = (
                ((data.get("institution") or {}).get("logo") or "")
                if isinstance(data, dict)
                else ""
            )
        except (OSError, yaml.YAMLError, AttributeError):
            logo = ""
    if logo and config.path and not Path(logo).is_absolute():
        logo = str(Path(config.path).resolve().parent / logo)
    return str(logo)


def reference_labels(config: BillingConfig) -> dict[str, str]:
    """reference_1 -> "Grant number" (from the tag it comes from), cost_center -> "Cost center"."""
    labels = {}
    for name in REFERENCE_FIELDS:
        tag = config.tag_mapping.get(name, name)
        labels[name] = tag.replace("_", " ").strip().capitalize() or name
    return labels


def config_snapshot(config: BillingConfig) -> dict:
    return {
        "institution": config.institution_name,
        "contact_email": config.contact_email,
        "logo": _logo_path(config),
        "currency": config.currency,
        "reference_labels": reference_labels(config),
        "email": {
            "from_address": config.email.from_address,
            "from_name": config.email.from_name,
            "subject_template": config.email.subject_template,
        },
    }


def storage_path(name: str) -> str | None:
    """A stored PDF's path on disk (or its storage name when the storage has no paths)."""
    if not name:
        return None
    try:
        return default_storage.path(name)
    except NotImplementedError:
        return name


def current_statements(period: BillingPeriod, pi_email: str | None):
    """The period's current statements (not superseded), maybe of one PI."""
    qs = Statement.objects.filter(period=period, superseded_by__isnull=True)
    if pi_email:
        qs = qs.filter(pi__email=pi_email)
    return qs
