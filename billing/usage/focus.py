"""Priced usage as FOCUS rows: a file the importer (billing/ingest) and other FOCUS tools read.

Columns are FOCUS 1.0's, spelled as the specification spells them; our own start with `x_`.
Date-times are UTC ISO 8601 with Z; amounts and quantities are plain decimal text
(pricing.decimal_text: exact, never rounded to the cent); the currency is ISO 4217; Tags is a JSON
object. ListCost is the price before any subsidy; BilledCost is what the account owes after the
allowance (x_AllowanceAmount) and the percentage subsidy (x_SubsidyAmount); EffectiveCost equals
BilledCost. ContractedCost equals ListCost: a subsidy is a credit the centre gives, not a
negotiated price.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime

from .pricing import Priced, PricedLine, decimal_text

COLUMNS = (
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "BilledCost",
    "ListCost",
    "ListUnitPrice",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "ConsumedQuantity",
    "ConsumedUnit",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "InvoiceIssuerName",
    "RegionId",
    "RegionName",
    "AvailabilityZone",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "SkuId",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
    "x_AllowanceQuantity",
    "x_AllowanceAmount",
    "x_SubsidyPercent",
    "x_SubsidyAmount",
    "x_RateId",
    "x_RateEffectiveFrom",
    "x_Converter",
)


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with Z, to the second (FOCUS date-time format)."""
    if moment.utcoffset() is None or moment.utcoffset().total_seconds():
        raise ValueError(f"not a UTC date-time: {moment!r}")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def focus_row(
    line: PricedLine,
    *,
    period_start: datetime,
    period_end: datetime,
    converter: str,
    provider: str,
    billing_account: str,
) -> dict[str, str]:
    r, rate = line.record, line.rate
    list_price = decimal_text(rate.list_price)
    sku = f"{rate.service}/{rate.key}"
    return {
        "BillingAccountId": billing_account,
        "BillingAccountName": provider,
        "BillingCurrency": rate.currency,
        "BillingPeriodStart": iso(period_start),
        "BillingPeriodEnd": iso(period_end),
        "ChargePeriodStart": iso(r.start),
        "ChargePeriodEnd": iso(r.end),
        "ChargeCategory": "Usage",
        "ChargeClass": "",
        "ChargeDescription": r.description,
        "ChargeFrequency": "Usage-Based",
        # No commitment discounts on a campus service: the columns are there, empty (null).
        "CommitmentDiscountCategory": "",
        "CommitmentDiscountId": "",
        "CommitmentDiscountName": "",
        "CommitmentDiscountStatus": "",
        "CommitmentDiscountType": "",
        "BilledCost": decimal_text(line.billed_cost),
        "ListCost": decimal_text(line.list_cost),
        "ListUnitPrice": list_price,
        "ContractedCost": decimal_text(line.list_cost),
        "ContractedUnitPrice": list_price,
        "EffectiveCost": decimal_text(line.billed_cost),
        "ConsumedQuantity": decimal_text(line.quantity),
        "ConsumedUnit": r.unit,
        "PricingCategory": "Standard",
        "PricingQuantity": decimal_text(line.pricing_quantity),
        "PricingUnit": rate.pricing_unit or rate.unit,
        "ProviderName": provider,
        "PublisherName": provider,
        "InvoiceIssuerName": provider,
        "RegionId": "",
        "RegionName": "",
        "AvailabilityZone": "",
        "ResourceId": r.resource_id or f"{r.account}/{r.rate_key}/{r.service}",
        "ResourceName": r.resource_name or f"{r.account} ({r.rate_key})",
        "ResourceType": r.service,
        "ServiceCategory": r.service_category,
        "ServiceName": r.service_name or r.service,
        "SkuId": sku,
        "SkuPriceId": f"{sku}@{rate.effective_from.isoformat()}",
        "SubAccountId": r.account,
        "SubAccountName": r.account,
        "Tags": json.dumps(r.tags, sort_keys=True, separators=(",", ":")) if r.tags else "{}",
        "x_AllowanceQuantity": decimal_text(line.allowance_quantity),
        "x_AllowanceAmount": decimal_text(line.allowance_amount),
        "x_SubsidyPercent": decimal_text(rate.subsidy_percent),
        "x_SubsidyAmount": decimal_text(line.subsidy_amount),
        "x_RateId": "" if rate.rate_id is None else str(rate.rate_id),
        "x_RateEffectiveFrom": rate.effective_from.isoformat(),
        "x_Converter": converter,
    }


def write_focus(
    priced: Priced,
    out,
    *,
    period_start: datetime,
    period_end: datetime,
    converter: str,
    provider: str,
    billing_account: str,
) -> int:
    """Write the priced lines to the text stream `out` as FOCUS CSV; returns the row count."""
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for line in priced.lines:
        writer.writerow(
            focus_row(
                line,
                period_start=period_start,
                period_end=period_end,
                converter=converter,
                provider=provider,
                billing_account=billing_account,
            )
        )
    return len(priced.lines)
