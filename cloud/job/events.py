"""A thread-safe event queue between background work and Blender's main thread.

Worker threads never touch bpy: they post small events here, and the add-on drains them
from a `bpy.app.timers` callback with a time budget, so the UI never waits on the network.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """One update for the UI: `kind` says which, `data` carries plain values only."""

    job_id: str
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


class EventQueue:
    """Many producers (threads), one consumer (the timer on the main thread)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Event] = queue.SimpleQueue()

    def post(self, job_id: str, kind: str, **data: Any) -> None:
        self._queue.put(Event(job_id, kind, data))

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
