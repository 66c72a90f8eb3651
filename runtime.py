"""The add-on's main-thread pump: a bpy.app.timers callback that applies queued events.

Timers do not fire in the bpy module, so tests call `drain_events()` themselves.
"""

from __future__ import annotations

from collections.abc import Callable

import bpy

from .cloud.events import Event, EventQueue

DRAIN_INTERVAL_S = 0.1

events = EventQueue()
_listeners: list[Callable[[Event], None]] = []


def add_listener(listener: Callable[[Event], None]) -> None:
    """Register a main-thread function called for every drained event."""
    if listener not in _listeners:
        _listeners.append(listener)


def remove_listener(listener: Callable[[Event], None]) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def drain_events() -> float:
    """Apply waiting events within a small time budget; returns the next timer interval."""
    for event in events.drain():
        for listener in list(_listeners):
            listener(event)
    return DRAIN_INTERVAL_S


def register() -> None:
    if not bpy.app.timers.is_registered(drain_events):
        bpy.app.timers.register(drain_events, first_interval=DRAIN_INTERVAL_S, persistent=True)


def unregister() -> None:
    if bpy.app.timers.is_registered(drain_events):
        bpy.app.timers.unregister(drain_events)
    _listeners.clear()
