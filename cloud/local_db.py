"""One SQLite connection per thread to a small file of this computer's own (the hash cache in
pack/, the bucket record in aws/), opened on first use with its schema.

Both files only save work: a file that cannot be opened or made gives None, and the caller does
the work it would have saved (hashing, HEADs), never fails the submit. SQLite does the locking
between threads and between Blenders; a connection is never shared across threads. Like the key
files, each is readable by this user only (0600: it names the artist's files and buckets), and
SQLite gives its journal the database's mode.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path


class LocalDb:
    """A per-thread connection to `path` (None: no file, every call gives None)."""

    def __init__(self, path: Path | None, schema: Sequence[str]) -> None:
        self.path = Path(path) if path is not None else None
        self.schema = tuple(schema)
        self._local = threading.local()

    def connection(self) -> sqlite3.Connection | None:
        if self.path is None:
            return None
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                _private(self.path)
                db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
                for statement in self.schema:
                    db.execute(statement)
            except (OSError, sqlite3.Error):
                return None
            self._local.db = db
        return db


def _private(path: Path) -> None:
    """Make `path` 0600 before SQLite opens it: created so from its first byte, and a file an
    earlier version made world-readable is narrowed."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)
