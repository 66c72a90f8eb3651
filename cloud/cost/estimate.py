"""Time and cost of a render on each instance type, before launch, from a short local probe.

What the add-on measures (its bpy side) and passes in a `Probe`:

- `seconds`: wall-clock seconds of one Cycles render on the artist's CPU of a small tile of
  the job's first frame (a render border, e.g. the centre 25% x 25%), at reduced samples
  (e.g. 16), with the scene's other settings unchanged.
- `pixels`: pixels in that tile (border width x height in pixels, after resolution %).
- `samples`: the samples the probe used.
- `frame_pixels`, `frame_samples`: what the job will render per frame.
- `sync_seconds` (optional): the part of `seconds` before the first sample (scene sync, BVH),
  which does not grow with pixels or samples; 0 when not measured.
- `local_speed`: the artist's machine in Blender Open Data score units; when unknown, use
  `local_cpu_speed(threads)` with the number of render threads (Cycles CPU is assumed).

Time per frame on a type = full-frame local time x local_speed / type speed, plus a per-frame
overhead (load, save, upload). A job adds boot and Blender-install overhead once. The range
(low/high) says how far a probe on one tile can be off: the tile may be easier or harder than
the whole frame, and benchmark speeds vary by scene.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, replace

from ..errors import CloudError, ErrorCode
from .catalog import Catalog, load_catalog

# Blender Open Data score per CPU thread of a typical recent x86 CPU (c5: 177 for 8 vCPUs).
SPEED_PER_THREAD = 22.0
FRAME_OVERHEAD_S = 3.0  # read the .blend, write and upload the frame
BOOT_S = (60.0, 90.0, 180.0)  # low, typical, high: launch to the worker running
INSTALL_S = (30.0, 120.0, 300.0)  # Blender from the bucket cache (low) or downloaded (high)
RANGE = (0.6, 1.8)  # how far the probe's extrapolation may be off, per frame
MEASURED_RANGE = (0.9, 1.2)  # once real frames are timed
MIN_BILLED_S = 60.0  # EC2 Linux per-second billing has a one-minute minimum


def local_cpu_speed(threads: int) -> float:
    """A stand-in for the artist's CPU score when no benchmark of it is known."""
    return max(1, threads) * SPEED_PER_THREAD


@dataclass(frozen=True)
class Probe:
    seconds: float
    pixels: int
    samples: int
    frame_pixels: int
    frame_samples: int
    local_speed: float
    sync_seconds: float = 0.0

    def local_frame_seconds(self) -> float:
        """Seconds one full frame would take on the artist's machine."""
        if self.seconds <= 0 or self.pixels <= 0 or self.samples <= 0 or self.local_speed <= 0:
            raise CloudError(
                "The test render did not give a usable time.",
                "Render the test tile again, with at least one sample and a non-empty border.",
                code=ErrorCode.BAD_PROBE,
            )
        sync = min(max(self.sync_seconds, 0.0), self.seconds)
        scale = (self.frame_pixels * self.frame_samples) / (self.pixels * self.samples)
        return (self.seconds - sync) * scale + sync


@dataclass(frozen=True)
class ProbePlan:
    """What the add-on should render for the probe: a centred border and reduced samples."""

    border_min_x: float
    border_max_x: float
    border_min_y: float
    border_max_y: float
    pixels: int
    samples: int


def plan_probe(
    width: int, height: int, samples: int, fraction: float = 0.25, max_samples: int = 16
) -> ProbePlan:
    """A centred tile `fraction` of the frame on each side, at no more than `max_samples` samples.

    `width` and `height` are the frame's pixels after the resolution percentage. The add-on sets
    render.use_border (and use_crop_to_border) to these values on a copy of the scene settings,
    renders once, and measures the wall-clock seconds of that render.
    """
    fraction = min(max(fraction, 0.05), 1.0)
    lo, hi = 0.5 - fraction / 2, 0.5 + fraction / 2
    pixels = max(1, round(width * fraction)) * max(1, round(height * fraction))
    return ProbePlan(lo, hi, lo, hi, pixels, max(1, min(samples, max_samples)))


def probe_render_seconds(probe: Probe) -> float:
    """Seconds one full frame would take on the artist's machine, from the measured probe."""
    return probe.local_frame_seconds()


@dataclass(frozen=True)
class Bound:
    """One end of an estimate's range."""

    seconds_per_frame: float
    total_seconds: float
    total_cost: float


@dataclass(frozen=True)
class Estimate:
    instance_type: str
    seconds_per_frame: float
    cost_per_frame: float
    total_seconds: float
    total_cost: float
    low: Bound
    high: Bound
    cheapest: bool = False
    fastest: bool = False
    price_per_hour: float = 0.0
    measured: bool = False


def billed_cost(seconds: float, price_per_hour: float) -> float:
    return max(seconds, MIN_BILLED_S) * price_per_hour / 3600.0


def estimate_for(
    probe: Probe, frames: int, instance_type: str, speed: float, price_per_hour: float
) -> Estimate:
    """One type's estimate (not yet marked cheapest/fastest)."""
    render_s = probe.local_frame_seconds() * probe.local_speed / speed
    spf = render_s + FRAME_OVERHEAD_S

    def bound(factor: float, boot: float, install: float) -> Bound:
        per_frame = render_s * factor + FRAME_OVERHEAD_S
        total = boot + install + frames * per_frame
        return Bound(per_frame, total, billed_cost(total, price_per_hour))

    mid = bound(1.0, BOOT_S[1], INSTALL_S[1])
    return Estimate(
        instance_type=instance_type,
        seconds_per_frame=spf,
        cost_per_frame=spf * price_per_hour / 3600.0,
        total_seconds=mid.total_seconds,
        total_cost=mid.total_cost,
        low=bound(RANGE[0], BOOT_S[0], INSTALL_S[0]),
        high=bound(RANGE[1], BOOT_S[2], INSTALL_S[2]),
        price_per_hour=price_per_hour,
    )


# Jobs within this factor of the quickest count as equally fast (estimates are +-50% anyway).
SAME_SPEED = 1.1


def mark(estimates: list[Estimate]) -> list[Estimate]:
    """Sort by job cost and flag the cheapest and the fastest (ties: the first one)."""
    if not estimates:
        return []
    ordered = sorted(estimates, key=lambda e: (e.total_cost, e.total_seconds))
    cheapest = ordered[0].instance_type
    quickest = min(ordered, key=lambda e: (e.total_seconds, e.total_cost))
    # A job that boot and per-frame overhead dominate takes about as long on any machine: then
    # the cheapest is as fast as any, and a machine many times the price is not "fastest".
    as_fast = [e for e in ordered if e.total_seconds <= quickest.total_seconds * SAME_SPEED]
    fastest = as_fast[0].instance_type  # ordered by cost: the cheapest of the quickest
    return [
        replace(e, cheapest=e.instance_type == cheapest, fastest=e.instance_type == fastest) for e in ordered
    ]


def estimate_all(
    probe: Probe,
    frames: int,
    region: str,
    spot: bool = False,
    prices: Mapping[str, float] | None = None,
    *,
    catalog: Catalog | None = None,
    speeds: Mapping[str, float] | None = None,
    min_gpu_memory_gib: float = 0.0,
) -> list[Estimate]:
    """Estimates for every catalog type priced in `region`, cheapest job first.

    `prices` (type -> USD/h) overrides the catalog's on-demand prices: pass refreshed prices, or
    spot prices with `spot=True` (types with no spot price are then left out). With `spot=True` and
    no prices, on-demand prices are used: that can only overstate the cost, so a cap computed from
    it still holds. `speeds` overrides relative speeds (type -> Open Data score). GPU types with
    less memory per GPU than `min_gpu_memory_gib` (the scene's measured need) are left out.
    """
    catalog = catalog or load_catalog()
    prices = prices or {}
    speeds = speeds or {}
    estimates = []
    for itype in catalog.offered_in(region):
        if itype.is_gpu and itype.gpu_memory_gib / itype.gpu_count < min_gpu_memory_gib:
            continue  # the scene would not fit on one of its GPUs
        if spot and prices and itype.name not in prices:
            continue  # no spot market for this type here
        price = prices.get(itype.name, itype.prices[region])
        estimates.append(estimate_for(probe, frames, itype.name, speeds.get(itype.name, itype.speed), price))
    return mark(estimates)


def with_measured(
    estimate: Estimate, seconds_per_frame: float, frames_done: int, frames_total: int, elapsed_s: float
) -> Estimate:
    """The estimate once the worker reports real seconds per frame (its status.json).

    The total is what has run so far plus the frames left at the measured pace.
    """
    if seconds_per_frame <= 0:
        return estimate
    price = estimate.price_per_hour
    left = max(frames_total - frames_done, 0)

    def bound(factor: float) -> Bound:
        total = elapsed_s + left * seconds_per_frame * factor
        return Bound(seconds_per_frame * factor, total, billed_cost(total, price))

    mid = bound(1.0)
    return replace(
        estimate,
        seconds_per_frame=seconds_per_frame,
        cost_per_frame=seconds_per_frame * price / 3600.0,
        total_seconds=mid.total_seconds,
        total_cost=mid.total_cost,
        low=bound(MEASURED_RANGE[0]),
        high=bound(MEASURED_RANGE[1]),
        measured=True,
    )


@dataclass(frozen=True)
class Quote:
    seconds_per_frame: float
    cost_per_frame: float
    projected_total: float
    under_cap: bool


def quote_from_scouts(
    scout_seconds: list[float], frames_total: int, price_per_hour: float, overhead_s: float, cap: float
) -> Quote:
    """'Quote first': price the whole job from scout frames spread over the range.

    Scouts are first, middle and last frames, so their mean stands for the average frame.
    `overhead_s` is the boot and install time already spent; `cap` is the job's max cost (USD).
    """
    times = [s for s in scout_seconds if s > 0]
    if not times:
        raise CloudError(
            "No scout frame finished, so there is no price to show.",
            "Check the render log for errors, then start the quote again.",
            code=ErrorCode.NO_SCOUT_FRAMES,
        )
    spf = statistics.fmean(times)
    projected = billed_cost(overhead_s + frames_total * spf, price_per_hour)
    return Quote(
        seconds_per_frame=spf,
        cost_per_frame=spf * price_per_hour / 3600.0,
        projected_total=projected,
        under_cap=projected <= cap,
    )
