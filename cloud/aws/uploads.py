"""Content-addressed uploads: each input stored once under `cas/<sha256>`, chunks under `cas/chunks/`.

A resubmit uploads only what changed, a moved project folder uploads nothing, and two scenes
sharing textures share their objects. A large .blend goes as content-defined chunks
(cloud/pack/chunking.py), so a resubmit after a small edit sends only the chunks that changed.
What exists is asked with parallel HEADs (or answered by cloud/aws/known_objects.py); an old
object is copied onto itself so the bucket's lifecycle rule counts its age from today.

What compresses travels zlib-compressed (cloud/pack/compression.py chooses), under the same
content address with a suffix (`cas/<sha256>.zlib`, `cas/chunks/<sha256>.zlib`): the name stays
the SHA-256 of the uncompressed bytes, so the hash cache and deduplication are as they were, and
an object stored plainly before compression existed is found (under the other key) and reused,
never sent again. Which form each object has goes back in `UploadResult.encodings`, and from
there into the job spec (`encoding`), which tells the machine what to fetch and inflate. How
hard to compress is picked from the link, measured by its first few MB answered (`LinkMeter`,
compression.choose_level): level 6 on a slow uplink, none where compressing would be the slower
part, level 1 until the link is known.

Asking, compressing and sending overlap (issue 25, "Overlap"): each object goes through its own
pipeline (HEAD, judge and compress, send), so the first body leaves as soon as its own object is
known missing, not after the whole scene was looked up and compressed; a large compressible file
is sent part by part while it is still being compressed (a multipart upload, a few parts ahead at
most: memory stays bounded), and a compressed copy on disk is deleted once it has been sent.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import math
import os
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import botocore.exceptions as bce
from botocore.config import Config
from s3transfer.manager import TransferConfig, TransferManager
from s3transfer.subscribers import BaseSubscriber

from ..errors import Cancelled, CloudError, ErrorCode
from ..machine.contract import cas_key, chunk_key
from ..pack import compression
from .bucket_setup import DEFAULT_EXPIRE_DAYS
from .error_rules import is_code, translating
from .known_objects import KnownObjects
from .session import AwsSettings, ClientCache, _is_loopback, client, client_config, make_session
from .stored_listing import StoredListing, list_stored, pages_worth

MiB = 1024 * 1024
CAS_PREFIX = "cas/"  # every content-addressed object: whole files and chunks (cas/chunks/)
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
    # The bytes on the wire: what was sent, the compressed objects at their compressed size.
    wire_bytes: int = 0
    # Plain key (cas_key(sha) / chunk_key(sha)) -> "zlib" for each object of the call stored
    # compressed (found so, or sent so); a key not here is stored as it is.
    encodings: dict[str, str] = field(default_factory=dict)
    # Plain key -> the zlib level each object sent compressed in this call went at.
    levels: dict[str, int] = field(default_factory=dict)


# Bodies the server must have answered before the link's speed counts as measured.
MEASURE_BYTES = 4 * MiB


class LinkMeter:
    """The uplink's speed, measured while uploading from the requests the server has answered
    (through the link, not only into a socket's buffer): each request's bytes, and the time it
    would have taken alone, its time shared by the requests in flight beside it (time^2 over the
    request-seconds in flight during it: a request alone counts its whole time, one of four
    going together a quarter). Answered bytes over that time, once `measure_bytes` are answered,
    then kept: the first few MB tell the link. (Bytes handed to a socket say nothing on a link
    with large buffers; answered bytes over the time since the start undercount while four large
    files go at once.) None before: compression then goes at its default level."""

    def __init__(self, measure_bytes: int = MEASURE_BYTES) -> None:
        self.measure_bytes = measure_bytes
        self.lock = threading.Lock()
        self.in_flight = 0
        self.area = 0.0  # request-seconds in flight so far
        self.last = time.monotonic()
        self.answered = 0
        self.alone_s = 0.0
        self.measured: float | None = None

    def _advance(self) -> float:
        now = time.monotonic()
        self.area += self.in_flight * (now - self.last)
        self.last = now
        return now

    def begin(self) -> tuple[float, float]:
        """A request's body starts: the token to give `end`."""
        with self.lock:
            now = self._advance()
            self.in_flight += 1
            return now, self.area

    def end(self, token: tuple[float, float], size: int) -> None:
        """The request begun with `token` was answered, `size` bytes (0: it failed)."""
        with self.lock:
            now = self._advance()
            self.in_flight -= 1
            took, shared = now - token[0], self.area - token[1]
            if size <= 0 or took <= 0 or shared <= 0 or self.measured is not None:
                return
            self.answered += size
            self.alone_s += took * took / shared
            if self.answered >= self.measure_bytes:
                self.measured = self.answered / self.alone_s

    def rate(self) -> float | None:
        """Bytes a second, or None while not measured."""
        with self.lock:
            return self.measured


@dataclass(frozen=True)
class ChunkSource:
    """One chunk of a chunked file: where its bytes lie in the local file, and its hash."""

    path: Path | str
    offset: int
    size: int
    sha256: str


ProgressCallback = Callable[[UploadProgress], None]


class ProgressTracker:
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

    def skip(self, amount: int) -> None:
        """`amount` bytes found in the bucket already: not to be sent after all."""
        with self.lock:
            self.total -= amount

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


class ProgressSubscriber(BaseSubscriber):
    """Feeds one s3transfer upload's progress and end into a ProgressTracker. `scale`: file
    bytes per byte sent (a compressed body counts as the file it stands for)."""

    def __init__(
        self,
        tracker: ProgressTracker,
        path: str,
        sha: str,
        size: int,
        scale: float = 1.0,
        meter: LinkMeter | None = None,
    ) -> None:
        self.tracker, self.path, self.sha, self.size, self.scale = tracker, path, sha, size, scale
        self.meter = meter
        self.began: tuple[float, float] | None = None  # the meter's token, at the first bytes
        self.sent = 0

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        if self.meter is not None and self.began is None:
            self.began = self.meter.begin()
        if self.scale == 1.0:
            self.tracker.add(self.path, self.sha, self.size, bytes_transferred)
            return
        # In whole file bytes, rounded so that the body's last byte brings the file to its size.
        before = round(self.sent * self.scale)
        self.sent += bytes_transferred
        self.tracker.add(
            self.path, self.sha, self.size, min(round(self.sent * self.scale), self.size) - before
        )

    def on_done(self, future: Any, **kwargs: Any) -> None:
        if self.meter is not None and self.began is not None:
            try:
                future.result()  # done already: answers at once
                answered = self.sent_bytes(future)
            except BaseException:  # failed or cancelled: nothing answered
                answered = 0
            self.meter.end(self.began, answered)
        self.tracker.transfer_ended.set()

    @staticmethod
    def sent_bytes(future: Any) -> int:
        """The body's size (the call's size: the file sent, compressed or not)."""
        return int(future.meta.size or 0)


def existing_objects(
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


def remember_written(known: KnownObjects | None, bucket: str, keys: Iterable[str]) -> None:
    """Objects this computer just wrote (uploaded or refreshed): there as of now."""
    if known is not None:
        now = datetime.now(UTC)
        known.remember(bucket, dict.fromkeys(keys, now))


def refresh_object(
    s3: Any, bucket: str, sha: str, key: Callable[[str, str], str] = cas_key, encoding: str = ""
) -> None:
    """Copy an old object onto itself so the lifecycle rule counts its age from today."""
    s3.copy(
        {"Bucket": bucket, "Key": key(sha, encoding)},
        bucket,
        key(sha, encoding),
        ExtraArgs={"MetadataDirective": "REPLACE", "Metadata": _metadata(sha, encoding)},
    )


def _metadata(sha: str, encoding: str) -> dict[str, str]:
    """The object's own note of its content address (and form), for whoever looks in the bucket."""
    return {"sha256": sha, "encoding": encoding} if encoding else {"sha256": sha}


def _other(encoding: str) -> str:
    return "" if encoding else compression.ZLIB


def _head(s3: Any, bucket: str, key: str) -> datetime | None:
    """When `key` was written, or None when it is not there."""
    try:
        return s3.head_object(Bucket=bucket, Key=key)["LastModified"]
    except Exception as exc:
        if is_code(exc, "404", "NoSuchKey", "NotFound"):
            return None
        raise


def _look_up(
    s3: Any,
    bucket: str,
    sha: str,
    first: str,
    key: Callable[[str, str], str],
    trusted: dict[str, datetime],
    listing: StoredListing | None = None,
) -> tuple[str, datetime, bool] | None:
    """Whether one object is stored, in which form, written when: looked for in the form `first`,
    then in the other (an object uploaded before compression existed, or one judged otherwise);
    a form seen lately (`trusted`, from cloud/aws/known_objects.py) is taken without asking, and
    asked first; a form the bucket's listing answers for is not asked either. (form, written,
    whether S3 was asked), or None: not there."""
    forms = (first, _other(first))
    if key(sha, forms[1]) in trusted and key(sha, forms[0]) not in trusted:
        forms = (forms[1], forms[0])
    for form in forms:
        stored = key(sha, form)
        if stored in trusted:
            return form, trusted[stored], False
        if listing is not None and listing.answers(stored):
            listed = listing.when(stored)
            if listed is not None:
                return form, listed, True
            continue
        when = _head(s3, bucket, stored)
        if when is not None:
            return form, when, True
    return None


def _look_up_file(
    s3: Any,
    bucket: str,
    sha: str,
    path: str,
    trusted: dict[str, datetime],
    listing: StoredListing | None = None,
) -> tuple[str, datetime, bool] | None:
    """`_look_up` for a whole file, its first form guessed from its first bytes (the sample that
    decides how a file is sent is taken only for the files sent; with a listing that answers for
    both forms, no guess is needed)."""
    both = listing is not None and all(listing.answers(cas_key(sha, f)) for f in ("", compression.ZLIB))
    first = compression.ZLIB if both else compression.likely_form(path)
    return _look_up(s3, bucket, sha, first, cas_key, trusted, listing)


class _DropBody(BaseSubscriber):
    """Deletes a compressed copy once its upload has ended: the copies on disk are those still to
    be sent, not the whole scene's."""

    def __init__(self, body: str, folder: Path) -> None:
        self.body, self.folder = Path(body), folder

    def on_done(self, future: Any, **kwargs: Any) -> None:
        if self.body.parent == self.folder:
            with contextlib.suppress(OSError):  # still open on Windows: the folder's cleanup takes it
                self.body.unlink(missing_ok=True)


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
    link: LinkMeter | None = None,
    events: Callable[[str, str], None] | None = None,
) -> UploadResult:
    """Upload (local path, sha256, size) triples to cas/<sha256>, and the chunks of chunked
    files to cas/chunks/<sha256>, skipping what is there.

    Safe to call again after a failure: completed objects are found and skipped, so only
    unfinished files are sent again. Raises Cancelled within about a second of `cancel`.
    The link is measured as the bodies go (`link`, a fresh LinkMeter unless given: one kept
    from an earlier call knows the link from the start), and what is judged after that is
    compressed at the level the link calls for (compression.choose_level).

    Each object goes through its own pipeline, all of them at once: asked for (HEAD), judged and
    compressed where that pays (two judge threads), sent. So the first body leaves as soon as its
    own object is known missing and ready, while later ones are still asked for or compressed,
    and the uplink is not idle while the rest of the scene is looked up. `events`, when given,
    hears ("asked" | "compressed" | "sent", sha) as each object passes each step (from worker
    threads): the order the steps overlap in. A large compressible file (STREAM_BYTES or more) is
    compressed and sent at once, part by part (`_stream_compressed`): its "compressed" comes
    when it has been read to its end, with its parts before the last in S3 or on their way.
    """
    meter = link if link is not None else LinkMeter()
    effort = compression.Effort()  # level 6 against level 1 on this call's data
    tell = events if events is not None else (lambda _step, _sha: None)
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
        trusted: dict[str, datetime] = {}
        if known is not None:
            keys = [cas_key(sha, form) for sha in wanted for form in ("", compression.ZLIB)]
            keys += [chunk_key(sha, form) for sha in pieces for form in ("", compression.ZLIB)]
            trusted = known.trusted(bucket, keys, refresh_s)
        # Every byte may have to go until its object is found: the total shrinks by what is found.
        tracker = ProgressTracker(
            sum(size for _path, size in wanted.values()) + sum(p.size for p in pieces.values()),
            progress,
            cancel,
        )
        manager = TransferManager(s3, transfer_config(part_size, max_concurrency))
        squeezed = tempfile.TemporaryDirectory(prefix="cloud-render-zlib-")
        folder = Path(squeezed.name)
        heads = ThreadPoolExecutor(SMALL_REQUEST_CONCURRENCY, thread_name_prefix="cloud-render-head")
        # Chunks are many: more HEADs in flight than for whole files.
        chunk_heads = ThreadPoolExecutor(
            SMALL_REQUEST_CONCURRENCY * 4, thread_name_prefix="cloud-render-chunk-head"
        )
        judge = ThreadPoolExecutor(max_workers=JUDGE_THREADS, thread_name_prefix="cloud-render-judge")
        putters = ThreadPoolExecutor(SMALL_REQUEST_CONCURRENCY, thread_name_prefix="cloud-render-chunk")
        parts = ThreadPoolExecutor(max_concurrency, thread_name_prefix="cloud-render-part")
        pools = (heads, chunk_heads, judge, putters, parts)
        steps: dict[Future[Any], tuple[str, str]] = {}  # each step in flight: (what, sha or key)
        futures: dict[str, Any] = {}  # sha -> its file's transfer
        existing: dict[str, tuple[str, datetime]] = {}
        have: dict[str, tuple[str, datetime]] = {}
        chunk_forms: dict[str, tuple[str, int, int]] = {}
        sent_keys: dict[str, str] = {}  # sha -> the key it was sent under
        uploaded: list[str] = []  # sha of each file sent, in the order they were ready
        halt = threading.Event()  # set when the call fails: the streams still going stop

        def stream(sha: str, path: Path, size: int, level: int) -> _Streamed:
            return _stream_compressed(
                s3,
                bucket,
                sha,
                path,
                size,
                level,
                senders=parts,
                tracker=tracker,
                meter=meter,
                cancel=cancel,
                stop=halt,
                compressed=lambda: tell("compressed", sha),
            )

        put_one = _chunk_sender(s3, bucket, tracker, cancel, meter, effort, _cores(SMALL_REQUEST_CONCURRENCY))

        def found(sha: str, form: str, when: datetime, key: Callable[[str, str], str]) -> None:
            if form:
                result.encodings[key(sha, "")] = form
            if (datetime.now(UTC) - when).total_seconds() > refresh_s:
                steps[heads.submit(refresh_object, s3, bucket, sha, key, form)] = ("refresh", key(sha, form))

        try:
            # Many objects to ask about (a first submission): one listing of the bucket's cas/
            # answers for most or all of them in a request or a few, instead of a HEAD each.
            asks = sum(cas_key(sha) not in trusted for sha in wanted)
            asks += sum(chunk_key(sha) not in trusted for sha in pieces)
            pages = pages_worth(2 * asks)
            listing = list_stored(s3, bucket, CAS_PREFIX, pages) if pages else None
            # Largest first: the long uploads start early and the small ones fill the gaps.
            for sha, (path, _size) in sorted(wanted.items(), key=lambda item: -item[1][1]):
                look = heads.submit(_look_up_file, s3, bucket, sha, path, trusted, listing)
                steps[look] = ("file", sha)
            # A chunk of a plain .blend mostly compresses, so its compressed form is asked first.
            for sha, _piece in sorted(pieces.items(), key=lambda item: (str(item[1].path), item[1].offset)):
                look = chunk_heads.submit(
                    _look_up, s3, bucket, sha, compression.ZLIB, chunk_key, trusted, listing
                )
                steps[look] = ("chunk", sha)
            transfers = dict(futures)
            while True:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("Upload cancelled.")
                tracker.transfer_ended.clear()  # before looking: a transfer that ends after sets it
                for sha, transfer in list(transfers.items()):
                    if transfer.done():
                        _transfer_result(transfer, wanted[sha][0])  # raises the transfer's error
                        del transfers[sha]
                        tell("sent", sha)
                if not steps and not transfers:
                    break
                if not steps:
                    tracker.transfer_ended.wait(0.1)
                    continue
                done, _ = wait(list(steps), timeout=0.1, return_when=FIRST_COMPLETED)
                for step in done:
                    what, sha = steps.pop(step)
                    answer = step.result()  # raises the step's error
                    if what == "file":
                        tell("asked", sha)
                        path, size = wanted[sha]
                        if answer is not None:
                            form, when, asked = answer
                            existing[sha] = (form, when)
                            if asked and known is not None:
                                known.remember(bucket, {cas_key(sha, form): when})
                            tracker.skip(size)
                            found(sha, form, when, cas_key)
                        else:
                            prepare = judge.submit(
                                _prepare, sha, Path(path), size, folder, meter, effort, stream
                            )
                            steps[prepare] = ("prepare", sha)
                    elif what == "chunk":
                        tell("asked", sha)
                        if answer is not None:
                            form, when, asked = answer
                            have[sha] = (form, when)
                            if asked and known is not None:
                                known.remember(bucket, {chunk_key(sha, form): when})
                            tracker.skip(pieces[sha].size)
                            found(sha, form, when, chunk_key)
                        else:
                            steps[putters.submit(put_one, pieces[sha])] = ("put", sha)
                    elif what == "prepare":
                        _sha, body, encoding, checksum, level = answer
                        path, size = wanted[sha]
                        uploaded.append(sha)
                        sent_keys[sha] = cas_key(sha, encoding)
                        if encoding:
                            result.encodings[cas_key(sha)] = encoding
                            result.levels[cas_key(sha)] = level
                        if isinstance(body, _Streamed):  # compressed and sent as it was read
                            result.wire_bytes += body.wire
                            tell("sent", sha)
                            continue
                        tell("compressed", sha)
                        body_size = Path(body).stat().st_size
                        result.wire_bytes += body_size
                        extra: dict[str, Any] = {"Metadata": _metadata(sha, encoding)}
                        if body_size < part_size:  # one PUT: S3 checks the bytes against their hash
                            extra["ChecksumSHA256"] = sha256_checksum(checksum)
                        futures[sha] = transfers[sha] = manager.upload(
                            body,
                            bucket,
                            sent_keys[sha],
                            extra_args=extra,
                            subscribers=[
                                ProgressSubscriber(tracker, path, sha, size, size / max(body_size, 1), meter),
                                _DropBody(body, folder),
                            ],
                        )
                    elif what == "put":
                        chunk_forms[sha] = answer
                        tell("sent", sha)
                    else:  # "refresh": sha is the key refreshed
                        remember_written(known, bucket, [sha])
        except BaseException:
            halt.set()
            for step in steps:
                step.cancel()
            for transfer in futures.values():
                transfer.cancel()
            for pool in pools:  # a streamed part whose bytes are all sent ends on its own
                pool.shutdown(wait=pool is not parts, cancel_futures=True)
            manager.shutdown(cancel=True)
            squeezed.cleanup()
            raise
        for pool in pools:
            pool.shutdown()
        manager.shutdown()
        squeezed.cleanup()
        result.skipped = [sha for sha in wanted if sha in existing]
        result.bytes_skipped = sum(wanted[sha][1] for sha in result.skipped)
        result.chunks_skipped = [sha for sha in pieces if sha in have]
        result.bytes_skipped += sum(pieces[sha].size for sha in result.chunks_skipped)
        result.uploaded = uploaded
        result.chunks_uploaded = [sha for sha in pieces if sha not in have]
        for sha, (encoding, wire, level) in chunk_forms.items():
            result.wire_bytes += wire
            if encoding:
                result.encodings[chunk_key(sha)] = encoding
                result.levels[chunk_key(sha)] = level
        remember_written(known, bucket, sent_keys.values())
        remember_written(
            known, bucket, [chunk_key(sha, chunk_forms[sha][0]) for sha in result.chunks_uploaded]
        )
        result.chunk_bytes_sent = sum(pieces[sha].size for sha in result.chunks_uploaded)
        result.bytes_sent = tracker.total
    return result


def _transfer_result(transfer: Any, path: str) -> None:
    """A finished transfer's outcome: its error raised, S3's refusal of the bytes for their hash
    as NotAsHashed (the file changed behind the hash cache)."""
    try:
        transfer.result()
    except bce.ClientError as error:
        if not is_code(error, "BadDigest"):
            raise
        raise NotAsHashed(Path(path)) from error


JUDGE_THREADS = 2


def _cores(threads: int) -> int:
    """The cores `threads` compressing threads have (zlib lets go of the GIL)."""
    return max(1, min(threads, os.cpu_count() or 1))


# A compressible file of this size or more is compressed and sent at once, part by part (a
# multipart upload whose parts leave while the rest of the file is still being compressed);
# a smaller one is compressed whole into a temporary file first (a fraction of a second).
STREAM_BYTES = 12 * MiB
# The compressed bytes of a streamed file go in parts of this size (S3's smallest part; more for a
# file so large that S3's 10,000 parts would not hold it), at most STREAM_AHEAD parts waiting or
# in flight per file: memory stays at a few parts whatever the file's size.
STREAM_PART = 5 * MiB
STREAM_AHEAD = 3
MAX_PARTS = 10_000


class _StoppableBody(io.BytesIO):
    """A part's bytes, read by the HTTP client as it sends them: a read after `stop` (or the
    artist's cancel) raises, so a part in flight stops at once, as s3transfer's bodies do."""

    def __init__(self, data: bytes, stop: threading.Event, cancel: threading.Event | None) -> None:
        super().__init__(data)
        self.stop, self.cancel = stop, cancel

    def read(self, size: int | None = -1) -> bytes:
        if self.stop.is_set() or (self.cancel is not None and self.cancel.is_set()):
            raise Cancelled("Upload cancelled.")
        return super().read(size)


@dataclass(frozen=True)
class _Streamed:
    """A file already sent by `_stream_compressed`: the compressed object's size and level."""

    wire: int
    level: int


def _prepare(
    sha: str,
    path: Path,
    size: int,
    folder: Path,
    meter: LinkMeter,
    effort: compression.Effort | None = None,
    stream: Callable[[str, Path, int, int], _Streamed] | None = None,
) -> tuple[str, str | _Streamed, str, str, int]:
    """How one file goes: (sha, the body's path, encoding, the body's SHA-256, zlib level),
    judged against the link as measured so far and, where that pays, compressed into `folder`
    (on a judge thread). A large compressible file is compressed and sent by `stream` instead:
    its body is then the `_Streamed` it returned (sent already)."""
    level = compression.choose_file_level(path, meter.rate(), _cores(JUDGE_THREADS), effort)
    if level and stream is not None and size >= STREAM_BYTES:
        return sha, stream(sha, path, size, level), compression.ZLIB, "", level
    if level:
        packed = _compressed_copy(path, sha, size, folder, level)
        if packed is not None:
            return sha, str(packed.path), compression.ZLIB, packed.sha256, level
    return sha, str(path), "", sha, 0


def _stream_compressed(
    s3: Any,
    bucket: str,
    sha: str,
    path: Path,
    size: int,
    level: int,
    *,
    senders: ThreadPoolExecutor,
    tracker: ProgressTracker,
    meter: LinkMeter,
    cancel: threading.Event | None,
    stop: threading.Event,
    compressed: Callable[[], None] = lambda: None,
) -> _Streamed:
    """Compress `path` at `level` and send it to cas/<sha>.zlib as it is compressed: a multipart
    upload, each part sent (on `senders`) as soon as it is full, with its SHA-256 for S3 to check,
    while the next one is compressed. The bytes read are checked against the content address
    before the upload is completed; on any failure (or cancel, or `stop`: the rest of the upload
    failed) it is aborted, so nothing is ever stored under an address that is not its bytes'.
    Its sample said it compresses: it goes compressed even where the whole saves less after all
    (what is sent cannot be taken back; the machine inflates it all the same)."""

    def stopped() -> bool:
        return stop.is_set() or (cancel is not None and cancel.is_set())

    key = cas_key(sha, compression.ZLIB)
    part_size = max(STREAM_PART, math.ceil(size / (MAX_PARTS - 1)))
    upload_id = s3.create_multipart_upload(
        Bucket=bucket, Key=key, Metadata=_metadata(sha, compression.ZLIB), ChecksumAlgorithm="SHA256"
    )["UploadId"]
    slots = threading.Semaphore(STREAM_AHEAD)
    parts: list[Future[dict[str, Any]]] = []
    wire = 0

    def send(number: int, body: bytes, stands_for: int) -> dict[str, Any]:
        try:
            if stopped():
                raise Cancelled("Upload cancelled.")
            checksum = sha256_checksum(hashlib.sha256(body).hexdigest())
            began = meter.begin()
            try:
                reply = s3.upload_part(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=_StoppableBody(body, stop, cancel),
                    ChecksumSHA256=checksum,
                )
            except BaseException:
                meter.end(began, 0)
                raise
            meter.end(began, len(body))
            tracker.add(str(path), sha, size, stands_for)
            return {"PartNumber": number, "ETag": reply["ETag"], "ChecksumSHA256": checksum}
        finally:
            slots.release()
            if stopped():  # a part that ended after the upload was aborted: abort it again (S3's advice)
                abort()

    def abort() -> None:
        with contextlib.suppress(Exception):
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)

    def answered(part: Future[dict[str, Any]]) -> dict[str, Any]:
        while True:  # a part whose bytes are all on their way cannot be stopped: it is not waited for
            try:
                return part.result(timeout=0.1)
            except FutureTimeout:
                if stopped():
                    raise Cancelled("Upload cancelled.") from None

    def hand_over(body: bytes, stands_for: int) -> None:
        nonlocal wire
        while not slots.acquire(timeout=0.1):  # the senders are behind: wait for a slot
            if stopped():
                raise Cancelled("Upload cancelled.")
            for part in parts:
                if part.done():
                    part.result()  # a failed part fails the file now
        wire += len(body)
        try:
            parts.append(senders.submit(send, len(parts) + 1, body, stands_for))
        except BaseException:
            slots.release()
            raise

    try:
        squeeze = zlib.compressobj(level)
        read = hashlib.sha256()
        pending, consumed = bytearray(), 0
        with open(path, "rb") as src:
            for block in iter(lambda: src.read(MiB), b""):
                if stopped():
                    raise Cancelled("Upload cancelled.")
                read.update(block)
                pending += squeeze.compress(block)
                consumed += len(block)
                if len(pending) >= part_size:
                    hand_over(bytes(pending), consumed)
                    pending, consumed = bytearray(), 0
        pending += squeeze.flush()
        if read.hexdigest() != sha:
            raise NotAsHashed(path)
        compressed()  # read and compressed to its end: what is left is the last part
        hand_over(bytes(pending), consumed)
        done = [answered(part) for part in parts]
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
        )
    except BaseException:
        for part in parts:
            part.cancel()
        abort()
        raise
    return _Streamed(wire, level)


def _compressed_copy(
    path: Path, sha: str, size: int, folder: Path, level: int = compression.LEVEL
) -> compression.Compressed | None:
    """A compressed copy of `path` in `folder`, or None when it saves too little after all (the
    sample judged wrongly): then the file goes as it is. The bytes read are checked against the
    content address, since S3's check is now of the compressed copy, not of the file."""
    packed = compression.compress_file(path, folder / sha, level=level)
    if packed.source_sha256 != sha:
        packed.path.unlink(missing_ok=True)
        raise NotAsHashed(path)
    if packed.size > (1 - compression.MIN_SAVING) * size:
        packed.path.unlink(missing_ok=True)
        return None
    return packed


def sha256_checksum(sha: str) -> str:
    """The SHA-256 as S3 takes it (`x-amz-checksum-sha256`, base64): S3 computes the body's own
    and refuses the PUT (400 BadDigest) when they differ, so no bytes are ever stored under an
    address that is not theirs. A multipart upload cannot carry it: S3 keeps a full-object
    checksum of a multipart upload for the CRC algorithms only (a SHA-256 there is of the parts'
    checksums), so a file of a part or more is checked by the machine on download instead."""
    return base64.b64encode(bytes.fromhex(sha)).decode()


class NotAsHashed(CloudError):
    """S3 refused a file's bytes for its hash: the file changed after it was hashed, though its
    size and modification time say it did not (a tool that restores the time, or a copy that
    keeps it), so the local hash cache gave the old hash. `path`: the file, to hash afresh."""

    def __init__(self, path: Path | None) -> None:
        name = path.name if path is not None else "A file of the scene"
        super().__init__(
            f"{name} is not the file that was hashed: it changed, and kept its size and time.",
            "Render in Cloud again: the file is read afresh, and nothing else is sent twice.",
            code=ErrorCode.INPUT_CHANGED,
            detail=str(path or ""),
        )
        self.path = path


def _chunk_sender(
    s3: Any,
    bucket: str,
    tracker: ProgressTracker,
    cancel: threading.Event | None,
    meter: LinkMeter,
    effort: compression.Effort | None,
    cores: int,
) -> Callable[[ChunkSource], tuple[str, int, int]]:
    """What PUTs one chunk (a few MiB: one request, its bytes read from the file and checked
    against the hash the pack gave it, so bytes that changed since are never stored under it),
    compressed where that pays, at the level the link calls for (S3 checks the body sent; the
    address stays the chunk's own hash). It returns (encoding, bytes sent, zlib level). Run on a
    few threads: memory stays at a few chunks."""

    def one(piece: ChunkSource) -> tuple[str, int, int]:
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
        body, encoding, checksum = data, "", piece.sha256
        level = compression.choose_bytes_level(data, meter.rate(), cores, effort)
        if level:
            squeezed = compression.compress_bytes(data, level)
            if len(squeezed) <= (1 - compression.MIN_SAVING) * len(data):
                body, encoding = squeezed, compression.ZLIB
                checksum = hashlib.sha256(squeezed).hexdigest()
            else:
                level = 0
        began = meter.begin()
        try:
            s3.put_object(
                Bucket=bucket,
                Key=chunk_key(piece.sha256, encoding),
                Body=body,
                Metadata=_metadata(piece.sha256, encoding),
                ChecksumSHA256=sha256_checksum(checksum),
            )
        except BaseException:
            meter.end(began, 0)
            raise
        meter.end(began, len(body))
        tracker.add(str(piece.path), piece.sha256, piece.size, piece.size)
        return encoding, len(body), level

    return one


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


def transfer_config(part_size: int, max_concurrency: int) -> TransferConfig:
    return TransferConfig(
        multipart_threshold=part_size,
        multipart_chunksize=part_size,
        max_request_concurrency=max_concurrency,
    )


def wait_for_transfers(
    futures: dict[str, Any], cancel: threading.Event | None, ended: threading.Event
) -> None:
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
