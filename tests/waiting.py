"""Waiting on a condition, never for a fixed time: the suite must pass with every core busy."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], deadline_s: float) -> T:
    """Poll `probe` until it returns something truthy and return that; fail saying `what` if it
    never does within `deadline_s`."""
    deadline = time.monotonic() + deadline_s
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"waited {deadline_s:.0f} s for {what}")
        time.sleep(0.1)
