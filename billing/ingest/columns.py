"""FOCUS column names (1.0 to 1.3, and the pre-1.0 names still seen) mapped to Charge fields.

Headers match in any case and with surrounding spaces or a byte-order mark. Columns not listed
here (x_ custom columns, FOCUS columns we don't model) are kept in Charge.extra by their header.
"""

# Charge field -> accepted header names, lowercase, preferred (current FOCUS) name first.
FIELD_HEADERS: dict[str, tuple[str, ...]] = {
    "billing_period_start": ("billingperiodstart",),
    "billing_period_end": ("billingperiodend",),
    "charge_period_start": ("chargeperiodstart",),
    "charge_period_end": ("chargeperiodend",),
    "billed_cost": ("billedcost",),
    "list_cost": ("listcost",),
    "contracted_cost": ("contractedcost",),
    "effective_cost": ("effectivecost", "amortizedcost"),  # AmortizedCost: FOCUS 0.5
    "billing_currency": ("billingcurrency",),
    "charge_category": ("chargecategory", "chargetype"),  # ChargeType: before 1.0
    "charge_class": ("chargeclass",),
    "charge_description": ("chargedescription",),
    "service_name": ("servicename",),
    "service_category": ("servicecategory",),
    "resource_id": ("resourceid",),
    "resource_name": ("resourcename",),
    "region_id": ("regionid", "region"),
    "sku_id": ("skuid",),
    "sub_account_id": ("subaccountid",),
    "sub_account_name": ("subaccountname",),
    "billing_account_id": ("billingaccountid",),
    "billing_account_name": ("billingaccountname",),
    "invoice_id": ("invoiceid",),
    # ServiceProviderName replaces ProviderName in 1.3.
    "provider_name": ("serviceprovidername", "providername"),
    "consumed_quantity": ("consumedquantity",),
    "consumed_unit": ("consumedunit",),
    "pricing_quantity": ("pricingquantity",),
    "pricing_unit": ("pricingunit",),
    "tags": ("tags",),
}

REQUIRED_FIELDS = ("billing_period_start", "billed_cost")
MONEY_FIELDS = ("billed_cost", "list_cost", "contracted_cost", "effective_cost")
QUANTITY_FIELDS = ("consumed_quantity", "pricing_quantity")
DATETIME_FIELDS = (
    "billing_period_start",
    "billing_period_end",
    "charge_period_start",
    "charge_period_end",
)
# FOCUS names for messages, e.g. "column BilledCost".
FOCUS_NAMES = {
    "billing_period_start": "BillingPeriodStart",
    "billing_period_end": "BillingPeriodEnd",
    "charge_period_start": "ChargePeriodStart",
    "charge_period_end": "ChargePeriodEnd",
    "billed_cost": "BilledCost",
    "list_cost": "ListCost",
    "contracted_cost": "ContractedCost",
    "effective_cost": "EffectiveCost",
    "consumed_quantity": "ConsumedQuantity",
    "pricing_quantity": "PricingQuantity",
}

_HEADER_TO_FIELD = {header: name for name, headers in FIELD_HEADERS.items() for header in headers}


def normalize_header(header: str) -> str:
    return header.replace("\ufeff", "").strip().lower()


def map_headers(headers: list[str]) -> tuple[dict[str, int], dict[str, int], list[str]]:
    """Split a file's headers into (field -> column index, extra header -> index, problems)."""
    fields: dict[str, int] = {}
    extra: dict[str, int] = {}
    problems: list[str] = []
    for index, raw in enumerate(headers):
        header = normalize_header(raw)
        name = _HEADER_TO_FIELD.get(header)
        if name is None:
            label = raw.replace("\ufeff", "").strip()
            if not label:
                problems.append(f"column {index + 1} has no header")
            elif label in extra:
                problems.append(f"column {label} appears twice")
            else:
                extra[label] = index
        elif name in fields:
            problems.append(f"column {raw.strip()} appears twice (or with an older name)")
        else:
            fields[name] = index
    for name in REQUIRED_FIELDS:
        if name not in fields:
            problems.append(f"required column {FOCUS_NAMES[name]} is missing")
    return fields, extra, problems
