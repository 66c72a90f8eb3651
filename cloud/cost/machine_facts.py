"""What a machine can do and costs, phrased for the panel (no network: bundled or cached prices)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..errors import CloudError
from .catalog import Catalog, InstanceType, load_catalog
from .estimate import Estimate
from .price_refresh import current_catalog


@lru_cache(maxsize=1)
def _bundled() -> Catalog:
    return load_catalog()


def catalog(price_cache: Path | None = None) -> Catalog:
    return current_catalog(_bundled(), price_cache) if price_cache is not None else _bundled()


def instance(instance_type: str, price_cache: Path | None = None) -> InstanceType:
    try:
        return catalog(price_cache).get(instance_type)
    except KeyError:
        raise CloudError(
            f"'{instance_type}' is not a machine type Cloud Render knows.",
            "Pick a machine from the list (for example g4dn.xlarge).",
            code="UnknownInstanceType",
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


def hourly_price(
    region: str, instance_type: str, spot: bool = False, price_cache: Path | None = None
) -> float:
    """On-demand price per hour; for spot this is the ceiling (spot never costs more)."""
    price = instance(instance_type, price_cache).price(region)
    if price is None:
        raise CloudError(
            f"{instance_type} is not offered in {region}.",
            "Pick another machine or region.",
            code="NotOffered",
        )
    return float(price)


def label(info: InstanceType, region: str) -> str:
    price = info.price(region)
    gpu = (
        f"{info.gpu_count}x {info.gpu_model} {info.gpu_memory_gib / max(info.gpu_count, 1):g} GB"
        if info.is_gpu
        else f"CPU {info.vcpu} vCPU"
    )
    return f"{info.name}: {gpu}, ${price:.2f}/h" if price is not None else f"{info.name}: {gpu}"


def menu(region: str) -> list[tuple[str, str]]:
    """(instance type, label) for every type offered in `region`, GPUs first, cheapest first."""
    offered = _bundled().offered_in(region)
    offered.sort(key=lambda t: (not t.is_gpu, t.price(region) or 0.0))
    return [(t.name, label(t, region)) for t in offered]


def job_estimate_text(region: str, instance_type: str, spot: bool, frames: int, max_hours: float) -> str:
    """Before a probe has measured the scene: the honest upper bound, the time cap at full price."""
    price = hourly_price(region, instance_type, spot)
    bound = price * max_hours
    kind = "spot ceiling" if spot else "on-demand"
    return f"At most ${bound:.2f} ({kind} ${price:.3f}/h x {max_hours:g} h time cap), for {frames} frames."


def estimate_lines(estimates: list[Estimate], chosen: str, limit: int = 6) -> list[str]:
    """The chosen type first, then the cheapest and fastest few, each with its range."""

    def line(e: Estimate) -> str:
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
            f"{e.instance_type}: ~{e.seconds_per_frame:.0f} s/frame, ${e.total_cost:.2f} for the job "
            f"(${e.low.total_cost:.2f}-${e.high.total_cost:.2f}, {e.total_seconds / 3600:.1f} h){tag}"
        )

    ordered = sorted(
        estimates, key=lambda e: (e.instance_type != chosen, not e.cheapest, not e.fastest, e.total_cost)
    )
    return [line(e) for e in ordered[:limit]]
