"""How one still is cut into sample subsets for N machines (../shared/recipes/still-on-n-machines.md).

Cycles renders a subset of a frame's samples exactly: with the same seed, machine k renders
samples [offset, offset + length) of the total, and the average of the parts weighted by their
lengths equals one machine's render of every sample. On spot, the still is cut into more
parts than machines, so AWS taking one machine back costs one part, not a machine's share;
but each part has costs of its own whatever its samples (the render's scene sync, a multilayer
EXR of every pass written, uploaded and read again by the merge), so where the frame's expected
time is known, a machine's share is cut only into parts of MIN_SPOT_PART_SECONDS or more.
"""

from __future__ import annotations

from dataclasses import dataclass

PARTS_PER_MACHINE_SPOT = 4  # an interruption costs a quarter of a machine's share
MIN_PART_SAMPLES = 16  # below this a part's fixed costs (load, sync, write) outweigh its samples
# A spot part expected to be shorter than this is not cut further: its fixed costs (seconds: the
# scene sync, and a 1080p part's EXR read by the merge takes about one) would outweigh what an
# interruption saves (a lost part of a minute is a minute).
MIN_SPOT_PART_SECONDS = 60.0
# The merging machine waits for a part that has not landed this long (plus twice a part's time
# there) before it renders that part itself: about what a Batch retry of a lost machine takes to
# boot and render it, so a retry that comes is not raced, and one that never comes costs this
# much idle time on one machine (cloud/machine/still_gather.py).
TAKEOVER_AFTER_S = 120.0


@dataclass(frozen=True)
class Part:
    """Samples [offset, offset + length) of the frame's total."""

    index: int
    offset: int
    length: int


def spot_parts_per_machine(total: int, machines: int, frame_seconds: float | None) -> int:
    """How many parts each machine's share is cut into on spot: PARTS_PER_MACHINE_SPOT, fewer
    (down to one) where the frame's expected seconds on one machine (an estimate, or an earlier
    job of the scene) say a part would be shorter than MIN_SPOT_PART_SECONDS. Unknown: the full
    count, and only the samples floor (MIN_PART_SAMPLES) limits the parts."""
    if not frame_seconds or frame_seconds <= 0 or total < 1:
        return PARTS_PER_MACHINE_SPOT
    share = frame_seconds / max(1, machines)
    return max(1, min(PARTS_PER_MACHINE_SPOT, int(share // MIN_SPOT_PART_SECONDS)))


def split_samples(total: int, machines: int, spot: bool, frame_seconds: float | None = None) -> list[Part]:
    """Cut `total` samples into parts as even as they can be (lengths differ by one at most):
    one per machine on demand, spot_parts_per_machine per machine on spot, never more parts
    than MIN_PART_SAMPLES allows (and at least one). `frame_seconds`: the frame's expected time
    on one machine, where known."""
    if total < 1:
        raise ValueError("a still needs at least one sample")
    per_machine = spot_parts_per_machine(total, machines, frame_seconds) if spot else 1
    wanted = max(1, machines) * per_machine
    count = max(1, min(wanted, total // MIN_PART_SAMPLES or 1, total))
    base, extra = divmod(total, count)
    parts, offset = [], 0
    for index in range(count):
        length = base + (1 if index < extra else 0)
        parts.append(Part(index, offset, length))
        offset += length
    return parts


def after_merge(denoise: bool, composite: bool) -> tuple[str, str]:
    """What happens to a split still once its parts are merged, as the confirmation, the log and
    the panel say it: ("denoised and composited once", "denoising and compositing once"), or
    less where the scene denoises or composites nothing (the machine does only what it does)."""
    done = [word for word, on in (("denoised", denoise), ("composited", composite)) if on]
    doing = [word for word, on in (("denoising", denoise), ("compositing", composite)) if on]
    if not done:
        return "", ""
    return " and ".join(done) + " once", " and ".join(doing) + " once"
