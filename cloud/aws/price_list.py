"""AWS's price answers: on-demand prices from the Price List API, spot prices from EC2.

The calls and the reading of their replies live here, beside the other AWS calls; what the
add-on keeps of them (dated tables, the cache on disk) is cloud/cost/price_refresh.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import CloudError, ErrorCode
from .error_rules import classify
from .session import AwsSettings, client

PRICING_REGION = "us-east-1"
# One Linux, shared-tenancy, no pre-installed software, on-demand price per type and region.
BASE_FILTERS = (
    ("operatingSystem", "Linux"),
    ("tenancy", "Shared"),
    ("preInstalledSw", "NA"),
    ("capacitystatus", "Used"),
    ("licenseModel", "No License required"),
)


def _aws_error(exc: Exception, what: str, action: str) -> CloudError:
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
    if code in ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation"):
        return CloudError(
            f"Your AWS user is not allowed to read {what}.",
            "Add the permissions shown in the add-on's preferences to the IAM policy, then try again.",
            code=ErrorCode.ACCESS_DENIED,
            detail=str(exc),
        )
    return CloudError(f"Could not read {what} from AWS.", action, code=classify(exc), detail=str(exc))


def on_demand_price(document: dict[str, Any]) -> float | None:
    """The hourly USD price in one Price List product document, if it has one."""
    for term in document.get("terms", {}).get("OnDemand", {}).values():
        for dimension in term.get("priceDimensions", {}).values():
            usd = dimension.get("pricePerUnit", {}).get("USD")
            if usd is not None and dimension.get("unit", "Hrs").startswith("Hr") and float(usd) > 0:
                return float(usd)
    return None


def fetch_on_demand_prices(
    settings: AwsSettings, instance_types: Iterable[str], regions: Iterable[str]
) -> dict[str, dict[str, float]]:
    """Ask pricing:GetProducts for each type (one paged query per type, all regions at once)."""
    wanted_regions = set(regions)
    pricing = client(settings.in_region(PRICING_REGION), "pricing")
    table: dict[str, dict[str, float]] = {}
    try:
        paginator = pricing.get_paginator("get_products")
        for itype in instance_types:
            filters = [{"Type": "TERM_MATCH", "Field": f, "Value": v} for f, v in BASE_FILTERS]
            filters.append({"Type": "TERM_MATCH", "Field": "instanceType", "Value": itype})
            pages = paginator.paginate(ServiceCode="AmazonEC2", Filters=filters, FormatVersion="aws_v1")
            for page in pages:
                for raw in page.get("PriceList", []):
                    doc = json.loads(raw) if isinstance(raw, str) else raw
                    attributes = doc.get("product", {}).get("attributes", {})
                    region = attributes.get("regionCode", "")
                    price = on_demand_price(doc)
                    if region in wanted_regions and price is not None:
                        table.setdefault(region, {})[attributes.get("instanceType", itype)] = price
    except (ClientError, BotoCoreError) as exc:
        raise _aws_error(
            exc,
            "current prices",
            "The prices shown are from the table bundled with the add-on; try again later.",
        ) from exc
    return table


def spot_prices(
    settings: AwsSettings, region: str, instance_types: Iterable[str], now: datetime | None = None
) -> dict[str, float]:
    """The lowest current Linux spot price per type across the region's zones (USD per hour)."""
    ec2 = client(settings.in_region(region), "ec2")
    types = list(instance_types)
    latest: dict[tuple[str, str], tuple[datetime, float]] = {}
    try:
        paginator = ec2.get_paginator("describe_spot_price_history")
        pages = paginator.paginate(
            InstanceTypes=types,
            ProductDescriptions=["Linux/UNIX"],
            StartTime=now or datetime.now(UTC),
        )
        for page in pages:
            for item in page.get("SpotPriceHistory", []):
                if not str(item.get("ProductDescription", "")).startswith("Linux/UNIX"):
                    continue
                key = (item["InstanceType"], item.get("AvailabilityZone", ""))
                stamp = item.get("Timestamp") or datetime.min.replace(tzinfo=UTC)
                if key not in latest or stamp > latest[key][0]:
                    latest[key] = (stamp, float(item["SpotPrice"]))
    except (ClientError, BotoCoreError) as exc:
        raise _aws_error(exc, "spot prices", "Use on-demand for this job, or try again in a minute.") from exc
    result: dict[str, float] = {}
    for (itype, _zone), (_stamp, price) in latest.items():
        if itype in types:
            result[itype] = min(price, result.get(itype, price))
    return result
