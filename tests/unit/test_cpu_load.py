"""The CPU load behind `make test STRESS=1` and the benchmarks is bounded: it ends when stopped."""

from __future__ import annotations

import time
from pathlib import Path

from dev import cpu_load


def test_the_load_keeps_workers_busy_and_ends_with_stop():
    proc = cpu_load.start(workers=1, seconds=60)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _children(proc.pid):
            time.sleep(0.05)
        workers = _children(proc.pid)
        assert workers, "no worker started"
    finally:
        cpu_load.stop(proc)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False
