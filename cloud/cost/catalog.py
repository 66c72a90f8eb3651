"""The instance types worth rendering on: hardware, relative Cycles speed and prices per region.

The data lives in `data/instance_catalog.json` (with its sources and dates) so a price or speed
update is a data change, not a code change. Prices refreshed from AWS (`price_refresh`) replace
the bundled ones through `Catalog.with_prices`, which remembers which prices it replaced and when
they were fetched, so each price can say where it comes from (`Catalog.price_origin`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DATA_FILE = Path(__file__).resolve().parent / "data" / "instance_catalog.json"

# Never offered for launching, whatever a data file or a price refresh says: V100 (p3) is not
# supported by current NVIDIA AMIs, and Blender has no Linux ARM build (g5g).
EXCLUDED_FAMILIES = frozenset({"p3", "g5g"})


@dataclass(frozen=True)
class InstanceType:
    """One launchable type. `speed` is in Blender Open Data score units: time per frame ~ 1/speed."""

    name: str
    family: str
    gpu_model: str | None
    gpu_count: int
    gpu_memory_gib: float
    vcpu: int
    ram_gib: float
    speed: float
    speed_source: str
    prices: dict[str, float] = field(default_factory=dict)  # region -> on-demand USD per hour

    @property
    def is_gpu(self) -> bool:
        return self.gpu_count > 0

    def price(self, region: str) -> float | None:
        return self.prices.get(region)


@dataclass(frozen=True)
class ReferenceMeasurement:
    """A measured render time on real hardware, kept to check the estimator (not launchable)."""

    instance_type: str
    seconds_per_frame: float
    price_per_hour: float


@dataclass(frozen=True)
class Catalog:
    types: dict[str, InstanceType]
    prices_date: str
    prices_source: str
    reference: dict[str, ReferenceMeasurement] = field(default_factory=dict)
    reference_samples: int = 0
    # The bundled table's date (prices_date becomes the refresh's date once prices are replaced),
    # and the (region, type) prices that a refresh replaced.
    bundled_date: str = ""
    refreshed: frozenset[tuple[str, str]] = frozenset()

    def get(self, name: str) -> InstanceType:
        return self.types[name]

    def regions(self) -> list[str]:
        """Every region with at least one price, sorted."""
        return sorted({region for t in self.types.values() for region in t.prices})

    def offered_in(self, region: str) -> list[InstanceType]:
        """Types with a price in `region` (the capacity module checks live offerings)."""
        return [t for t in self.types.values() if region in t.prices]

    def gpu_types(self) -> list[InstanceType]:
        return [t for t in self.types.values() if t.is_gpu]

    def with_prices(self, prices: dict[str, dict[str, float]], date: str, source: str) -> Catalog:
        """A copy whose prices come from `prices` (region -> type -> USD/h) where it has them."""
        types = {}
        replaced = set(self.refreshed)
        for name, itype in self.types.items():
            merged = dict(itype.prices)
            for region, table in prices.items():
                if name in table:
                    merged[region] = table[name]
                    replaced.add((region, name))
            types[name] = replace(itype, prices=merged)
        return replace(
            self,
            types=types,
            prices_date=date,
            prices_source=source,
            bundled_date=self.bundled_date or self.prices_date,
            refreshed=frozenset(replaced),
        )

    def price_origin(self, region: str, name: str) -> tuple[bool, str]:
        """(refreshed, date) of one price: True with the refresh's date when a refresh replaced
        it, else False with the bundled table's date."""
        if (region, name) in self.refreshed:
            return True, self.prices_date
        return False, self.bundled_date or self.prices_date


def _instance_type(name: str, data: dict[str, Any]) -> InstanceType:
    return InstanceType(
        name=name,
        family=str(data["family"]),
        gpu_model=data.get("gpu_model"),
        gpu_count=int(data["gpu_count"]),
        gpu_memory_gib=float(data["gpu_memory_gib"]),
        vcpu=int(data["vcpu"]),
        ram_gib=float(data["ram_gib"]),
        speed=float(data["speed"]),
        speed_source=str(data["speed_source"]),
        prices={region: float(price) for region, price in data["prices"].items()},
    )


def load_catalog(path: Path | None = None) -> Catalog:
    """Read the bundled catalog; excluded families are dropped even if a data file lists them."""
    doc = json.loads((path or DATA_FILE).read_text(encoding="utf-8"))
    types = {
        name: _instance_type(name, data)
        for name, data in doc["types"].items()
        if str(data["family"]) not in EXCLUDED_FAMILIES
    }
    ref_doc = doc.get("reference_measurements", {})
    reference = {
        name: ReferenceMeasurement(name, float(item["seconds_per_frame"]), float(item["price_per_hour"]))
        for name, item in ref_doc.get("types", {}).items()
    }
    return Catalog(
        types=types,
        prices_date=str(doc["prices_date"]),
        prices_source=str(doc["prices_source"]),
        reference=reference,
        reference_samples=int(ref_doc.get("samples", 0)),
        bundled_date=str(doc["prices_date"]),
    )
