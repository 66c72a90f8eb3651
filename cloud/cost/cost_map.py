"""The cost map: which frames of a shot take longest, known before its first job starts.

With many machines, a shot's makespan is set by its slowest frames: handed out last, one of them
keeps a machine busy while the others idle. Frame times measured by the machines order a
resubmit (cloud/job/frame_history.py), but a first submission knows nothing per frame. The cost
map renders some of the frames on the artist's computer, very small and short, in a background
Blender (addon/cost_map_render.py), while the scene is packed and uploaded; the relative times
order the job's frames, longest first (`JobRequest.frame_seconds`: weights are enough).

The map is a hint with a deadline: whatever it has measured when the job is ready to launch is
used (frames between two measured ones are interpolated), and a map that failed or measured
nothing leaves the job in its own order. Its output is read as untrusted text: a line that is
not one of the planned frames with a finite time is dropped.
"""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

MARK = "CLOUDRENDER_COSTMAP "
MAX_MAP_FRAMES = 24  # frames rendered for the map at most; the others are interpolated
MAP_LONG_SIDE = 128  # pixels on the frame's long side: shading and geometry costs, little else
MAP_SAMPLES = 16
BUDGET_S = 30.0  # the longest a launch waits for the map, counted from its start


def frames_to_map(frames: Sequence[int], most: int = MAX_MAP_FRAMES) -> list[int]:
    """Up to `most` of the job's frames, evenly spread, in the order to render them: the ends
    and then ever finer halvings, so a map cut short by its deadline still spans the shot."""
    ordered = sorted(set(frames))
    if len(ordered) > most:
        step = (len(ordered) - 1) / (most - 1)
        ordered = sorted({ordered[round(i * step)] for i in range(most)})
    chosen: list[int] = []
    seen: set[int] = set()
    spans = [(0, len(ordered) - 1)]
    for index in (0, len(ordered) - 1):
        if ordered and index not in seen:
            seen.add(index)
            chosen.append(ordered[index])
    while spans:
        next_spans = []
        for low, high in spans:
            if high - low < 2:
                continue
            middle = (low + high) // 2
            if middle not in seen:
                seen.add(middle)
                chosen.append(ordered[middle])
            next_spans += [(low, middle), (middle, high)]
        spans = next_spans
    return chosen


def frame_weights(measured: dict[int, float], frames: Sequence[int]) -> dict[int, float]:
    """Each frame's expected time from the measured ones: a measured frame's own, a frame between
    two measured ones by straight-line interpolation, one beyond them the nearest's. {} when
    nothing was measured."""
    if not measured:
        return {}
    known = sorted(measured.items())
    weights: dict[int, float] = {}
    for frame in frames:
        if frame in measured:
            weights[frame] = measured[frame]
        elif frame <= known[0][0]:
            weights[frame] = known[0][1]
        elif frame >= known[-1][0]:
            weights[frame] = known[-1][1]
        else:
            after = next(i for i, (f, _) in enumerate(known) if f > frame)
            (f0, s0), (f1, s1) = known[after - 1], known[after]
            weights[frame] = s0 + (s1 - s0) * (frame - f0) / (f1 - f0)
    return weights


@dataclass
class CostMapResult:
    """What the map gave: the measured frames and the weights of every frame of the job."""

    measured: dict[int, float] = field(default_factory=dict)
    weights: dict[int, float] = field(default_factory=dict)
    planned: int = 0
    error: str = ""

    def said(self) -> str:
        """One line for the job log."""
        if not self.weights:
            reason = self.error or "no frame was measured in time"
            return f"No cost map ({reason}): frames go out in the shot's order."
        low, high = min(self.measured.values()), max(self.measured.values())
        spread = high / low if low > 0 else 1.0
        return (
            f"Cost map: {len(self.measured)} of {self.planned} frames rendered small here; the slowest "
            f"{spread:.1f}x the fastest. The longest frames start first."
        )


class CostMap:
    """One map being rendered: a background Blender whose lines are read as they come.

    `command`: how to start Blender on the job's copy up to the script's `--` (the add-on knows
    its own Blender); the plan's JSON is appended. Start from the job's thread, read with
    `result`, and `stop` however the job went (it kills a Blender still rendering)."""

    def __init__(
        self,
        command: Sequence[str],
        frames: Sequence[int],
        budget_s: float = BUDGET_S,
        long_side: int = MAP_LONG_SIDE,
        samples: int = MAP_SAMPLES,
    ) -> None:
        self.frames = list(frames)
        self.planned = frames_to_map(frames)
        self.deadline = time.monotonic() + budget_s
        self.measured: dict[int, float] = {}
        self.error = ""
        self.finished = threading.Event()
        self._lock = threading.Lock()
        plan = json.dumps({"frames": self.planned, "long_side": long_side, "samples": samples})
        try:
            self.process: subprocess.Popen[str] | None = subprocess.Popen(
                [*command, plan],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
                text=True,
            )
        except OSError as error:
            self.process = None
            self.error = f"Blender did not start: {error}"
            self.finished.set()
            return
        self._reader = threading.Thread(target=self._read, name="cost-map", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        allowed = set(self.planned)
        try:
            for line in self.process.stdout:
                if not line.startswith(MARK):
                    continue
                data = parse_line(line[len(MARK) :])
                if data is None:
                    continue
                if "error" in data:
                    self.error = str(data["error"])[:200]
                    break
                if data.get("done") is True:
                    break
                frame, seconds = data.get("frame"), data.get("seconds")
                if isinstance(frame, int) and frame in allowed and is_time(seconds):
                    with self._lock:
                        self.measured[frame] = float(seconds)  # type: ignore[arg-type]
        finally:
            if not self.measured and not self.error:
                try:  # its output ended: Blender is ending, or has
                    code: int | None = self.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    code = None
                self.error = "the local render failed" if code not in (None, 0) else ""
            self.finished.set()

    def result(self) -> CostMapResult:
        """What was measured by the deadline (waiting until then, or until the map ends)."""
        self.finished.wait(max(0.0, self.deadline - time.monotonic()))
        with self._lock:
            measured = dict(self.measured)
        return CostMapResult(measured, frame_weights(measured, self.frames), len(self.planned), self.error)

    def stop(self) -> None:
        """End the Blender if it still renders (a job cancelled, failed or launched without it)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(10)  # at the end of its output now
        if self.process.stdout is not None:
            self.process.stdout.close()


def parse_line(text: str) -> dict[str, object] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def is_time(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 < value < 86400
    )
