"""The NVIDIA driver the machines of earlier jobs ran, per region, bucket and kernel-cache folder
(Blender version and GPU model), so that the next job offers exactly that driver's archive
(cloud/aws/kernel_cache.py) instead of trusting what a listing of the bucket says is newest.

Learnt at the end of a job whose machine was allowed to keep its cache (cloud/job/cloud_steps.py
`after_job`), from status.json's validated `gpu_driver`. One SQLite file beside the others in
the state folder; a broken or unreadable file only costs the next machine one cold compile.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

from ..local_db import LocalDb
from ..machine import contract

FILE_NAME = "kernel-drivers-v1.sqlite"


class KernelDrivers:
    """(region, bucket, kernel-cache prefix) -> the driver last reported there."""

    def __init__(self, path: Path | None) -> None:
        self._db = LocalDb(
            path,
            [
                "CREATE TABLE IF NOT EXISTS drivers (region TEXT, bucket TEXT, prefix TEXT, "
                "driver TEXT, seen REAL, PRIMARY KEY (region, bucket, prefix))"
            ],
        ).connection

    def driver(self, region: str, bucket: str, prefix: str) -> str:
        """The driver remembered for this folder, or "" (none, or not a driver version)."""
        db = self._db()
        if db is None:
            return ""
        try:
            row = db.execute(
                "SELECT driver FROM drivers WHERE region = ? AND bucket = ? AND prefix = ?",
                [region, bucket, prefix],
            ).fetchone()
        except sqlite3.Error:
            return ""
        found = str(row[0]) if row else ""
        return found if contract.DRIVER_VERSION.fullmatch(found) else ""

    def remember(self, region: str, bucket: str, prefix: str, driver: str) -> None:
        """The driver a machine of a job in this folder ran (the newest report wins)."""
        db = self._db()
        if db is None or not contract.DRIVER_VERSION.fullmatch(driver):
            return
        with contextlib.suppress(sqlite3.Error):
            db.execute(
                "INSERT OR REPLACE INTO drivers VALUES (?, ?, ?, ?, ?)",
                [region, bucket, prefix, driver, time.time()],
            )
