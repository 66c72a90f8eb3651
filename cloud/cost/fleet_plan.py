"""How many machines: time and cost for 1, N/2 and N, and the N that finishes within a time.

N machines cost about the same machine time as one (the frames are the same frames) plus N
boots, and finish in about frames x seconds per frame / N plus one boot. The figures come from
the estimate (seconds per frame on the chosen machine) and the boot overhead each machine pays
before its first frame (Blender, the inputs, the kernels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Boot to first frame on a GPU machine that fetches Blender from the bucket (on paper until a
# GPU machine measures it: instance boot, the Blender download and unpack, the inputs, kernels).
BOOT_S = 5 * 60
# Batch adds its own scale-up from zero (the compute environment notices the job, the ECS agent
# registers, the container image is pulled): on paper, see issue 12's note.
BATCH_EXTRA_S = 3 * 60
# A still over N machines ends with one machine downloading the parts in-region, merging,
# denoising and compositing once (on paper, at 4K with every pass: a few seconds of merge, the
# parts' download, Blender's start twice).
STILL_MERGE_S = 60


@dataclass(frozen=True)
class FleetOption:
    machines: int
    minutes: float  # wall-clock until the last frame, boots included
    cost: float  # every machine's running time at the price


def option(
    frames: int,
    seconds_per_frame: float,
    price_per_hour: float,
    machines: int,
    boot_s: float = BOOT_S,
    still: bool = False,
) -> FleetOption:
    """One machine count's time and cost (frames spread evenly, every machine boots once). A
    still (one frame, its samples split: cloud/job/still_plan.py) spreads its one frame's time
    over the machines and adds the merge on one of them."""
    machines = max(1, machines if still else min(machines, max(frames, 1)))
    boot = boot_s + (BATCH_EXTRA_S if machines > 1 else 0)
    if still and machines > 1:
        wall = boot + frames * seconds_per_frame / machines + STILL_MERGE_S
        machine_seconds = frames * seconds_per_frame + machines * boot + STILL_MERGE_S
    else:
        wall = boot + math.ceil(frames / machines) * seconds_per_frame
        machine_seconds = frames * seconds_per_frame + machines * boot
    return FleetOption(machines, wall / 60, machine_seconds / 3600 * price_per_hour)


def machines_to_finish_within(
    frames: int,
    seconds_per_frame: float,
    minutes: float,
    limit: int,
    boot_s: float = BOOT_S,
    still: bool = False,
) -> int:
    """The fewest machines (up to `limit`) that finish within `minutes`; `limit` if none do."""
    for machines in range(1, max(1, limit) + 1):
        if option(frames, seconds_per_frame, 0.0, machines, boot_s, still).minutes <= minutes:
            return machines
    return max(1, limit)


def tradeoff(
    frames: int,
    seconds_per_frame: float,
    price_per_hour: float,
    machines: int,
    still: bool = False,
    boot_s: float = BOOT_S,
) -> list[FleetOption]:
    """Time and cost for 1, N/2 and N machines (each once), for the line before launch."""
    counts = sorted({1, max(1, machines // 2), max(1, machines)})
    return [option(frames, seconds_per_frame, price_per_hour, n, boot_s, still=still) for n in counts]


def tradeoff_text(options: list[FleetOption]) -> str:
    """'1 machine: 4 h 10 min, $1.52 · 4: 1 h 8 min, $1.60 · ...' for the panel."""
    parts = []
    for item in options:
        hours, minutes = divmod(round(item.minutes), 60)
        time_text = f"{hours} h {minutes} min" if hours else f"{minutes} min"
        name = "1 machine" if item.machines == 1 else f"{item.machines}"
        parts.append(f"{name}: {time_text}, ${item.cost:.2f}")
    return " \u00b7 ".join(parts)
