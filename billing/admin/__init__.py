"""Billing's admin, one module per idea:

- charges.py    the charge browser (read-only)
- review.py     the review queue and its decisions
- periods.py    billing periods and their lifecycle actions (and the registry other apps add to)
- imports.py    import receipts
- upload.py     uploading files to import, and the upload's progress page
- pis.py        PIs, their delegates and portal invitations
- rates.py      rate cards of usage sources (HPC, storage, tokens)
- reference.py  sources, projects and the account map
- patterns.py   review patterns and their test against a period
- widgets.py    filters, search and paging shared by the lists
"""

from django.contrib import admin

from . import (  # noqa: F401
    charges,
    imports,
    patterns,
    periods,
    pis,
    rates,
    reference,
    review,
    upload,
)
from .periods import register_period_action
from .reference import AccountMappingResource

__all__ = ["AccountMappingResource", "register_period_action"]

admin.site.site_header = "OpenChargeback"
admin.site.site_title = "OpenChargeback"
admin.site.index_title = "Billing administration"
