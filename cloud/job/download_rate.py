"""How fast frames come down: bytes over the time spent downloading them, lately.

Each frame's download is a sample (its start and end on a monotonic clock, its bytes). Frames
come down a few at a time, side by side, so the time is the union of their intervals (four
frames fetched at once in 2 s took 2 s, not 8), and the time between frames, when nothing was
being downloaded, counts for nothing. The rate is over the samples that ended within WINDOW_S
of the latest one: it says how fast the link is now, and it holds between frames instead of
falling to zero while the machine renders the next one.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

WINDOW_S = 10.0  # the rate is over the downloads that ended in the last ~10 s of downloading
MAX_SAMPLES = 256  # a window of many tiny frames keeps its newest ones


@dataclass(frozen=True)
class Sample:
    start: float
    end: float
    size: int


class DownloadRate:
    """Frames downloaded, their bytes, and the recent rate (bytes per second)."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self.frames = 0
        self.total_bytes = 0
        self._samples: deque[Sample] = deque(maxlen=MAX_SAMPLES)

    def add(self, start: float, end: float, size: int) -> None:
        """One frame downloaded between `start` and `end` (monotonic seconds), `size` bytes."""
        size = max(0, int(size))
        self.frames += 1
        self.total_bytes += size
        self._samples.append(Sample(start, max(start, end), size))

    def rate(self) -> float:
        """Bytes per second over the recent downloads; 0.0 before any (or when none took time)."""
        if not self._samples:
            return 0.0
        latest = max(sample.end for sample in self._samples)
        recent = [s for s in self._samples if s.end >= latest - self.window_s]
        seconds = busy_seconds([(s.start, s.end) for s in recent])
        if seconds <= 0.0:
            return 0.0
        return sum(s.size for s in recent) / seconds


def busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of `intervals`: overlapping downloads count their time once."""
    total = 0.0
    run_start = run_end = None
    for start, end in sorted(intervals):
        if run_end is None or start > run_end:
            if run_end is not None and run_start is not None:
                total += run_end - run_start
            run_start, run_end = start, end
        else:
            run_end = max(run_end, end)
    if run_end is not None and run_start is not None:
        total += run_end - run_start
    return total
