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
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
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


def _stored_key(key: Callable[[str, str], str], forms: dict[str, str]) -> Callable[[str], str]:
    def stored(sha: str) -> str:
        return key(sha, forms[sha])

    return stored


def _other(encoding: str) -> str:
    return "" if encoding else compression.ZLIB


def stored_forms(
    s3: Any,
    bucket: str,
    preferred: dict[str, str],
    workers: int,
    key: Callable[[str, str], str],
    known: KnownObjects | None,
    refresh_after_s: float,
) -> dict[str, tuple[str, datetime]]:
    """Which objects exist already, in which form, written when: each is looked for in the form
    this computer would send now (`preferred`: sha -> encoding), then, for those not found, in
    the other (an object uploaded before compression existed, or one judged otherwise)."""
    found: dict[str, tuple[str, datetime]] = {}
    left = dict(preferred)
    if known is not None:  # seen lately in the other form: ask for that one first
        other = {key(sha, _other(form)): sha for sha, form in left.items()}
        for seen_key in known.trusted(bucket, list(other), refresh_after_s):
            left[other[seen_key]] = _other(left[other[seen_key]])
    for attempt in range(2):
        forms = {sha: encoding if attempt == 0 else _other(encoding) for sha, encoding in left.items()}
        if not forms:
            break
        stored = _stored_key(key, forms)
        seen = existing_objects(s3, bucket, list(forms), workers, stored, known, refresh_after_s)
        found.update({sha: (forms[sha], when) for sha, when in seen.items()})
        left = {sha: encoding for sha, encoding in left.items() if sha not in seen}
    return found


def _likely_forms(wanted: dict[str, tuple[str, int]], workers: int) -> dict[str, str]:
    """sha -> the form to look for each whole file in first, by its first bytes (read in
    parallel). The sample that decides how a file is sent is taken only for the files sent."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        forms = pool.map(lambda entry: compression.likely_form(entry[0]), wanted.values())
        return dict(zip(wanted, forms, strict=True))


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
) -> UploadResult:
    """Upload (local path, sha256, size) triples to cas/<sha256>, and the chunks of chunked
    files to cas/chunks/<sha256>, skipping what is there.

    Safe to call again after a failure: completed objects are found and skipped, so only
    unfinished files are sent again. Raises Cancelled within about a second of `cancel`.
    The link is measured as the bodies go (`link`, a fresh LinkMeter unless given: one kept
    from an earlier call knows the link from the start), and what is judged after that is
    compressed at the level the link calls for (compression.choose_level).
    """
    meter = link if link is not None else LinkMeter()
    effort = compression.Effort()  # level 6 against level 1 on this call's data
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
        preferred = _likely_forms(wanted, SMALL_REQUEST_CONCURRENCY)
        existing = stored_forms(s3, bucket, preferred, SMALL_REQUEST_CONCURRENCY, cas_key, known, refresh_s)
        # Chunks are many: more HEADs in flight than for whole files. A chunk of a plain .blend
        # mostly compresses, so its compressed form is asked first.
        have = stored_forms(
            s3,
            bucket,
            dict.fromkeys(pieces, compression.ZLIB),
            SMALL_REQUEST_CONCURRENCY * 4,
            chunk_key,
            known,
            refresh_s,
        )
        now = datetime.now(UTC)
        for found, key in ((existing, cas_key), (have, chunk_key)):
            for sha, (encoding, when) in found.items():
                if encoding:
                    result.encodings[key(sha)] = encoding
                if (now - when).total_seconds() > refresh_s:
                    refresh_object(s3, bucket, sha, key, encoding)
                    remember_written(known, bucket, [key(sha, encoding)])
        todo = {sha: entry for sha, entry in wanted.items() if sha not in existing}
        result.skipped = [sha for sha in wanted if sha in existing]
        result.bytes_skipped = sum(wanted[sha][1] for sha in result.skipped)
        new_pieces = [piece for sha, piece in pieces.items() if sha not in have]
        result.chunks_skipped = [sha for sha in pieces if sha in have]
        result.bytes_skipped += sum(pieces[sha].size for sha in result.chunks_skipped)
        tracker = ProgressTracker(
            sum(size for _path, size in todo.values()) + sum(p.size for p in new_pieces), progress, cancel
        )
        manager = TransferManager(s3, transfer_config(part_size, max_concurrency))
        futures = {}
        squeezed = tempfile.TemporaryDirectory(prefix="cloud-render-zlib-")
        sent_keys: dict[str, str] = {}  # sha -> the key it was sent under
        # Each file sent is judged (magic bytes, then the sample; the guess above only picked
        # which key to ask for first) and, where that pays, compressed on two threads, and sent
        # as soon as it is ready: a file that goes as it is starts at once, while a large one is
        # still being compressed, so the uplink is busy from the start (bench/uplink.py).
        judge = ThreadPoolExecutor(max_workers=JUDGE_THREADS, thread_name_prefix="cloud-render-judge")
        folder = Path(squeezed.name)
        try:
            # Largest first: the long uploads start early and the small ones fill the gaps.
            order = sorted(todo.items(), key=lambda item: -item[1][1])
            ready = [
                judge.submit(_prepare, sha, Path(path), size, folder, meter, effort)
                for sha, (path, size) in order
            ]
            for done in as_completed(ready):
                sha, body, encoding, checksum, level = done.result()
                path, size = todo[sha]
                if encoding:
                    result.encodings[cas_key(sha)] = encoding
                    result.levels[cas_key(sha)] = level
                body_size = Path(body).stat().st_size
                result.wire_bytes += body_size
                extra: dict[str, Any] = {"Metadata": _metadata(sha, encoding)}
                if body_size < part_size:  # one PUT: S3 checks the bytes against their hash
                    extra["ChecksumSHA256"] = sha256_checksum(checksum)
                sent_keys[sha] = cas_key(sha, encoding)
                futures[sha] = manager.upload(
                    body,
                    bucket,
                    sent_keys[sha],
                    extra_args=extra,
                    subscribers=[
                        ProgressSubscriber(tracker, path, sha, size, size / max(body_size, 1), meter)
                    ],
                )
            chunk_forms = _put_chunks(
                s3, bucket, new_pieces, tracker, cancel, SMALL_REQUEST_CONCURRENCY, meter, effort
            )
            try:
                wait_for_transfers(futures, cancel, tracker.transfer_ended)
            except bce.ClientError as error:
                if not is_code(error, "BadDigest"):
                    raise
                failed = next((sha for sha, future in futures.items() if _refused_digest(future)), "")
                raise NotAsHashed(Path(todo[failed][0]) if failed else None) from error
        except BaseException:
            for future in futures.values():
                future.cancel()
            manager.shutdown(cancel=True)
            squeezed.cleanup()
            raise
        finally:
            judge.shutdown(cancel_futures=True)
        manager.shutdown()
        squeezed.cleanup()
        result.uploaded = list(futures)
        result.chunks_uploaded = [piece.sha256 for piece in new_pieces]
        for sha, (encoding, wire, level) in chunk_forms.items():
            result.wire_bytes += wire
            if encoding:
                result.encodings[chunk_key(sha)] = encoding
                result.levels[chunk_key(sha)] = level
        remember_written(known, bucket, sent_keys.values())
        remember_written(
            known, bucket, [chunk_key(sha, chunk_forms[sha][0]) for sha in result.chunks_uploaded]
        )
        result.chunk_bytes_sent = sum(piece.size for piece in new_pieces)
        result.bytes_sent = tracker.total
    return result


JUDGE_THREADS = 2


def _cores(threads: int) -> int:
    """The cores `threads` compressing threads have (zlib lets go of the GIL)."""
    return max(1, min(threads, os.cpu_count() or 1))


def _prepare(
    sha: str, path: Path, size: int, folder: Path, meter: LinkMeter, effort: compression.Effort | None = None
) -> tuple[str, str, str, str, int]:
    """How one file goes: (sha, the body's path, encoding, the body's SHA-256, zlib level),
    judged against the link as measured so far and, where that pays, compressed into `folder`
    (on a judge thread)."""
    level = compression.choose_file_level(path, meter.rate(), _cores(JUDGE_THREADS), effort)
    if level:
        packed = _compressed_copy(path, sha, size, folder, level)
        if packed is not None:
            return sha, str(packed.path), compression.ZLIB, packed.sha256, level
    return sha, str(path), "", sha, 0


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


def _refused_digest(future: Any) -> bool:
    if not future.done():
        return False
    try:
        future.result()
    except bce.ClientError as error:
        return is_code(error, "BadDigest")
    except BaseException:
        return False
    return False


def _put_chunks(
    s3: Any,
    bucket: str,
    pieces: Sequence[ChunkSource],
    tracker: ProgressTracker,
    cancel: threading.Event | None,
    workers: int,
    meter: LinkMeter | None = None,
    effort: compression.Effort | None = None,
) -> dict[str, tuple[str, int, int]]:
    """PUT each chunk (a few MiB: one request, its bytes read from the file and checked against
    the hash the pack gave it, so bytes that changed since are never stored under it), compressed
    where that pays, at the level the link calls for (S3 checks the body sent; the address stays
    the chunk's own hash). Returns sha -> (encoding, bytes sent, zlib level)."""
    forms: dict[str, tuple[str, int, int]] = {}
    meter = meter if meter is not None else LinkMeter()
    cores = _cores(workers)

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
        forms[piece.sha256] = (encoding, len(body), level)  # one writer per sha: pieces are distinct
        tracker.add(str(piece.path), piece.sha256, piece.size, piece.size)

    if not pieces:
        return forms
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
    return forms


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
