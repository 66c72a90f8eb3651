"""Frame lists as artists type them: `1-10,15,20-30x2`, and render orders."""

from __future__ import annotations

import re

from ..errors import CloudError

MAX_FRAMES = 100_000
_PART = re.compile(r"^\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*(?:[x:]\s*(\d+)\s*)?)?$")


def parse_frame_list(text: str) -> list[int]:
    """Parse `1-10,15,20-30x2` into sorted unique frames; a bad part names itself in the error."""
    frames: set[int] = set()
    if not text.strip():
        raise CloudError(
            "The frame list is empty.", "Type frames like 1-10,15,20-30x2, or untick Custom Frames."
        )
    for part in text.split(","):
        match = _PART.match(part)
        if not match:
            raise CloudError(
                f"'{part.strip()}' in the frame list is not a frame or a range.",
                "Use frames and ranges separated by commas, like 1-10,15,20-30x2 (x2: every 2nd frame).",
                code="BadFrameList",
            )
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) is not None else start
        step = int(match.group(3)) if match.group(3) else 1
        if end < start:
            raise CloudError(
                f"The range '{part.strip()}' runs backwards.",
                f"Write it as {end}-{start}.",
                code="BadFrameList",
            )
        if step < 1:
            raise CloudError(
                "A frame step must be 1 or more.", "Write ranges like 20-30x2.", code="BadFrameList"
            )
        if (end - start) // step + 1 + len(frames) > MAX_FRAMES:
            raise CloudError(
                f"The frame list has more than {MAX_FRAMES} frames.",
                "Split the render into several jobs.",
                code="BadFrameList",
            )
        frames.update(range(start, end + 1, step))
    return sorted(frames)


def scene_range(start: int, end: int, step: int = 1) -> list[int]:
    if end < start:
        raise CloudError(
            "The scene's frame range is empty.", "Set End at or after Start in Output properties."
        )
    return list(range(start, end + 1, max(1, step)))


def preview_first(frames: list[int]) -> list[int]:
    """Every 8th frame, then every 4th, 2nd, then the rest: the whole shot coarsely, early."""
    ordered: list[int] = []
    seen: set[int] = set()
    for stride in (8, 4, 2, 1):
        for index in range(0, len(frames), stride):
            frame = frames[index]
            if frame not in seen:
                seen.add(frame)
                ordered.append(frame)
    return ordered
