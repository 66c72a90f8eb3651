"""How much of what the machines wrote one poll takes on: every bound here is counted, not only sized.

Sizes alone let a machine queue 41,920 log lines in one poll (many short lines in chunks each
under the size bound), re-read a 14 MB plan.json every second, and fill the artist's disk with
10,064 objects of up to 8 GiB each for a one-frame job. So a poll reads a bounded number of log
chunks and passes on a bounded number of lines (saying how many it left out), and a job's
outputs are bounded by what its frames can weigh at their resolution.
"""

from __future__ import annotations

from ..machine import contract
from .records import JobRecord

MAX_LOG_CHUNKS_PER_POLL = 16  # chunks read in one poll (the rest wait for the next)
MAX_LOG_LINES_PER_POLL = 2000  # lines passed on to the job log in one poll
# What one pixel of a frame may weigh, all its files together: a multilayer EXR of every pass
# Cycles has, in float, uncompressed, is under 200 channels of 4 bytes; a stereo pair twice that.
MAX_BYTES_PER_PIXEL = 1024
OUTPUT_SLACK_BYTES = 1024**2  # headers, metadata, and a job's few files beside its frames


class LogBudget:
    """The log lines one poll passes on: at most `limit`, the rest counted for `left_out`."""

    def __init__(self, limit: int = MAX_LOG_LINES_PER_POLL) -> None:
        self.limit = limit
        self.left = limit
        self.dropped = 0

    def take(self, lines: list[str]) -> list[str]:
        kept = lines[: max(0, self.left)]
        self.left -= len(kept)
        self.dropped += len(lines) - len(kept)
        return kept

    def left_out(self) -> str:
        """The line for the job log when lines were left out ("" when none was)."""
        if not self.dropped:
            return ""
        return (
            f"[cloud-render] {self.dropped} lines of the machine's log left out: over the "
            f"{self.limit} one look passes on (the machine's error report keeps its last lines)."
        )


def frame_bytes(record: JobRecord) -> int:
    """The most one frame's outputs (its image and its File Output files) may weigh: its pixels
    at MAX_BYTES_PER_PIXEL, or, where the record knows no size, the contract's bound."""
    pixels = record.frame_width * record.frame_height or record.render_pixels
    if pixels <= 0:
        return contract.MAX_FRAME_BYTES
    return min(contract.MAX_FRAME_BYTES, pixels * MAX_BYTES_PER_PIXEL + OUTPUT_SLACK_BYTES)


def job_output_bytes(record: JobRecord) -> int:
    """The most all of a job's outputs together may weigh."""
    return len(record.frames) * frame_bytes(record) + OUTPUT_SLACK_BYTES
