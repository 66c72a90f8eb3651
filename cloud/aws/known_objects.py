"""What this computer last saw in each bucket's content-addressed store, so that a resubmit asks
S3 only about the objects it has not seen lately (one HEAD per file was most of a resubmit's time;
AWS Deadline Cloud keeps a similar "S3 check cache").

An entry says: key K was in bucket B, last written at L, as confirmed at C (a HEAD that found it,
or an upload that wrote it). It is trusted until the earlier of
- C + TRUST_S (a day): an object deleted by hand in the AWS console is asked about again by then,
  and a job that fails because an input is missing forgets its bucket at once (cloud/job/job_thread.py);
- L + the refresh age (uploads.upload_files copies an object onto itself past that age so the
  bucket's lifecycle rule never deletes an input in use; trusting it longer would skip that).
Nothing else deletes cas/ objects: Delete Cloud Data removes one job's folder, never shared
content. One SQLite file beside the hash cache; a broken or unreadable file only costs the HEADs
it would have saved, never a skipped upload of something the bucket lacks beyond the rules above.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from ..local_db import LocalDb

FILE_NAME = "bucket-objects-v1.sqlite"
TRUST_S = 86400.0
_BATCH = 500  # keys per query: well under SQLite's limit on bound parameters


class KnownObjects:
    """Keys seen in a bucket, with when they were last written; see the module's docstring."""

    def __init__(self, path: Path | None, trust_s: float = TRUST_S) -> None:
        self.path = Path(path) if path is not None else None
        self.trust_s = trust_s
        self._db = LocalDb(
            self.path,
            [
                "CREATE TABLE IF NOT EXISTS seen (bucket TEXT, key TEXT, modified REAL, "
                "confirmed REAL, PRIMARY KEY (bucket, key))"
            ],
        ).connection

    def trusted(
        self, bucket: str, keys: Sequence[str], refresh_after_s: float, now: float | None = None
    ) -> dict[str, datetime]:
        """The keys trusted to be in `bucket` now, each with when it was last written."""
        db = self._db()
        if db is None or not keys:
            return {}
        now = time.time() if now is None else now
        found: dict[str, datetime] = {}
        try:
            for start in range(0, len(keys), _BATCH):
                batch = list(keys[start : start + _BATCH])
                marks = ",".join("?" * len(batch))
                rows = db.execute(
                    f"SELECT key, modified, confirmed FROM seen WHERE bucket = ? AND key IN ({marks})",
                    [bucket, *batch],
                ).fetchall()
                for key, modified, confirmed in rows:
                    if now - confirmed < self.trust_s and now - modified < refresh_after_s:
                        found[key] = datetime.fromtimestamp(modified, UTC)
        except sqlite3.Error:
            return {}
        return found

    def remember(self, bucket: str, written: Mapping[str, datetime], now: float | None = None) -> None:
        """Keys just found in (or written to) `bucket`, with when each was last written."""
        db = self._db()
        if db is None or not written:
            return
        now = time.time() if now is None else now
        with contextlib.suppress(sqlite3.Error):
            db.executemany(
                "INSERT OR REPLACE INTO seen VALUES (?, ?, ?, ?)",
                [(bucket, key, when.timestamp(), now) for key, when in written.items()],
            )

    def forget(self, bucket: str) -> None:
        """Trust nothing seen in `bucket` (an input was found missing there)."""
        db = self._db()
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.execute("DELETE FROM seen WHERE bucket = ?", [bucket])
