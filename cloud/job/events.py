"""Typed events from the job threads to Blender's main thread, and the queue that carries them.

Worker threads never touch bpy: they post one small frozen dataclass per update, and the
add-on drains them from a `bpy.app.timers` callback with a time budget, so the UI never waits
on the network. One class per kind means the main thread dispatches on the type, and a field
the machine could have filled is already validated (`cloud.machine.contract`) by the time it
is put in an event.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import CloudError, ErrorCode


@dataclass(frozen=True)
class JobEvent:
    """Something about one job; every kind below names the job it belongs to."""

    job_id: str


@dataclass(frozen=True)
class LogLines(JobEvent):
    """Lines for the job's log: the machine's render log or the add-on's own notes."""

    lines: tuple[str, ...]


@dataclass(frozen=True)
class StageChanged(JobEvent):
    """The job moved to another stage (Packing, Uploading, Rendering, ...)."""

    stage: str
    message: str = ""
    action: str = ""


@dataclass(frozen=True)
class JobEnded(JobEvent):
    """The job reached a final stage (Done, Failed, Cancelled, Interrupted, Capped)."""

    stage: str
    message: str
    action: str
    frames_done: int
    frames_total: int
    code: ErrorCode = (
        ErrorCode.NONE
    )  # the CloudError code when it failed ("quota_zero", ...), for the panel's button
    # What the job cost, as its record holds it: a job that ended while Blender was closed sends
    # no cost update on re-attach (its machines are gone), and the panel read "$0.00".
    cost_so_far: float = 0.0


@dataclass(frozen=True)
class Progress(JobEvent):
    """How far the current step (pack, upload) is, 0..1, with a short text."""

    fraction: float
    text: str = ""


@dataclass(frozen=True)
class MachineStatus(JobEvent):
    """What the render machine last said about itself (validated by the contract)."""

    frame: int | None
    sample: int | None
    samples_total: int | None
    device: str
    seconds_per_frame: float
    frames_total: int


@dataclass(frozen=True)
class MachinesUpdate(JobEvent):
    """Many machines: one line per machine (state, frame, s/frame, spot or on-demand) and the
    time left for the whole job at their measured pace (0 until a frame was timed)."""

    rows: tuple[str, ...]
    eta_s: float


@dataclass(frozen=True)
class CostUpdate(JobEvent):
    """Cost so far, and the projection for the whole job (0 until a frame was timed)."""

    cost_so_far: float
    projected: float


@dataclass(frozen=True)
class FrameArrived(JobEvent):
    """A finished frame is on the artist's disk; with what this session downloaded of the job's
    frames so far (a frame already here from before a re-attach is not downloaded again) and the
    recent download rate in bytes per second (cloud/job/download_rate.py; 0: not measured)."""

    frame: int
    path: str
    frames_done: int
    frames_total: int
    frames_downloaded: int = 0
    bytes_downloaded: int = 0
    download_rate: float = 0.0


@dataclass(frozen=True)
class QuoteReady(JobEvent):
    """Quote first: the scouts' measured price, and whether the job fits its cap."""

    seconds_per_frame: float
    cost_per_frame: float
    projected_total: float
    under_cap: bool


@dataclass(frozen=True)
class MainThreadCall:
    """Run `callback(result, error)` on the main thread (background work that finished)."""

    callback: Callable[[Any, CloudError | None], None]
    result: Any = None
    error: CloudError | None = None


Event = JobEvent | MainThreadCall


class EventQueue:
    """Many producers (threads), one consumer (the timer on the main thread)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Event] = queue.SimpleQueue()

    def post(self, event: Event) -> None:
        self._queue.put(event)

    def drain(self, budget_s: float = 0.005, limit: int = 500) -> list[Event]:
        """Take what is waiting, stopping after `limit` events or `budget_s` seconds."""
        events: list[Event] = []
        deadline = time.perf_counter() + budget_s
        while len(events) < limit and time.perf_counter() < deadline:
            try:
                events.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return events

    def empty(self) -> bool:
        return self._queue.empty()
