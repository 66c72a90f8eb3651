"""S3 for Cloud Render: the artist's bucket, content-addressed uploads, presigned URLs, outputs.

Inputs are stored once under `cas/<sha256>`, so a resubmit uploads only what changed, a moved
project folder uploads nothing, and two scenes sharing textures share their objects. A large
.blend goes as content-defined chunks under `cas/chunks/<sha256>` (cloud/pack/chunking.py), so
a resubmit after a small edit sends only the chunks that changed. A job's
own data (spec, record, outputs) lives under `jobs/<id>/` and expires with a lifecycle rule.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from s3transfer.manager import TransferConfig, TransferManager
from s3transfer.subscribers import BaseSubscriber

from ..errors import Cancelled, CloudError, ErrorCode
from ..machine.contract import InputChunk, InputFile, cas_key, chunk_key, job_prefix, out_prefix
from .error_rules import is_code, translating
from .known_objects import KnownObjects
from .presign import presign_get, presign_post
from .session import AwsSettings, ClientCache, _is_loopback, client, client_config, make_session

BUCKET_PREFIX = "cloud-render-"
DEFAULT_EXPIRE_DAYS = 14
BLENDER_CACHE_DAYS = 30  # a cached Blender build goes 30 days after it was written
# A kept GPU kernel cache goes 14 days after it was written: an archive per (Blender version,
# GPU model, driver) of at most contract.MAX_KERNEL_CACHE_BYTES; an expired one costs the next
# machine one cold kernel compile, and drivers and Blender releases move on within weeks.
KERNEL_CACHE_DAYS = 14
MAX_PRESIGN_S = 7 * 24 * 3600  # SigV4 presigned URLs live at most 7 days
PRESIGN_MARGIN_S = 2 * 3600  # boot, install and download happen before the time cap starts counting
DEFAULT_OUTPUT_CAP = 5 * 1024**3  # largest single output object the instance may POST (S3's POST limit)
MiB = 1024 * 1024
# Measured against the emulated S3 on 2 cores (bench/upload.py): large parts mean few requests,
# and a file under the part size goes in one PUT (no parts to join again on the server side).
# s3transfer streams each part from the file as it sends it, so memory stays at a few read
# buffers per thread whatever the part size (the benchmark prints the peak).
UPLOAD_PART_SIZE = 256 * MiB
# Large bodies in flight at once. Four streams fill an artist's uplink; more only make the
# threads (ours, and here the emulator's) fight over 2 cores: on the 1 GB bench job 8 streams
# took a median 3.9 s, 3-4 streams 3.3 s (tried in shuffled order, 5 rounds each).
UPLOAD_CONCURRENCY = 4
# Requests whose time is the round trip, not the bytes (HEADs, chunks of about a MiB): more of
# them in flight at once.
SMALL_REQUEST_CONCURRENCY = 8


# --- The bucket ---------------------------------------------------------------------------


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


def new_bucket_name() -> str:
    """Bucket names are global across all AWS accounts: a UUID never collides."""
    return BUCKET_PREFIX + uuid.uuid4().hex


# Bumped whenever configure_bucket() sets something new (a lifecycle rule, a policy): a bucket
# the registry knows as set up by an older version is set up again on its next use.
BUCKET_SETUP_VERSION = 3  # 3: the kernel-cache/ expiry


def lifecycle_rules(expire_days: int) -> list[dict[str, Any]]:
    """Nothing in the bucket bills forever: job data, inputs and the Blender cache all expire
    (S3 counts an object's age from its last write)."""
    return [
        {
            "ID": "expire-job-data",
            "Status": "Enabled",
            "Filter": {"Prefix": "jobs/"},
            "Expiration": {"Days": expire_days},
        },
        # Inputs too: nothing bills forever. upload_files() refreshes objects it reuses.
        {
            "ID": "expire-inputs",
            "Status": "Enabled",
            "Filter": {"Prefix": "cas/"},
            "Expiration": {"Days": expire_days},
        },
        # Blender builds the add-on verified and kept for later jobs (cloud/job/cloud_steps.py).
        {
            "ID": "expire-blender-cache",
            "Status": "Enabled",
            "Filter": {"Prefix": "blender-cache/"},
            "Expiration": {"Days": BLENDER_CACHE_DAYS},
        },
        # GPU kernel caches render machines kept for the next ones (cloud/aws/kernel_cache.py).
        {
            "ID": "expire-kernel-cache",
            "Status": "Enabled",
            "Filter": {"Prefix": "kernel-cache/"},
            "Expiration": {"Days": KERNEL_CACHE_DAYS},
        },
        {
            "ID": "abort-incomplete-uploads",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        },
    ]


def tls_only_policy(bucket: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyPlainHttp",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def serves_tls(settings: AwsSettings) -> bool:
    """False for a plain-HTTP endpoint (the local emulator, a LAN S3-compatible store), where a
    TLS-only bucket policy would lock Cloud Render out of its own bucket."""
    endpoint = settings.endpoint_for("s3") or ""
    return not endpoint.lower().startswith("http://")


def configure_bucket(s3: Any, bucket: str, expire_days: int, *, tls_only: bool = True) -> None:
    """Block public access, encrypt at rest, refuse plain HTTP, expire old data."""
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}
            ]
        },
    )
    if tls_only:
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(tls_only_policy(bucket)))
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": lifecycle_rules(expire_days)}
    )


def ensure_bucket(
    settings: AwsSettings, registry: BucketRegistry | Path, *, expire_days: int = DEFAULT_EXPIRE_DAYS
) -> str:
    """The artist's bucket in `settings.region`, created and locked down on first use.

    The check and the creation happen under the registry's lock, so two Blender instances
    submitting at once end up with one bucket per region, not one each.
    """
    if not isinstance(registry, BucketRegistry):
        registry = BucketRegistry(registry)
    region = settings.region
    s3 = client(settings, "s3")
    with translating("preparing your storage bucket", region=region):
        entry = registry.get(region)
        if entry and _is_current(entry, expire_days) and _bucket_answers(s3, str(entry["bucket"])):
            return str(entry["bucket"])
        with registry.locked():
            entry = registry.get(region)  # again: another Blender may have made it meanwhile
            if entry and not _bucket_answers(s3, str(entry["bucket"])):
                entry = None  # deleted by hand: make a new one
            if entry and _is_current(entry, expire_days):
                return str(entry["bucket"])
            if entry:
                bucket = str(entry["bucket"])
            else:
                bucket = new_bucket_name()
                create: dict[str, Any] = {"Bucket": bucket}
                if region != "us-east-1":
                    create["CreateBucketConfiguration"] = {"LocationConstraint": region}
                s3.create_bucket(**create)
                registry.store(region, bucket=bucket, configured=False, expire_days=expire_days)
            configure_bucket(s3, bucket, expire_days, tls_only=serves_tls(settings))
            registry.store(
                region,
                bucket=bucket,
                configured=True,
                expire_days=expire_days,
                setup_version=BUCKET_SETUP_VERSION,
            )
            return bucket


def _is_current(entry: dict[str, Any], expire_days: int) -> bool:
    """Set up, with today's rules and retention: nothing to apply again."""
    return bool(
        entry.get("configured")
        and entry.get("expire_days") == expire_days
        and entry.get("setup_version") == BUCKET_SETUP_VERSION
    )


def _bucket_answers(s3: Any, bucket: str) -> bool:
    """False when the bucket is gone; other errors (no network, denied) are raised."""
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception as exc:
        if not is_code(exc, "404", "NoSuchBucket", "NotFound"):
            raise
        return False
    return True


# --- Hashing and uploading ----------------------------------------------------------------


def hash_file(path: Path, chunk: int = MiB) -> str:
    """SHA-256 of a file, streamed (never the whole file in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        while block := src.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class UploadProgress:
    """One progress report; `done`/`total` cover every byte this call sends."""

    path: str
    sha256: str
    file_done: int
    file_total: int
    done: int
    total: int


@dataclass
class UploadResult:
    uploaded: list[str] = field(default_factory=list)  # sha256 of objects sent
    skipped: list[str] = field(default_factory=list)  # sha256 of objects already in the bucket
    bytes_sent: int = 0  # files and chunks
    bytes_skipped: int = 0
    chunks_uploaded: list[str] = field(default_factory=list)  # sha256 of chunks sent
    chunks_skipped: list[str] = field(default_factory=list)
    chunk_bytes_sent: int = 0


@dataclass(frozen=True)
class ChunkSource:
    """One chunk of a chunked file: where its bytes lie in the local file, and its hash."""

    path: Path | str
    offset: int
    size: int
    sha256: str


ProgressCallback = Callable[[UploadProgress], None]


class _Tracker:
    """Adds up progress from s3transfer's worker threads and stops them on cancel."""

    def __init__(self, total: int, progress: ProgressCallback | None, cancel: threading.Event | None) -> None:
        self.total = total
        self.done = 0
        self.per_file: dict[str, int] = {}
        self.progress = progress
        self.cancel = cancel
        self.lock = threading.Lock()
        # Set whenever a transfer ends: the waiter wakes then, not on its next tick (a resubmit
        # of one changed file is over in tens of milliseconds).
        self.transfer_ended = threading.Event()

    def add(self, path: str, sha: str, size: int, amount: int) -> None:
        if self.cancel is not None and self.cancel.is_set():
            # Raised inside the body read: the request in flight stops at once.
            raise Cancelled("Upload cancelled.")
        with self.lock:
            self.done += amount
            file_done = self.per_file[sha] = self.per_file.get(sha, 0) + amount
            report = UploadProgress(path, sha, file_done, size, self.done, self.total)
        if self.progress is not None:
            self.progress(report)


class _Subscriber(BaseSubscriber):
    def __init__(self, tracker: _Tracker, path: str, sha: str, size: int) -> None:
        self.tracker, self.path, self.sha, self.size = tracker, path, sha, size

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self.tracker.add(self.path, self.sha, self.size, bytes_transferred)

    def on_done(self, future: Any, **kwargs: Any) -> None:
        self.tracker.transfer_ended.set()


def _existing(
    s3: Any,
    bucket: str,
    shas: Sequence[str],
    workers: int,
    key: Callable[[str], str] = cas_key,
    known: KnownObjects | None = None,
    refresh_after_s: float = math.inf,
) -> dict[str, datetime]:
    """Which cas/ objects exist already, with when they were written (HEAD in parallel; what
    `known` saw lately is not asked again, see cloud/aws/known_objects.py)."""
    trusted = known.trusted(bucket, [key(sha) for sha in shas], refresh_after_s) if known else {}
    ask = [sha for sha in shas if key(sha) not in trusted]

    def head(sha: str) -> tuple[str, datetime | None]:
        try:
            reply = s3.head_object(Bucket=bucket, Key=key(sha))
        except Exception as exc:
            if is_code(exc, "404", "NoSuchKey", "NotFound"):
                return sha, None
            raise
        return sha, reply["LastModified"]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = {sha: when for sha, when in pool.map(head, ask) if when is not None}
    if known is not None:
        known.remember(bucket, {key(sha): when for sha, when in found.items()})
    return {**{sha: trusted[key(sha)] for sha in shas if key(sha) in trusted}, **found}


def _remember_written(known: KnownObjects | None, bucket: str, keys: Iterable[str]) -> None:
    """Objects this computer just wrote (uploaded or refreshed): there as of now."""
    if known is not None:
        now = datetime.now(UTC)
        known.remember(bucket, dict.fromkeys(keys, now))


def _refresh(s3: Any, bucket: str, sha: str, key: Callable[[str], str] = cas_key) -> None:
    """Copy an old object onto itself so the lifecycle rule counts its age from today."""
    s3.copy(
        {"Bucket": bucket, "Key": key(sha)},
        bucket,
        key(sha),
        ExtraArgs={"MetadataDirective": "REPLACE", "Metadata": {"sha256": sha}},
    )


def upload_files(
    settings: AwsSettings,
    bucket: str,
    files: Iterable[tuple[Path | str, str, int]],
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    *,
    max_concurrency: int = UPLOAD_CONCURRENCY,
    part_size: int = UPLOAD_PART_SIZE,
    refresh_after_days: float = DEFAULT_EXPIRE_DAYS / 2,
    chunks: Iterable[ChunkSource] = (),
    known: KnownObjects | None = None,
) -> UploadResult:
    """Upload (local path, sha256, size) triples to cas/<sha256>, and the chunks of chunked
    files to cas/chunks/<sha256>, skipping what is there.

    Safe to call again after a failure: completed objects are found and skipped, so only
    unfinished files are sent again. Raises Cancelled within about a second of `cancel`.
    """
    wanted: dict[str, tuple[str, int]] = {}
    for path, sha, size in files:
        wanted.setdefault(sha, (str(path), int(size)))
    pieces: dict[str, ChunkSource] = {}
    for piece in chunks:
        pieces.setdefault(piece.sha256, piece)
    result = UploadResult()
    s3 = transfer_client(settings)
    with translating("uploading your scene", region=settings.region):
        refresh_s = refresh_after_days * 86400
        existing = _existing(s3, bucket, list(wanted), SMALL_REQUEST_CONCURRENCY, cas_key, known, refresh_s)
        # Chunks are many: more HEADs in flight than for whole files.
        have = _existing(s3, bucket, list(pieces), SMALL_REQUEST_CONCURRENCY * 4, chunk_key, known, refresh_s)
        now = datetime.now(UTC)
        for sha, when in existing.items():
            if (now - when).total_seconds() > refresh_s:
                _refresh(s3, bucket, sha)
                _remember_written(known, bucket, [cas_key(sha)])
        for sha, when in have.items():
            if (now - when).total_seconds() > refresh_s:
                _refresh(s3, bucket, sha, chunk_key)
                _remember_written(known, bucket, [chunk_key(sha)])
        todo = {sha: entry for sha, entry in wanted.items() if sha not in existing}
        result.skipped = [sha for sha in wanted if sha in existing]
        result.bytes_skipped = sum(wanted[sha][1] for sha in result.skipped)
        new_pieces = [piece for sha, piece in pieces.items() if sha not in have]
        result.chunks_skipped = [sha for sha in pieces if sha in have]
        result.bytes_skipped += sum(pieces[sha].size for sha in result.chunks_skipped)
        tracker = _Tracker(
            sum(size for _path, size in todo.values()) + sum(p.size for p in new_pieces), progress, cancel
        )
        manager = TransferManager(s3, _transfer_config(part_size, max_concurrency))
        futures = {}
        try:
            # Largest first: the long uploads start early and the small ones fill the gaps.
            for sha, (path, size) in sorted(todo.items(), key=lambda item: -item[1][1]):
                futures[sha] = manager.upload(
                    path,
                    bucket,
                    cas_key(sha),
                    extra_args={"Metadata": {"sha256": sha}},
                    subscribers=[_Subscriber(tracker, path, sha, size)],
                )
            _put_chunks(s3, bucket, new_pieces, tracker, cancel, SMALL_REQUEST_CONCURRENCY)
            _wait(futures, cancel, tracker.transfer_ended)
        except BaseException:
            for future in futures.values():
                future.cancel()
            manager.shutdown(cancel=True)
            raise
        manager.shutdown()
        result.uploaded = list(futures)
        result.chunks_uploaded = [piece.sha256 for piece in new_pieces]
        _remember_written(known, bucket, [cas_key(sha) for sha in result.uploaded])
        _remember_written(known, bucket, [chunk_key(sha) for sha in result.chunks_uploaded])
        result.chunk_bytes_sent = sum(piece.size for piece in new_pieces)
        result.bytes_sent = tracker.total
    return result


def _put_chunks(
    s3: Any,
    bucket: str,
    pieces: Sequence[ChunkSource],
    tracker: _Tracker,
    cancel: threading.Event | None,
    workers: int,
) -> None:
    """PUT each chunk (a few MiB: one request, its bytes read from the file and checked against
    the hash the pack gave it, so bytes that changed since are never stored under it)."""

    def one(piece: ChunkSource) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("Upload cancelled.")
        with open(piece.path, "rb") as handle:
            handle.seek(piece.offset)
            data = handle.read(piece.size)
        if len(data) != piece.size or hashlib.sha256(data).hexdigest() != piece.sha256:
            raise CloudError(
                f"{Path(piece.path).name} changed while the scene was being uploaded.",
                "Render in Cloud again once it is saved; what was already uploaded is not sent twice.",
                code=ErrorCode.INPUT_CHANGED,
                detail=str(piece.path),
            )
        s3.put_object(
            Bucket=bucket, Key=chunk_key(piece.sha256), Body=data, Metadata={"sha256": piece.sha256}
        )
        tracker.add(str(piece.path), piece.sha256, piece.size, piece.size)

    if not pieces:
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cloud-render-chunk") as pool:
        pending = [pool.submit(one, piece) for piece in sorted(pieces, key=lambda p: (str(p.path), p.offset))]
        try:
            for future in pending:
                while True:
                    try:
                        future.result(timeout=0.1)
                        break
                    except TimeoutError:
                        if cancel is not None and cancel.is_set():
                            raise Cancelled("Upload cancelled.") from None
        except BaseException:
            for future in pending:
                future.cancel()
            raise


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
    tracker = _Tracker(total, progress, cancel)
    manager = TransferManager(s3, _transfer_config(part_size, max_concurrency))
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
        when = _existing(s3, bucket, [sha], 1, cas_key, known, refresh_after_days * 86400).get(sha)
        if when is not None:
            if (datetime.now(UTC) - when).total_seconds() > refresh_after_days * 86400:
                _refresh(s3, bucket, sha)
                _remember_written(known, bucket, [cas_key(sha)])
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
            subscribers=[_Subscriber(tracker, path, sha, size)],
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
            _wait(futures, cancel, tracker.transfer_ended)
            _remember_written(known, bucket, [cas_key(sha) for sha in futures])
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


_transfer_clients = ClientCache(size=4)


def transfer_client(settings: AwsSettings) -> Any:
    """The S3 client for uploads to cas/: no second pass over the bytes for a request checksum.

    botocore would SHA-256 every body for the signature over plain http (which Cloud Render
    allows only to a server on this computer, an emulator) and CRC32 it for a checksum header.
    Each cas/ object is named by the SHA-256 of its bytes, hashed once while packing, and the
    machine checks that hash on every download; in transit TLS guards the bytes (or they never
    leave this computer). So the uploads are verified end to end without either extra pass.
    """
    endpoint = settings.endpoint_for("s3") or ""
    host = urlsplit(endpoint).hostname or ""
    if endpoint and not (endpoint.lower().startswith("https://") or _is_loopback(host)):
        return client(settings, "s3")  # anything else keeps botocore's own rule

    def make() -> Any:
        config = client_config(settings, "s3")
        s3_options = {**(config.s3 or {}), "payload_signing_enabled": False}
        return make_session(settings).client(
            "s3",
            region_name=settings.region,
            endpoint_url=settings.endpoint_for("s3"),
            config=config.merge(Config(s3=s3_options, request_checksum_calculation="when_required")),
        )

    return _transfer_clients.get(settings, make)


def _transfer_config(part_size: int, max_concurrency: int) -> TransferConfig:
    return TransferConfig(
        multipart_threshold=part_size,
        multipart_chunksize=part_size,
        max_request_concurrency=max_concurrency,
    )


def _wait(futures: dict[str, Any], cancel: threading.Event | None, ended: threading.Event) -> None:
    """Wait for every transfer: woken by `ended` (set by each transfer's end), checking `cancel`
    at least ten times a second."""
    pending = list(futures.values())
    while pending:
        if cancel is not None and cancel.is_set():
            raise Cancelled("Upload cancelled.")
        ended.clear()  # before looking: a transfer that ends after the look sets it again
        still = []
        for future in pending:
            if future.done():
                future.result()  # raises the transfer's error
            else:
                still.append(future)
        pending = still
        if pending:
            ended.wait(0.1)


# --- Small JSON objects -------------------------------------------------------------------


def put_json(settings: AwsSettings, bucket: str, key: str, data: Any, *, only_if_new: bool = False) -> None:
    """Write a small JSON document (job record, spec); `only_if_new` refuses to overwrite."""
    extra = {"IfNoneMatch": "*"} if only_if_new else {}
    with translating("saving the job", region=settings.region):
        client(settings, "s3").put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(data, indent=1, sort_keys=True).encode(),
            ContentType="application/json",
            **extra,
        )


class TooLarge(CloudError):
    """An object larger than the caller allows: it is not read."""


def get_bytes(settings: AwsSettings, bucket: str, key: str, max_bytes: int) -> bytes | None:
    """An object's bytes, or None when it does not exist. One larger than `max_bytes` (by its
    Content-Length, and by what actually arrives) raises TooLarge without being read whole."""
    with translating("reading the job", region=settings.region):
        try:
            reply = client(settings, "s3").get_object(Bucket=bucket, Key=key)
        except Exception as exc:
            if is_code(exc, "NoSuchKey", "404"):
                return None
            raise
        body = reply["Body"]
        try:
            if int(reply.get("ContentLength") or 0) > max_bytes:
                raise TooLarge(f"{key} is larger than {max_bytes} bytes.", code=ErrorCode.TOO_LARGE)
            data = body.read(max_bytes + 1)
        finally:
            body.close()
    if len(data) > max_bytes:
        raise TooLarge(f"{key} is larger than {max_bytes} bytes.", code=ErrorCode.TOO_LARGE)
    return bytes(data)


# --- Presigned access for the render machine ----------------------------------------------


def presign_expiry(time_cap_s: int, margin_s: int = PRESIGN_MARGIN_S) -> int:
    """How long the machine's URLs must live: its time cap plus boot time, at most 7 days."""
    return max(60, min(int(time_cap_s) + margin_s, MAX_PRESIGN_S))


def presign_client(settings: AwsSettings) -> Any:
    """An S3 client that signs with SigV4: botocore would presign with the deprecated SigV2 in
    us-east-1, which newer regions reject and which ignores the 7-day expiry rule."""
    return make_session(settings).client(
        "s3",
        region_name=settings.region,
        endpoint_url=settings.endpoint_for("s3"),
        config=client_config(settings, signature_version="s3v4"),
    )


def presign_inputs(
    settings: AwsSettings,
    bucket: str,
    inputs: Iterable[tuple[str, str, int]],
    expires_s: int,
    chunks: Mapping[str, Sequence[tuple[str, int]]] | None = None,
) -> list[InputFile]:
    """Presigned GETs for (job-relative path, sha256, size) inputs; a path in `chunks` gets one
    per chunk (sha256, size) instead, in order. The links travel in the job spec in the bucket
    (EC2's user-data holds only the spec's link: 16 KB would not hold hundreds of chunks)."""
    s3 = presign_client(settings)
    chunks = chunks or {}
    with translating("preparing the render machine's downloads", region=settings.region):
        found = []
        for path, sha, size in inputs:
            pieces = chunks.get(path) or ()
            if pieces:
                links = [
                    InputChunk(c, n, presign_get(s3, bucket, chunk_key(c), expires_s)) for c, n in pieces
                ]
                found.append(InputFile(path=path, url="", sha256=sha, size=size, chunks=links))
            else:
                url = presign_get(s3, bucket, cas_key(sha), expires_s)
                found.append(InputFile(path=path, url=url, sha256=sha, size=size))
        return found


def presign_outputs(
    settings: AwsSettings, bucket: str, job_id: str, expires_s: int, max_bytes: int = DEFAULT_OUTPUT_CAP
) -> dict[str, Any]:
    """A POST policy that lets the machine write under jobs/<id>/out/ only, up to max_bytes per file."""
    with translating("preparing the render machine's uploads", region=settings.region):
        return presign_post(presign_client(settings), bucket, out_prefix(job_id), expires_s, max_bytes)


def _human(seconds: float) -> str:
    def plural(count: float, unit: str) -> str:
        number = max(1, round(count))
        return f"{number} {unit}" if number == 1 else f"{number} {unit}s"

    if seconds < 90 * 60:
        return plural(seconds / 60, "minute")
    return plural(seconds / 3600, "hour") if seconds < 48 * 3600 else plural(seconds / 86400, "day")


def credential_lifetime_warning(settings: AwsSettings, needed_seconds: int) -> str | None:
    """A sentence for the panel when the signing credentials die before the job's URLs must.

    A presigned URL stops working when the credentials that signed it expire: IAM-user keys
    allow 7 days, STS session keys their own expiry (1 to 36 hours), SSO about 12 hours.
    """
    limit: float
    kind: str
    if settings.access_key_id and settings.secret_access_key:
        if settings.session_token:
            limit, kind = (
                3600,
                "Your pasted keys are temporary (they include a session token) and may expire within an hour",
            )
        else:
            limit, kind = MAX_PRESIGN_S, "Links signed with access keys last 7 days at most"
    else:
        with translating("checking your AWS profile", region=settings.region):
            creds = make_session(settings).get_credentials()
            if creds is None:
                return None
            # SSO and assumed roles hand back deferred credentials: nothing is fetched, and no
            # expiry is known, until they are first used. Fetch them now to read the real one.
            frozen = creds.get_frozen_credentials()
        expiry = getattr(creds, "_expiry_time", None) if isinstance(creds, RefreshableCredentials) else None
        if expiry is not None:
            limit = max(0.0, (expiry - datetime.now(UTC)).total_seconds())
            kind = (
                f"Your AWS sign-in expires in {_human(limit)}"
                if limit > 0
                else "Your AWS sign-in has expired"
            )
        elif frozen.token:
            limit, kind = 3600, "Your AWS profile uses temporary keys that may expire within an hour"
        else:
            limit, kind = MAX_PRESIGN_S, "Links signed with access keys last 7 days at most"
    if needed_seconds <= limit:
        return None
    action = (
        "Lower Max Hours or Max Cost so the job fits in 7 days."
        if limit >= MAX_PRESIGN_S
        else "Sign in again just before you launch, use an IAM user's access keys, or lower Max Hours "
        "or Max Cost."
    )
    return (
        f"{kind}, but this job may run for {_human(needed_seconds)}: once its links expire, the render "
        f"machine can no longer save frames and stops. {action}"
    )


# --- Outputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    etag: str
    last_modified: datetime


def list_objects(
    settings: AwsSettings, bucket: str, prefix: str, start_after: str = ""
) -> list[StoredObject]:
    """Objects under `prefix` whose keys sort after `start_after` (new frames since last time)."""
    found: list[StoredObject] = []
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if start_after:
        kwargs["StartAfter"] = start_after
    with translating("checking for finished frames", region=settings.region):
        for page in client(settings, "s3").get_paginator("list_objects_v2").paginate(**kwargs):
            for item in page.get("Contents", []):
                found.append(
                    StoredObject(
                        item["Key"], int(item["Size"]), item["ETag"].strip('"'), item["LastModified"]
                    )
                )
    return found


def download(settings: AwsSettings, bucket: str, key: str, dest: Path, *, max_bytes: int = 0) -> Path:
    """Download to a temporary file beside `dest`, then rename: readers never see half a frame.
    With `max_bytes`, an object that turns out larger is abandoned (TooLarge), never kept."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with translating("downloading a frame", region=settings.region), os.fdopen(fd, "wb") as out:
            body = client(settings, "s3").get_object(Bucket=bucket, Key=key)["Body"]
            written = 0
            for chunk in body.iter_chunks(MiB):
                written += len(chunk)
                if max_bytes and written > max_bytes:
                    body.close()
                    raise TooLarge(f"{key} is larger than {max_bytes} bytes.", code=ErrorCode.TOO_LARGE)
                out.write(chunk)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return dest


def delete_job_data(settings: AwsSettings, bucket: str, job_id: str) -> int:
    """Delete everything under jobs/<id>/ (inputs in cas/ stay for the next job); returns the count."""
    if not job_id or "/" in job_id:
        raise CloudError(
            "That job cannot be deleted.", "Pick a job from the list.", code=ErrorCode.BAD_JOB_ID
        )
    s3 = client(settings, "s3")
    deleted = 0
    with translating("deleting the job's files", region=settings.region):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=job_prefix(job_id)):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                reply = s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                if reply.get("Errors"):
                    raise CloudError(
                        "Some of the job's files could not be deleted.",
                        "Try again in a minute.",
                        code=ErrorCode.DELETE_FAILED,
                        detail=json.dumps(reply["Errors"][:5], default=str),
                    )
                deleted += len(keys)
    return deleted
