"""How one still is cut into sample subsets for N machines (../shared/recipes/still-on-n-machines.md).

Cycles renders a subset of a frame's samples exactly: with the same seed, machine k renders
samples [offset, offset + length) of the total, and the average of the parts weighted by their
lengths equals one machine's render of every sample. On spot, the still is cut into more
parts than machines, so AWS taking one machine back costs one part, not a machine's share.
"""

from __future__ import annotations

from dataclasses import dataclass

PARTS_PER_MACHINE_SPOT = 4  # an interruption costs a quarter of a machine's share
MIN_PART_SAMPLES = 16  # below this a part's fixed costs (load, sync, write) outweigh its samples


@dataclass(frozen=True)
class Part:
    """Samples [offset, offset + length) of the frame's total."""

    index: int
    offset: int
    length: int


def split_samples(total: int, machines: int, spot: bool) -> list[Part]:
    """Cut `total` samples into parts as even as they can be (lengths differ by one at most):
    one per machine on demand, PARTS_PER_MACHINE_SPOT per machine on spot, never more parts
    than MIN_PART_SAMPLES allows (and at least one)."""
    if total < 1:
        raise ValueError("a still needs at least one sample")
    wanted = max(1, machines) * (PARTS_PER_MACHINE_SPOT if spot else 1)
    count = max(1, min(wanted, total // MIN_PART_SAMPLES or 1, total))
    base, extra = divmod(total, count)
    parts, offset = [], 0
    for index in range(count):
        length = base + (1 if index < extra else 0)
        parts.append(Part(index, offset, length))
        offset += length
    return parts
