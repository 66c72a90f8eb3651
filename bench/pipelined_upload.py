"""Hashing overlapped with uploading, for bench/upload.py's "ours with hashing" rows.

The add-on hashes while packing and uploads afterwards (cloud/aws/uploads.upload_files); this
pipeline starts each file's upload as soon as its hash is known, to measure what hashing adds
to an upload when it overlaps it. Built from the upload module's public pieces.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from s3transfer.manager import TransferManager

from cloud.aws.bucket_setup import DEFAULT_EXPIRE_DAYS
from cloud.aws.error_rules import translating
from cloud.aws.known_objects import KnownObjects
from cloud.aws.session import AwsSettings
from cloud.aws.uploads import (
    SMALL_REQUEST_CONCURRENCY,
    UPLOAD_CONCURRENCY,
    UPLOAD_PART_SIZE,
    ProgressCallback,
    ProgressSubscriber,
    ProgressTracker,
    UploadResult,
    existing_objects,
    hash_file,
    refresh_object,
    remember_written,
    transfer_client,
    transfer_config,
    wait_for_transfers,
)
from cloud.errors import Cancelled
from cloud.machine.contract import cas_key

HashFn = Callable[[Path], tuple[str, int]]


def _hash_only(path: Path) -> tuple[str, int]:
    return hash_file(path), os.path.getsize(path)


def hash_and_upload(
    settings: AwsSettings,
    bucket: str,
    paths: Iterable[Path | str],
    hash_fn: HashFn = _hash_only,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    *,
    hash_threads: int = 2,
    max_concurrency: int = UPLOAD_CONCURRENCY,
    part_size: int = UPLOAD_PART_SIZE,
    refresh_after_days: float = DEFAULT_EXPIRE_DAYS / 2,
    known: KnownObjects | None = None,
) -> tuple[UploadResult, dict[str, tuple[str, int]]]:
    """Hash files and upload each to cas/<sha256> as soon as its hash is known.

    Hashing (two threads: hashlib releases the GIL) overlaps the uploads of the files hashed
    before, largest first, so the time is the upload's, not hash time + upload time; the upload
    reads what the hash just read, from the page cache. `hash_fn` may answer from a cache
    (cloud/pack/hash_cache.py). Returns the result and {path: (sha256, size)}.
    """
    ordered = sorted({str(p) for p in paths}, key=lambda p: -os.path.getsize(p))
    total = sum(os.path.getsize(p) for p in ordered)
    s3 = transfer_client(settings)
    result = UploadResult()
    hashes: dict[str, tuple[str, int]] = {}
    futures: dict[str, Any] = {}
    claimed: set[str] = set()
    lock = threading.Lock()
    tracker = ProgressTracker(total, progress, cancel)
    manager = TransferManager(s3, transfer_config(part_size, max_concurrency))
    checker = ThreadPoolExecutor(
        max_workers=SMALL_REQUEST_CONCURRENCY, thread_name_prefix="cloud-render-check"
    )
    checks: list[Any] = []

    def one(path: str) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("Upload cancelled.")
        sha, size = hash_fn(Path(path))
        with lock:
            hashes[path] = (sha, size)
            if sha in claimed:
                tracker_skip = size
            else:
                claimed.add(sha)
                tracker_skip = -1
        if tracker_skip >= 0:  # the same bytes under another name: sent once
            tracker.add(path, sha, size, tracker_skip)
            return
        # Asking S3 waits on the network: it runs in a pool of its own, so the hash threads go
        # on to the next file (a resubmit answered by the hash cache asks for all files at once).
        check = checker.submit(check_and_send, path, sha, size)
        with lock:
            checks.append(check)

    def check_and_send(path: str, sha: str, size: int) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("Upload cancelled.")
        when = existing_objects(s3, bucket, [sha], 1, cas_key, known, refresh_after_days * 86400).get(sha)
        if when is not None:
            if (datetime.now(UTC) - when).total_seconds() > refresh_after_days * 86400:
                refresh_object(s3, bucket, sha)
                remember_written(known, bucket, [cas_key(sha)])
            with lock:
                result.skipped.append(sha)
                result.bytes_skipped += size
            tracker.add(path, sha, size, size)
            return
        future = manager.upload(
            path,
            bucket,
            cas_key(sha),
            extra_args={"Metadata": {"sha256": sha}},
            subscribers=[ProgressSubscriber(tracker, path, sha, size)],
        )
        with lock:
            futures[sha] = future
            result.uploaded.append(sha)
            result.bytes_sent += size

    with translating("uploading your scene", region=settings.region):
        try:
            with ThreadPoolExecutor(max_workers=hash_threads, thread_name_prefix="cloud-render-hash") as pool:
                _settle([pool.submit(one, path) for path in ordered], cancel)
            with lock:
                asked = list(checks)  # every hash thread is done: no check is added after this
            _settle(asked, cancel)
            wait_for_transfers(futures, cancel, tracker.transfer_ended)
            remember_written(known, bucket, [cas_key(sha) for sha in futures])
        except BaseException:
            checker.shutdown(wait=False, cancel_futures=True)
            for future in futures.values():
                future.cancel()
            manager.shutdown(cancel=True)
            raise
        checker.shutdown()
        manager.shutdown()
    return result, hashes


def _settle(pending: Sequence[Any], cancel: threading.Event | None) -> None:
    """Wait for each future in turn (re-raising its error), checking `cancel` every 0.1 s."""
    for done in pending:
        while True:
            try:
                done.result(timeout=0.1)
                break
            except TimeoutError:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("Upload cancelled.") from None
