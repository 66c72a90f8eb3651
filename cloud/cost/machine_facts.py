"""What a machine can do and costs, phrased for the panel (no network: the prices are given).

Every price the add-on shows or records is an `HourlyPrice` from `price_for`: the catalog's
on-demand price (bundled, or refreshed from the AWS price list) or, for spot, the current spot
price when one is known and the on-demand price as its ceiling when not, each with where it
comes from and its date in a few words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from ..errors import CloudError, ErrorCode
from .caps import worst_case
from .catalog import Catalog, InstanceType, load_catalog
from .estimate import Estimate
from .price_refresh import PriceTable, SpotTable


@lru_cache(maxsize=1)
def _bundled() -> Catalog:
    return load_catalog()


def catalog(prices: PriceTable | None = None) -> Catalog:
    """The bundled catalog, with `prices` (a refreshed table) applied where it has them."""
    return prices.apply(_bundled()) if prices is not None else _bundled()


def instance(instance_type: str, current: Catalog | None = None) -> InstanceType:
    try:
        return (current or _bundled()).get(instance_type)
    except KeyError:
        raise CloudError(
            f"'{instance_type}' is not a machine type Cloud Render knows.",
            "Pick a machine from the list (for example g4dn.xlarge).",
            code=ErrorCode.UNKNOWN_INSTANCE_TYPE,
        ) from None


def known(instance_type: str) -> bool:
    return instance_type in _bundled().types


def has_gpu(instance_type: str) -> bool:
    return known(instance_type) and _bundled().get(instance_type).is_gpu


def gpu_memory_gb(instance_type: str) -> float | None:
    if not has_gpu(instance_type):
        return None
    info = _bundled().get(instance_type)
    return info.gpu_memory_gib / max(info.gpu_count, 1)


def hourly_price(region: str, instance_type: str, current: Catalog | None = None) -> float:
    """On-demand price per hour (for spot, the ceiling: spot never costs more)."""
    price = instance(instance_type, current).price(region)
    if price is None:
        raise CloudError(
            f"{instance_type} is not offered in {region}.",
            "Pick another machine or region.",
            code=ErrorCode.NOT_OFFERED,
        )
    return float(price)


def usd(amount: float, digits: int = 3) -> str:
    """Dollars with `digits` decimals, or as many as a price under a cent needs."""
    if 0 < amount < 10**-digits:
        return "$" + f"{amount:.8f}".rstrip("0")
    return f"${amount:.{digits}f}"


@dataclass(frozen=True)
class HourlyPrice:
    """One machine's price per hour as the add-on uses it, with where it comes from."""

    instance_type: str
    region: str
    usd: float
    kind: str  # "on-demand", "spot", or "spot ceiling" (no spot price known: the on-demand one)
    source: str  # "aws-price-list", "bundled" or "spot"
    as_of: str  # the list's date (YYYY-MM-DD), or when the spot price was asked (ISO 8601, UTC)

    def origin(self, now: datetime | None = None) -> str:
        """Where the price comes from and its date, in a few words."""
        if self.source == "spot":
            asked = datetime.fromisoformat(self.as_of).astimezone()
            today = (now or datetime.now(UTC)).astimezone().date()
            day = "today" if asked.date() == today else asked.date().isoformat()
            return f"spot price {asked:%H:%M} {day}"
        if self.source == "bundled":
            return f"bundled prices of {self.as_of}"
        return f"AWS price list {self.as_of}"

    def words(self, now: datetime | None = None) -> str:
        """E.g. "$0.526/h on-demand, AWS price list 2026-11-30" or "$0.158/h spot, spot price 12:04 today"."""
        return f"{usd(self.usd)}/h {self.kind}, {self.origin(now)}"


def price_for(
    current: Catalog, region: str, instance_type: str, spot: bool = False, spot_table: SpotTable | None = None
) -> HourlyPrice:
    """The price a job on this machine is shown, confirmed and capped with.

    On-demand: the catalog's price. Spot: the spot price from `spot_table` when it has one for
    this type (never above the on-demand price), else the on-demand price as the ceiling.
    """
    on_demand = hourly_price(region, instance_type, current)
    refreshed, date = current.price_origin(region, instance_type)
    listed = HourlyPrice(
        instance_type,
        region,
        on_demand,
        "spot ceiling" if spot else "on-demand",
        "aws-price-list" if refreshed else "bundled",
        date,
    )
    if not spot or spot_table is None or spot_table.region != region:
        return listed
    price = spot_table.prices.get(instance_type)
    if price is None or price <= 0:
        return listed
    return HourlyPrice(instance_type, region, min(price, on_demand), "spot", "spot", spot_table.fetched_at)


def label(info: InstanceType, region: str, price: float | None = None) -> str:
    """ "g4dn.xlarge: 1x NVIDIA T4 16 GB, $0.53/h" (`price` overrides the catalog's)."""
    price = price if price is not None else info.price(region)
    memory = f" {info.gpu_memory_gib / max(info.gpu_count, 1):g} GB"
    if re.search(r"\d\s*GB", info.gpu_model or ""):  # "NVIDIA A100 40GB" says it already
        memory = ""
    gpu = f"{info.gpu_count}x {info.gpu_model}{memory}" if info.is_gpu else f"CPU {info.vcpu} vCPU"
    return f"{info.name}: {gpu}, {usd(price, 2)}/h" if price is not None else f"{info.name}: {gpu}"


def menu(
    region: str, current: Catalog | None = None, spot_table: SpotTable | None = None
) -> list[tuple[str, str]]:
    """(instance type, label) for every type offered in `region`, GPUs first, cheapest first.

    With a spot table (Spot is on) a type's spot price stands in for its on-demand one.
    """
    current = current or _bundled()
    spot = spot_table.prices if spot_table is not None and spot_table.region == region else {}

    def price(t: InstanceType) -> float:
        listed = t.price(region) or 0.0
        return min(spot.get(t.name, listed), listed) if spot.get(t.name, 0) > 0 else listed

    offered = current.offered_in(region)
    offered.sort(key=lambda t: (not t.is_gpu, price(t)))
    return [(t.name, label(t, region, price(t))) for t in offered]


def job_estimate_text(
    price: HourlyPrice, frames: int, max_hours: float, max_cost: float = 0.0, machines: int = 1
) -> str:
    """Before a probe has measured the scene: the honest upper bound, as the caps enforce it:
    the time cap at full price on every machine, or the cost cap when that is lower
    (`caps.worst_case`)."""
    bound = worst_case(max_cost, max_hours, price.usd, machines)
    counted = "1 frame" if frames == 1 else f"{frames} frames"  # a still is one frame
    if bound.by_cost_cap:
        together = f", for all {machines} machines together" if machines > 1 else ""
        return f"At most ${bound.usd:.2f} (the cost cap{together}), for {counted}."
    each = f"{machines} machines x " if machines > 1 else ""
    return (
        f"At most ${bound.usd:.2f} ({each}{price.kind} {usd(price.usd)}/h x {max_hours:g} h time cap), "
        f"for {counted}."
    )


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{max(1, round(seconds / 60))} min"


def estimate_parts(e: Estimate, chosen: str) -> tuple[str, str]:
    """One estimate's two halves: "<price>, <time>" and "<machine> [marks], ~<s>/frame (range)".
    The panel shows them as one line, price first (a narrow panel wraps the rest, never these);
    the confirmation turns them round."""
    marks = [
        m
        for m, on in (
            ("cheapest", e.cheapest),
            ("fastest", e.fastest),
            ("chosen", e.instance_type == chosen),
        )
        if on
    ]
    tag = f" [{', '.join(marks)}]" if marks else ""
    return (
        f"${e.total_cost:.2f}, {_duration(e.total_seconds)}",
        f"{e.instance_type}{tag}, ~{e.seconds_per_frame:.{0 if e.seconds_per_frame >= 10 else 1}f} s/frame "
        f"(${e.low.total_cost:.2f}-${e.high.total_cost:.2f})",
    )


def shown_estimates(estimates: list[Estimate], chosen: str, limit: int = 6) -> list[Estimate]:
    """The chosen type first, then the cheapest and fastest few."""
    ordered = sorted(
        estimates, key=lambda e: (e.instance_type != chosen, not e.cheapest, not e.fastest, e.total_cost)
    )
    return ordered[:limit]


def estimate_lines(estimates: list[Estimate], chosen: str, limit: int = 6) -> list[str]:
    """The chosen type first, then the cheapest and fastest few, each with its range."""
    return [": ".join(estimate_parts(e, chosen)) for e in shown_estimates(estimates, chosen, limit)]
