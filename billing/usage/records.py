"""What a usage converter produces: one `UsageRecord` per piece of metered use.

A converter (Slurm, storage, tokens) reads its source's export and yields these; pricing
(billing/usage/pricing.py) turns them into priced lines and focus.py writes them as FOCUS rows
that the importer reads like any provider's file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

# A quantity is exact: a Decimal from a file's text, or a Fraction where the source's unit does
# not divide evenly (core-seconds / 3600 is a Fraction of a core-hour). Never a float.
Quantity = Decimal | Fraction | int


@dataclass(slots=True)
class UsageRecord:
    """Metered use of one priced thing by one account over [start, end).

    start, end: timezone-aware UTC datetimes; end > start (a point-in-time use may set
        end = start + 1 second). Pricing splits a record pro rata by time where a rate changes.
    account: the source's own account key (Slurm account, storage path or project, workspace);
        it becomes SubAccountId, so the account map (AccountMapping) can attribute it.
    service: the rate card's service (hpc-cpu, hpc-gpu, storage, tokens).
    rate_key: the rate's key within the service (partition, GPU type, tier, model).
    quantity, unit: consumed quantity in the rate's unit (core-hour, gpu-hour, TB-month, …).
    tags: attribution tags known at the source (pi_email, project_id, fund_org, …); empty for
        an unknown account, which the importer then flags.
    description: ChargeDescription, for a person reading the statement.
    resource_id: ResourceId (a job id with --per-job, else account/partition/resource).
    """

    start: datetime
    end: datetime
    account: str
    service: str
    rate_key: str
    quantity: Quantity
    unit: str
    tags: dict = field(default_factory=dict)
    description: str = ""
    resource_id: str = ""
    resource_name: str = ""
    service_name: str = ""  # ServiceName; defaults to the service
    service_category: str = "Compute"  # a FOCUS ServiceCategory value

    def allowance_holder(self, per: str) -> str:
        """Who an allowance per PI or per project belongs to: the tag, else the account."""
        tag = "pi_email" if per == "pi" else "project_id"
        value = self.tags.get(tag, "")
        return f"{per}:{value.lower()}" if value else f"account:{self.account}"
