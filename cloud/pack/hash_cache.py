"""A local cache of file hashes, so a resubmit re-reads only the files that changed.

Keyed by what the file system says of the file itself, never by its path: device, inode, size
and modification time in nanoseconds. Renaming or moving the project folder keeps all four (a
rename touches the folder, not the files in it), so a moved project still hits; a copied one
does not (new inodes) and is hashed once. Any write changes the modification time, so a file
edited in place with the same size is hashed again. The status-change time is not part of the
key: the pack links files (cloud/pack/packer.py), and a link changes it on every submit. A file
modified in the last few seconds is not cached at all: a file system with coarse timestamps
could see a second edit within the same tick (git's "racy clean" problem).

One SQLite file, shared by every Blender on this computer (SQLite does the locking); a broken or
unreadable cache only costs hashing, never a wrong hash for a changed file. A large .blend's
chunk list (cloud/pack/chunking.py) is kept under the same key and the chunking policy, so an
unchanged file is neither re-read nor re-chunked.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from ..local_db import LocalDb
from .chunking import Chunk, Chunked, ChunkPolicy, chunk_file
from .file_hash import hash_stream

RACY_S = 3.0  # files changed this recently are hashed but not cached
FILE_NAME = "hashes-v1.sqlite"  # a new key layout gets a new file

Key = tuple[int, int, int, int]


def stat_key(st: os.stat_result) -> Key:
    """What identifies one version of one file, wherever its folder is moved (same disk)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class HashCache:
    """sha256 of files by their stat key; `hash()` reads a file only when the key is unknown."""

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self.hits = 0
        self.misses = 0
        self._db = LocalDb(
            self.path,
            [
                "CREATE TABLE IF NOT EXISTS hashes (dev INTEGER, ino INTEGER, size INTEGER, "
                "mtime_ns INTEGER, sha256 TEXT NOT NULL, used REAL, "
                "PRIMARY KEY (dev, ino, size, mtime_ns))",
                "CREATE TABLE IF NOT EXISTS chunks (dev INTEGER, ino INTEGER, size INTEGER, "
                "mtime_ns INTEGER, policy TEXT NOT NULL, sha256 TEXT NOT NULL, chunks TEXT NOT NULL, "
                "used REAL, PRIMARY KEY (dev, ino, size, mtime_ns, policy))",
                "PRAGMA journal_mode=WAL",
                "PRAGMA synchronous=NORMAL",  # a lost entry only costs a re-hash
            ],
        ).connection

    def lookup(self, key: Key) -> str | None:
        db = self._db()
        if db is None:
            return None
        try:
            row = db.execute(
                "SELECT sha256 FROM hashes WHERE dev=? AND ino=? AND size=? AND mtime_ns=?",
                key,
            ).fetchone()
        except sqlite3.Error:
            return None
        return str(row[0]) if row else None

    def store(self, key: Key, sha: str) -> None:
        db = self._db()
        if db is None:
            return
        with contextlib.suppress(sqlite3.Error):
            db.execute("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?, ?)", (*key, sha, time.time()))

    def forget(self, path: Path) -> None:
        """Drop every hash kept for this file (by device and inode, whatever its size and time):
        S3 refused its bytes for the kept hash, so its stat key no longer tells its content."""
        db = self._db()
        if db is None:
            return
        try:
            st = os.stat(path)
        except OSError:
            return
        with contextlib.suppress(sqlite3.Error):
            db.execute("DELETE FROM hashes WHERE dev=? AND ino=?", (st.st_dev, st.st_ino))
            db.execute("DELETE FROM chunks WHERE dev=? AND ino=?", (st.st_dev, st.st_ino))

    def hash(self, path: Path, on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
        """(sha256, size) of `path`: from the cache when the file is the one hashed before."""
        before = os.stat(path)
        key = stat_key(before)
        known = self.lookup(key)
        if known is not None:
            self.hits += 1
            if on_bytes is not None:
                on_bytes(before.st_size)
            return known, before.st_size
        self.misses += 1
        sha, size = hash_stream(path, on_bytes)
        after = os.stat(path)
        # Changed while we read it, or too recently to trust its timestamps: not cached.
        if stat_key(after) == key and size == after.st_size and time.time() - after.st_mtime > RACY_S:
            self.store(key, sha)
        return sha, size

    def chunked(
        self, path: Path, policy: ChunkPolicy, on_bytes: Callable[[int], None] | None = None
    ) -> Chunked:
        """`path`'s hash and chunk list under `policy`: from the cache when the file is the one
        chunked before, else read once (cloud/pack/chunking.py) and remembered."""
        before = os.stat(path)
        key = stat_key(before)
        known = self._lookup_chunks(key, policy.key)
        if known is not None:
            self.hits += 1
            if on_bytes is not None:
                on_bytes(before.st_size)
            return known
        self.misses += 1
        result = chunk_file(path, policy, on_bytes)
        after = os.stat(path)
        stable = stat_key(after) == key and result.size == after.st_size
        if stable and time.time() - after.st_mtime > RACY_S:
            self.store(key, result.sha256)
            if result.chunks:
                self._store_chunks(key, policy.key, result)
        return result

    def _lookup_chunks(self, key: Key, policy: str) -> Chunked | None:
        db = self._db()
        if db is None:
            return None
        try:
            row = db.execute(
                "SELECT sha256, chunks FROM chunks WHERE dev=? AND ino=? AND size=? AND mtime_ns=? AND policy=?",
                (*key, policy),
            ).fetchone()
            if not row:
                return None
            chunks = tuple(Chunk(str(sha), int(size)) for sha, size in json.loads(row[1]))
        except (sqlite3.Error, ValueError, TypeError):
            return None
        if sum(chunk.size for chunk in chunks) != key[2]:
            return None  # a damaged row: chunk again
        return Chunked(str(row[0]), key[2], chunks)

    def _store_chunks(self, key: Key, policy: str, result: Chunked) -> None:
        db = self._db()
        if db is None:
            return
        listing = json.dumps([[chunk.sha256, chunk.size] for chunk in result.chunks], separators=(",", ":"))
        with contextlib.suppress(sqlite3.Error):
            db.execute(
                "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*key, policy, result.sha256, listing, time.time()),
            )
