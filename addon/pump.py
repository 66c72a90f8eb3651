"""The add-on's main-thread pump and its long-lived objects.

A `bpy.app.timers` callback drains the event queue that background threads fill; timers do not
fire in the bpy module, so tests call `drain_events()` themselves. The job manager is created
on first use, so enabling the add-on makes no request; a worker thread imports the job side
meanwhile, so that the first Render in Cloud does not compile it on the main thread.

Blender unregisters a timer whose function raises, which would end every later UI update of
the session: an event whose handling fails is reported on the console and in the job's log,
and the pump goes on.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bpy

from ..cloud.errors import CloudError
from ..cloud.job.events import Event, EventQueue, JobEvent, LogLines, MainThreadCall
from .ids import ADDON_ID

DRAIN_INTERVAL_S = 0.1

events = EventQueue()
_listeners: list[Callable[[Event], None]] = []
_manager: Any = None
failures: list[str] = []  # what went wrong applying events, newest last (kept short)
MAX_FAILURES_KEPT = 50


def add_listener(listener: Callable[[Event], None]) -> None:
    """Register a main-thread function called for every drained event."""
    if listener not in _listeners:
        _listeners.append(listener)


def remove_listener(listener: Callable[[Event], None]) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def drain_events(budget_s: float = 0.005) -> float:
    """Apply waiting events until the time budget is spent (applying counts, not only taking
    them off the queue); the rest waits for the next call. Returns the next timer interval."""
    deadline = time.perf_counter() + budget_s
    while True:
        taken = events.drain(budget_s=budget_s, limit=1)
        if not taken:
            break
        _apply(taken[0])
        if time.perf_counter() >= deadline:
            return 0.0  # more may be waiting: come back at once, after Blender redraws
    return DRAIN_INTERVAL_S


def _apply(event: Event) -> None:
    """Hand one event to its callback or to every listener; a failure is kept, never raised."""
    if isinstance(event, MainThreadCall):
        _guarded(lambda: event.callback(event.result, event.error), event)
        return
    for listener in list(_listeners):
        _guarded(lambda listener=listener: listener(event), event)  # type: ignore[misc]


def _guarded(call: Callable[[], None], event: Event) -> None:
    try:
        call()
    except Exception as error:
        text = f"Cloud Render could not apply {type(event).__name__}: {type(error).__name__}: {error}"
        print(text + "\n" + traceback.format_exc(limit=3))
        failures.append(text)
        del failures[:-MAX_FAILURES_KEPT]
        if isinstance(event, JobEvent) and not isinstance(event, LogLines):
            # Said in the job's own log too, through the same pump (a LogLines failure is not
            # re-posted, so one bad listener cannot loop).
            events.post(LogLines(event.job_id, (f"[cloud-render] {text}",)))


def in_background(
    work: Callable[[], Any], done: Callable[[Any, CloudError | None], None]
) -> threading.Thread:
    """Run `work` off the main thread; `done(result, error)` runs later on the main thread."""

    def run() -> None:
        try:
            events.post(MainThreadCall(done, work(), None))
        except CloudError as error:
            events.post(MainThreadCall(done, None, error))
        except Exception as error:  # unknown: keep the detail, say something useful
            wrapped = CloudError(
                "Something unexpected went wrong.",
                "Check your network and try again.",
                detail=f"{type(error).__name__}: {error}",
            )
            events.post(MainThreadCall(done, None, wrapped))

    thread = threading.Thread(target=run, name="cloud-render-call", daemon=True)
    thread.start()
    return thread


def call_soon(callback: Callable[[Any], None], value: Any) -> None:
    """From any thread: run `callback(value)` on the main thread at the next drain."""
    events.post(MainThreadCall(lambda result, _error: callback(result), value, None))


def user_dir(name: str) -> Path:
    """A folder of this extension's user directory (survives updates, never in a .blend)."""
    return Path(bpy.utils.extension_path_user(ADDON_ID, path=name, create=True))


def _import_job_side() -> None:
    """What the first Render in Cloud needs, imported ahead: the job manager and the preflight
    (the packer, BAT, boto3 with them) take 0.2-0.5 s of compiling and class building, a second
    on a busy machine, which the press would otherwise spend on the main thread."""
    from ..cloud.job import manager as _job_manager  # noqa: F401
    from ..cloud.pack import preflight as _preflight  # noqa: F401


_importing: threading.Thread | None = None


def job_side_imported() -> None:
    """Before the main thread imports the job side itself: let the worker that imports it
    ahead finish (no network, and no slower than importing here), never two at once."""
    if _importing is not None and _importing.is_alive():
        _importing.join()


def manager() -> Any:
    """The session's JobManager, created on first use."""
    global _manager
    job_side_imported()
    if _manager is None:
        from ..cloud.job.manager import JobManager
        from . import account

        _manager = JobManager(user_dir("jobs"), events, account.aws_settings)
    return _manager


def register() -> None:
    global _importing
    if not bpy.app.timers.is_registered(drain_events):
        bpy.app.timers.register(drain_events, first_interval=DRAIN_INTERVAL_S, persistent=True)
    if _importing is None:
        _importing = threading.Thread(target=_import_job_side, name="cloud-render-imports", daemon=True)
        _importing.start()


def unregister() -> None:
    global _manager
    if bpy.app.timers.is_registered(drain_events):
        bpy.app.timers.unregister(drain_events)
    _listeners.clear()
    if _manager is not None:
        _manager.stop_all()
        _manager = None


def manager_exists() -> bool:
    return _manager is not None
