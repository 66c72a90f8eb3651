"""The job log for people: stage lines, errors and finished frames, without the renderer's noise.

The raw log (Cycles progress, the machine's JSON events, tracebacks in full) stays one click
away in the full-log text; the panel shows the lines an artist acts on: the add-on's and the
machine's own `[cloud-render ...]` lines (stages, each frame uploaded, the end) and errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_OWN = re.compile(r"^\[cloud-render(?: (\d\d:\d\d:\d\d))?\] ")  # the add-on's; the machine's, timed
_BLENDER_PREFIX = re.compile(r"^\d\d:\d\d\.\d+\s+\S+\s+\| ")  # Blender 4.4+ log lines
_ERROR = re.compile(r"error|fail|refus|cannot|could not|out of memory|killed", re.IGNORECASE)
_NOISE = re.compile(r"^\s*[{\[\"]|^CLOUDRENDER |Fra:\s*\d+|\| Sample|^\s*File \"|^\s")
# A line longer than this (a machine listing thousands of frame numbers) fills the panel;
# the panel shows its start, the full log all of it.
PANEL_LINE_CHARS = 240


def for_people(lines: Iterable[str], keep: int = 6) -> list[str]:
    """The last `keep` lines an artist needs (all of them with keep=0)."""
    chosen = []
    for line in lines:
        own = _OWN.match(line)
        if own:
            rest = line[own.end() :]
            chosen.append(f"{own.group(1)} {rest}" if own.group(1) else rest)
            continue
        line = _BLENDER_PREFIX.sub("", line)
        if _ERROR.search(line) and not _NOISE.search(line):
            chosen.append(line.strip())
    chosen = [
        line if len(line) <= PANEL_LINE_CHARS else line[: PANEL_LINE_CHARS - 1] + "\u2026" for line in chosen
    ]
    return chosen[-keep:] if keep else chosen
