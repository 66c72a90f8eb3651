"""Processes found by a mark in their environment, and ended: what a stand-in machine or a test
run started must not outlive it.

A machine's processes can leave its process group (the supervisor starts Blender in a session
of its own) and a dead-man timer outlives the shell that started it, re-parented to init. What
none of them drops is the environment they inherited, so each stand-in machine, and each test
run, sets one variable that every process it starts carries; `/proc/<pid>/environ` finds them
however they were started. Linux only (the simulators are); elsewhere nothing is found.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

RUN_MARK = "CLOUD_RENDER_TEST_RUN"  # one test run (one pytest process): tests/conftest.py
MACHINE_MARK = "CLOUD_RENDER_STANDIN_MACHINE"  # one stand-in machine: its folder


@dataclass(frozen=True)
class Found:
    pid: int
    command: str

    def __str__(self) -> str:
        return f"{self.pid} ({self.command})"


def inherited() -> dict[str, str]:
    """The run's mark, for a stand-in that builds its machines' environment from scratch."""
    value = os.environ.get(RUN_MARK)
    return {RUN_MARK: value} if value else {}


def marked(name: str, value: str) -> list[Found]:
    """Live processes (not this one, not zombies) whose environment holds `name=value`."""
    wanted = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone, or not ours to read
            continue
        if wanted in environ.split(b"\0") and command:  # a zombie has no command line left
            found.append(Found(pid, command[:200]))
    return found


def end_marked(name: str, value: str, timeout: float = 10.0) -> list[Found]:
    """SIGKILL every process marked `name=value` until none is left (or `timeout`); returns
    those that were found alive, so a caller can say who outlived what it should have."""
    first = marked(name, value)
    left = first
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        for process in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(process.pid, signal.SIGKILL)
        time.sleep(0.05)
        left = marked(name, value)
    return first


def wait_gone(name: str, value: str, timeout: float) -> list[Found]:
    """Those still marked `name=value` after `timeout` (processes that were already ending get
    that long to finish)."""
    deadline = time.monotonic() + timeout
    while True:
        left = marked(name, value)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)
