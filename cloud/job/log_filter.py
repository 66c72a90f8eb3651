"""The job log for people: stage lines, errors and finished frames, without the renderer's noise.

The raw log (Cycles progress, JSON status, tracebacks in full) stays one click away in the
full-log text; the panel shows only what an artist acts on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

OWN_PREFIX = "[cloud-render] "
_KEEP = re.compile(
    r"error|fail|refus|warning|cannot|could not|stopp|cancel|interrupt|"
    r"saved|frame \d+ (?:done|saved|uploaded|finished)|finished|done",
    re.IGNORECASE,
)
_NOISE = re.compile(r"^\s*[{\[\"]|Fra:\d+|\| Sample|Synchroniz|Mem:|Peak:|^\s*File \"|^\s+")


def for_people(lines: Iterable[str], keep: int = 6) -> list[str]:
    """The last `keep` lines an artist needs: the add-on's own lines, errors, finished frames."""
    chosen = []
    for line in lines:
        if line.startswith(OWN_PREFIX):
            chosen.append(line[len(OWN_PREFIX) :])
        elif _KEEP.search(line) and not _NOISE.search(line):
            chosen.append(line.strip())
    return chosen[-keep:] if keep else chosen
