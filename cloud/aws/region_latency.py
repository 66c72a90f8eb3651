"""Region picker: how far each region is from the artist, what it offers, and what it costs.

Latency is the median of a few plain HTTPS requests to a cheap regional endpoint (DynamoDB's
/ping answers without credentials), measured from the artist's machine, one thread per region
so a dead region costs one timeout, not one per region. Uploads and the log stream feel the
latency; the price and the GPU types offered decide what a render costs and whether it can run.
"""

from __future__ import annotations

import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..cost.catalog import Catalog

# Weights of the three things an artist trades off; lower score is better.
W_LATENCY, W_PRICE, W_CHOICE = 0.4, 0.4, 0.2


def default_urls(regions: list[str]) -> dict[str, str]:
    return {region: f"https://dynamodb.{region}.amazonaws.com/ping" for region in regions}


def _one_request(url: str, timeout: float) -> float | None:
    """Milliseconds for one request; any HTTP answer counts (even an error status)."""
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read(64)
    except urllib.error.HTTPError:
        pass  # the region answered; that is all a latency probe needs
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return (time.perf_counter() - start) * 1000.0


def _probe_one(url: str, attempts: int, timeout: float) -> float | None:
    times: list[float] = []
    for _ in range(max(1, attempts)):
        ms = _one_request(url, timeout)
        if ms is None and not times:
            return None  # unreachable: do not wait for every attempt to time out
        if ms is not None:
            times.append(ms)
    return statistics.median(times) if times else None


def probe_latency(urls: Mapping[str, str], attempts: int = 5, timeout: float = 2) -> dict[str, float | None]:
    """Median round-trip milliseconds per region, or None where no request got an answer."""
    if not urls:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(urls)), thread_name_prefix="latency") as pool:
        futures = {region: pool.submit(_probe_one, url, attempts, timeout) for region, url in urls.items()}
        return {region: future.result() for region, future in futures.items()}


@dataclass(frozen=True)
class RegionChoice:
    region: str
    latency_ms: float | None
    gpu_types: list[str]
    cheapest_gpu_type: str | None
    cheapest_gpu_price: float | None
    score: float  # lower is better; unreachable or GPU-less regions are infinite
    nearest: bool = False
    cheapest: bool = False
    most_types: bool = False


def rank_regions(
    latencies: Mapping[str, float | None],
    catalog: Catalog,
    region_offers: Mapping[str, set[str]] | None = None,
) -> list[RegionChoice]:
    """Regions best first, from latency, price of the cheapest GPU type and how many GPU types run there.

    `region_offers` (region -> instance types offered, from DescribeInstanceTypeOfferings) narrows
    the catalog's list; without it a type is taken as offered where the catalog has a price.
    """
    rows = []
    for region, latency in latencies.items():
        offered = [t for t in catalog.offered_in(region) if t.is_gpu]
        if region_offers is not None:
            allowed = region_offers.get(region, set())
            offered = [t for t in offered if t.name in allowed]
        cheapest = min(offered, key=lambda t: t.prices[region], default=None)
        rows.append((region, latency, sorted(t.name for t in offered), cheapest))

    usable = [(region, ms, names, t) for region, ms, names, t in rows if ms is not None and t is not None]
    best_latency = min((ms for _, ms, _, _ in usable), default=1.0) or 1.0
    best_price = min((t.prices[region] for region, _, _, t in usable), default=1.0)
    most = max((len(names) for _, _, names, _ in usable), default=1) or 1

    choices = []
    for region, latency, names, cheapest in rows:
        price = cheapest.prices[region] if cheapest is not None else None
        if latency is None or price is None:
            score = float("inf")
        else:
            score = (
                W_LATENCY * latency / best_latency
                + W_PRICE * price / best_price
                + W_CHOICE * (most - len(names)) / most
            )
        choices.append(
            RegionChoice(
                region=region,
                latency_ms=latency,
                gpu_types=names,
                cheapest_gpu_type=cheapest.name if cheapest is not None else None,
                cheapest_gpu_price=price,
                score=score,
                nearest=latency is not None and price is not None and latency == best_latency,
                cheapest=price is not None and latency is not None and price == best_price,
                most_types=bool(names) and latency is not None and len(names) == most,
            )
        )
    return sorted(
        choices, key=lambda c: (c.score, c.latency_ms if c.latency_ms is not None else float("inf"))
    )
