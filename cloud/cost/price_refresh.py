"""Current prices: on-demand from the AWS Price List API, spot from EC2, cached on disk.

The AWS calls are cloud/aws/price_list.py; this module dates their answers and keeps them.

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

from ..aws.price_list import fetch_on_demand_prices, spot_prices
from ..aws.session import AwsSettings
from .catalog import Catalog

SOURCE = "aws-price-list"


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
