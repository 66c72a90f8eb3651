"""Frame lists as artists type them: `1-10,15,20-30x2`, and render orders."""

from __future__ import annotations

import re

from ..errors import CloudError, ErrorCode

MAX_FRAMES = 100_000
# Blender's frame numbers (MINAFRAME / MAXFRAME, the range of Scene.frame_current).
MIN_FRAME = -1_048_574
MAX_FRAME = 1_048_574
# Frames a list may name in all, repeats included: overlapping parts count once towards
# MAX_FRAMES, but a list that repeats a huge range over and over is refused before it is expanded.
MAX_LISTED = 10 * MAX_FRAMES
_SHOWN = 40  # characters of a bad part quoted back to the artist
# ASCII digits only: int() would take '١٢' (Arabic-Indic digits), Blender's fields would not.
_NUMBER = r"(-?[0-9]+)"
_PART = re.compile(rf"^\s*{_NUMBER}\s*(?:-\s*{_NUMBER}\s*(?:[xX:]\s*([0-9]+)\s*)?)?$")
_HOW = "Use frames and ranges separated by commas, like 1-10,15,20-30x2 (x2: every 2nd frame)."


def _bad(message: str, action: str = _HOW) -> CloudError:
    return CloudError(message, action, code=ErrorCode.BAD_FRAME_LIST)


def _quote(part: str) -> str:
    part = part.strip()
    return part if len(part) <= _SHOWN else part[: _SHOWN - 1] + "…"


def _frame(digits: str, part: str) -> int:
    """One frame number of `part`, inside Blender's range (checked before a huge int is made)."""
    sign, magnitude = ("-", digits[1:]) if digits.startswith("-") else ("", digits)
    magnitude = magnitude.lstrip("0") or "0"
    value = int(sign + magnitude) if len(magnitude) <= len(str(MAX_FRAME)) else None
    if value is None or not MIN_FRAME <= value <= MAX_FRAME:
        raise _bad(
            f"'{_quote(part)}' in the frame list is outside Blender's frames ({MIN_FRAME} to {MAX_FRAME}).",
            f"Use frame numbers from {MIN_FRAME} to {MAX_FRAME}.",
        )
    return value


def parse_frame_list(text: str) -> list[int]:
    """Parse `1-10,15,20-30x2` into sorted unique frames; a bad part names itself in the error.

    Never raises anything but CloudError (with a message and an action), whatever is typed.
    """
    frames: set[int] = set()
    listed = 0
    parts = [part for part in str(text).split(",") if part.strip()]
    if not parts:
        raise CloudError(
            "The frame list is empty.",
            "Type frames like 1-10,15,20-30x2, or untick Custom Frames.",
            code=ErrorCode.BAD_FRAME_LIST,
        )
    for part in parts:
        match = _PART.match(part)
        if not match:
            raise _bad(f"'{_quote(part)}' in the frame list is not a frame or a range.")
        start = _frame(match.group(1), part)
        end = _frame(match.group(2), part) if match.group(2) is not None else start
        step_digits = (match.group(3) or "1").lstrip("0") or "0"
        # A step longer than Blender's whole range picks the first frame only.
        step = int(step_digits) if len(step_digits) <= len(str(MAX_FRAME)) + 1 else MAX_FRAME * 2
        if end < start:
            raise _bad(f"The range '{_quote(part)}' runs backwards.", f"Write it as {end}-{start}.")
        if step < 1:
            raise _bad("A frame step must be 1 or more.", "Write ranges like 20-30x2.")
        count = (end - start) // step + 1
        listed += count
        if count > MAX_FRAMES or listed > MAX_LISTED:
            raise _bad(
                f"The frame list has more than {MAX_FRAMES} frames.", "Split the render into several jobs."
            )
        frames.update(range(start, end + 1, step))
        if len(frames) > MAX_FRAMES:
            raise _bad(
                f"The frame list has more than {MAX_FRAMES} frames.", "Split the render into several jobs."
            )
    return sorted(frames)


def scene_range(start: int, end: int, step: int = 1) -> list[int]:
    if end < start:
        raise CloudError(
            "The scene's frame range is empty.", "Set End at or after Start in Output properties."
        )
    return list(range(start, end + 1, max(1, step)))


def ranges_text(frames: list[int]) -> str:
    """ "1-6, 9, 11-12": frames as an artist writes them (sorted, runs joined)."""
    runs: list[list[int]] = []
    for frame in sorted(set(frames)):
        if runs and frame == runs[-1][1] + 1:
            runs[-1][1] = frame
        else:
            runs.append([frame, frame])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def kept_text(frames: list[int], folder: str) -> str:
    """What a cancel kept: "Frames 1-6 kept in /renders/job/." or "No frame was rendered." """
    if not frames:
        return "No frame was rendered."
    word = "Frame" if len(frames) == 1 else "Frames"
    return f"{word} {ranges_text(frames)} kept in {folder}."


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
