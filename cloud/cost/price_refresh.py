"""Current prices: on-demand from the AWS Price List API, spot from EC2, cached on disk.

The catalog ships a dated price table so an estimate never needs the network; a refresh asks
pricing:GetProducts (served only from us-east-1 and a few other regions) for the catalog's
types and keeps the answer with the date it was fetched, so the panel can say how old a price
is. Spot prices change often: they are asked for when they are shown, kept in memory by the
add-on for a short while (`SpotTable`, with the time they were asked), never written to disk.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..aws.error_rules import classify
from ..aws.session import AwsSettings, client
from ..errors import CloudError, ErrorCode
from .catalog import Catalog

PRICING_REGION = "us-east-1"
SOURCE = "aws-price-list"
# One Linux, shared-tenancy, no pre-installed software, on-demand price per type and region.
BASE_FILTERS = (
    ("operatingSystem", "Linux"),
    ("tenancy", "Shared"),
    ("preInstalledSw", "NA"),
    ("capacitystatus", "Used"),
    ("licenseModel", "No License required"),
)


@dataclass(frozen=True)
class PriceTable:
    """On-demand USD per hour: region -> instance type -> price, with when it was fetched."""

    prices: dict[str, dict[str, float]]
    fetched_at: str  # ISO 8601, UTC
    source: str = SOURCE

    @property
    def date(self) -> str:
        return self.fetched_at[:10]

    def age(self, now: datetime | None = None) -> timedelta:
        fetched = datetime.fromisoformat(self.fetched_at)
        return (now or datetime.now(UTC)) - fetched

    def apply(self, catalog: Catalog) -> Catalog:
        return catalog.with_prices(self.prices, self.date, self.source)


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


def save_prices(path: Path, table: PriceTable) -> None:
    """Write atomically, so a crash mid-write never leaves a half file that hides the bundled one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"fetched_at": table.fetched_at, "source": table.source, "prices": table.prices}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)


def load_cached_prices(path: Path) -> PriceTable | None:
    """The cached table, or None when there is none or it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        prices = {r: {t: float(p) for t, p in table.items()} for r, table in data["prices"].items()}
        return PriceTable(prices=prices, fetched_at=str(data["fetched_at"]), source=str(data["source"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def refresh_prices(
    settings: AwsSettings,
    catalog: Catalog,
    cache_path: Path,
    *,
    max_age: timedelta | None = None,
    now: datetime | None = None,
) -> PriceTable:
    """Fetched prices for the catalog's types and regions, from the cache when younger than `max_age`."""
    now = now or datetime.now(UTC)
    cached = load_cached_prices(cache_path)
    if cached is not None and max_age is not None and cached.age(now) <= max_age:
        return cached
    prices = fetch_on_demand_prices(settings, list(catalog.types), catalog.regions())
    table = PriceTable(prices=prices, fetched_at=now.isoformat(timespec="seconds"))
    save_prices(cache_path, table)
    return table


def current_catalog(catalog: Catalog, cache_path: Path) -> Catalog:
    """The catalog with cached prices applied where there are any (no network)."""
    cached = load_cached_prices(cache_path)
    return cached.apply(catalog) if cached is not None else catalog


@dataclass(frozen=True)
class SpotTable:
    """Current spot USD per hour in one region: instance type -> price, with when it was asked."""

    region: str
    prices: dict[str, float]
    fetched_at: str  # ISO 8601, UTC

    def age(self, now: datetime | None = None) -> timedelta:
        return (now or datetime.now(UTC)) - datetime.fromisoformat(self.fetched_at)


def fetch_spot_table(
    settings: AwsSettings, region: str, instance_types: Iterable[str], now: datetime | None = None
) -> SpotTable:
    """`spot_prices` for the types, dated now; a zero or negative price is left out (no cap holds)."""
    now = now or datetime.now(UTC)
    prices = {t: p for t, p in spot_prices(settings, region, instance_types, now).items() if p > 0}
    return SpotTable(region=region, prices=prices, fetched_at=now.isoformat(timespec="seconds"))


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
