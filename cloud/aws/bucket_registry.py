"""Which bucket the artist uses in each region: one small JSON file shared by every Blender.

Set Up and jobs both read and write it (cloud/aws/account_setup.py, cloud/aws/bucket_setup.py),
so each change happens under a lock across processes and lands by an atomic rename.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# The one bucket registry: `<the add-on's user folder>/state/buckets.json`. Set Up is given the
# state folder, jobs the user folder (cloud/job/cloud_steps.py); both read and write this file.
STATE_FOLDER = "state"
BUCKETS_FILE = "buckets.json"
LOCK_WAIT_S = 60.0


def bucket_registry(state_folder: Path) -> BucketRegistry:
    """The registry in the add-on's state folder (see STATE_FOLDER)."""
    return BucketRegistry(Path(state_folder) / BUCKETS_FILE)


@contextlib.contextmanager
def _file_lock(path: Path, timeout_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """An exclusive lock on `path` (a lock file beside the data) across processes and threads.

    POSIX: flock on a fresh descriptor, so two threads of one Blender exclude each other too.
    Windows: msvcrt.locking on the lock file's first byte. Either is released by the OS if
    Blender dies holding it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        if os.name == "nt":
            import msvcrt

            while True:
                try:
                    msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        else:
            import fcntl

            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        try:
            yield
        finally:
            if os.name == "nt":
                import msvcrt

                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class BucketRegistry:
    """Which bucket this artist uses in each region, in a small JSON file.

    Shared by every Blender open on this computer: each change is a read-modify-write under a
    cross-process lock, written to a temporary file and renamed over the old one, so a reader
    never sees half a file and two instances adding different regions both keep theirs.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        return (
            {str(k): dict(v) for k, v in data.items() if isinstance(v, dict)}
            if isinstance(data, dict)
            else {}
        )

    def get(self, region: str) -> dict[str, Any] | None:
        return self._read().get(region)

    def buckets(self) -> dict[str, str]:
        """Bucket -> region, for every region this computer knows a bucket in."""
        return {
            str(e["bucket"]): region for region, e in self._read().items() if isinstance(e.get("bucket"), str)
        }

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the registry for a check-then-create; use `store()` inside, not `remember()`."""
        with _file_lock(self.lock_path):
            yield

    def remember(self, region: str, **entry: Any) -> None:
        with self.locked():
            self.store(region, **entry)

    def store(self, region: str, **entry: Any) -> None:
        """Write one region's entry; the caller holds `locked()`."""
        data = self._read()
        data[region] = entry
        self._write(data)

    def adopt(self, other: Path) -> None:
        """Take over the regions of an older registry file this one lacks, then remove that file."""
        other = Path(other)
        if not other.is_file() or other.resolve() == self.path.resolve():
            return
        with self.locked():
            older = BucketRegistry(other)._read()
            data = self._read()
            missing = {region: entry for region, entry in older.items() if region not in data}
            if missing:
                self._write({**data, **missing})
            other.unlink(missing_ok=True)

    def _write(self, data: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=1, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
