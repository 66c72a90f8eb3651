"""A bounded CPU load: keeps N cores busy, as an artist's other work (or a CI neighbour) would.

Used by `make test STRESS=1` and by bench/ui_stall.py, so that tests and figures hold on a
machine that is not idle. Bounded three ways: at most `--seconds`, only while the process that
started it lives (`--parent`), and ended with its children by `stop()`.

    python dev/cpu_load.py [--workers N] [--seconds S] [--parent PID]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_SECONDS = 30 * 60


def _burn(until: float, parent: int) -> None:
    checked = 0.0
    starter = os.getppid()
    while (now := time.monotonic()) < until:
        if now - checked > 1.0:
            checked = now
            if os.getppid() != starter or (parent and not _alive(parent)):
                return
        for _ in range(20_000):
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def run(workers: int, seconds: float, parent: int) -> None:
    """Fork the workers and wait for them.

    Plain forks, not multiprocessing: its resource tracker ignores SIGTERM and outlives `stop()`
    for a moment, which the suite's no-process-left check rightly reports."""
    until = time.monotonic() + seconds
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # the worker: burn, then leave without running the parent's exit handlers
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                _burn(until, parent)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        pids.append(pid)
    try:
        for pid in pids:
            os.waitpid(pid, 0)
    finally:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


def start(workers: int = 0, seconds: float = DEFAULT_SECONDS) -> subprocess.Popen[bytes]:
    """Start the load in another process (one busy worker per core by default); `stop()` it."""
    workers = workers or os.cpu_count() or 2
    cmd = [sys.executable, str(Path(__file__).resolve()), "--workers", str(workers)]
    cmd += ["--seconds", str(seconds), "--parent", str(os.getpid())]
    return subprocess.Popen(cmd, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End the load and its workers (they are in their own process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    parser.add_argument("--parent", type=int, default=0, help="stop when this process is gone")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # exit normally: the workers are ended too
    run(args.workers, args.seconds, args.parent)


if __name__ == "__main__":
    main()
