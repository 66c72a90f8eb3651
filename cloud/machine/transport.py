"""How the render machine talks to the outside: presigned HTTP with retries, the job log,
status.json and the spot interruption notice.

Shipped next to supervisor.py; Python 3.9+, standard library only.
"""

from __future__ import annotations

import collections
import hashlib
import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from xml.etree import ElementTree

from .inflate import Inflater, Oversize, compressed_bound, inflate_bytes

LOG_CHUNK_BYTES = 64 * 1024
TAIL_LINES = 50
RETRY_ATTEMPTS = int(os.environ.get("CLOUD_RENDER_RETRY_ATTEMPTS", "8"))
# Uploads refused this many times in a row (403, or 400 for an expired token) mean the job's
# POST policy is dead: the credentials that signed it expired. Nothing rendered can be saved.
REFUSALS_BEFORE_STOP = int(os.environ.get("CLOUD_RENDER_REFUSALS_BEFORE_STOP", "3"))
# What S3 says when a presigned request outlived its signature or the credentials behind it.
EXPIRED_MARKERS = ("ExpiredToken", "Request has expired", "Policy expired", "TokenRefreshRequired")

_OPENER = urllib.request.build_opener()  # honours http_proxy, like every other tool on the machine
_IMDS_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # IMDS is never proxied


class JobFailed(Exception):
    """A failure with a kind the add-on understands and a one-line cause for the artist."""

    def __init__(self, kind: str, cause: str) -> None:
        super().__init__(cause)
        self.kind = kind
        self.cause = cause


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---------------------------------------------------------------- HTTP


def http_request(
    method: str,
    url: str,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
    opener: urllib.request.OpenerDirector = _OPENER,
) -> bytes:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with opener.open(request, timeout=timeout) as response:
        return bytes(response.read())


def with_retries(
    what: str,
    fn: Callable[[], Any],
    say: Callable[[str], None],
    attempts: int = RETRY_ATTEMPTS,
) -> Any:
    """Call `fn` until it works; network errors and 5xx are retried with backoff, 4xx are not."""
    delay = 1.0
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code != 429:
                raise
            error: Exception = exc
        except (OSError, http.client.HTTPException) as exc:
            error = exc
        if attempt == attempts:
            raise error
        say(f"{what} failed ({error}); retry {attempt}/{attempts - 1} in {delay:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 20.0)
    raise AssertionError("unreachable")


def list_pages(urls: list[str], what: str, say: Callable[[str], None]) -> dict[str, str]:
    """Every key (its last path part) -> its ETag (no quotes), over the pages of a listing
    (presign.presign_list_pages: a presigned URL cannot ask for a next page by itself)."""
    found: dict[str, str] = {}
    for url in urls:

        def get(url: str = url) -> bytes:
            return http_request("GET", url)

        body = with_retries(what, get, say)
        key = ""
        for el in ElementTree.fromstring(body).iter():
            tag = el.tag.rsplit("}", 1)[-1]
            if tag == "Key":
                key = (el.text or "").rsplit("/", 1)[-1]
            elif tag == "ETag" and key:
                found[key] = (el.text or "").strip('"')
                key = ""
        if key:  # a listing without ETags still names the key
            found[key] = ""
    return found


def fetch_control(url: str) -> dict[str, Any] | None:
    """A control file the add-on writes (control/go.json), or None while it is not there yet.

    403 counts as "not yet" too: S3 answers a presigned GET of a missing key with 403 when the
    signer may not list the bucket. Network errors propagate, for the caller to retry later.
    """
    try:
        body = http_request("GET", url, timeout=15)
    except urllib.error.HTTPError as exc:
        if exc.code in (403, 404):
            return None
        raise
    data = json.loads(body.decode("utf-8") or "null")
    return data if isinstance(data, dict) else None


def multipart(fields: dict[str, str], filename: str, body: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body for an S3 presigned POST; the file part must come last."""
    boundary = uuid.uuid4().hex
    out = []
    for name, value in fields.items():
        out.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    out.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
    )
    out.append(body)
    out.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


def error_body(exc: urllib.error.HTTPError, limit: int = 4096) -> str:
    """The start of an HTTP error's body (S3 explains itself there), or '' when unreadable."""
    try:
        return bytes(exc.read(limit)).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException, ValueError, AttributeError, TypeError):
        return ""


def refusal(code: int, body: str) -> str:
    """Why S3 refused a presigned request for good, in a few words, or '' when it did not.

    403 is a refusal whatever the body (AccessDenied: policy expired, signature no longer valid,
    credentials revoked); 400 only when S3 names an expired token or request.
    """
    expired = next((marker for marker in EXPIRED_MARKERS if marker in body), "")
    if code == 403:
        return f"HTTP 403 {expired}".strip()
    if code == 400 and expired:
        return f"HTTP 400 {expired}"
    return ""


class Poster:
    """Writes objects under the job's output prefix through its presigned POST.

    It counts refusals: after `REFUSALS_BEFORE_STOP` in a row (no success between them) it sets
    `denied`, which the supervisor watches to stop rendering frames that could not be saved.
    """

    def __init__(
        self,
        url: str,
        fields: dict[str, str],
        prefix: str,
        opener: urllib.request.OpenerDirector | None = None,
    ) -> None:
        self.url = url
        self.fields = dict(fields)
        self.prefix = prefix
        self.opener = opener or _OPENER
        self.refusals = 0
        self.refusal = ""  # the last refusal, in a few words
        self.denied = threading.Event()
        self._lock = threading.Lock()

    def put(self, relative_key: str, body: bytes, timeout: float = 60) -> None:
        fields = dict(self.fields)
        fields["key"] = self.prefix + relative_key
        data, content_type = multipart(fields, relative_key.rsplit("/", 1)[-1], body)
        try:
            http_request(
                "POST", self.url, data, {"Content-Type": content_type}, timeout=timeout, opener=self.opener
            )
        except urllib.error.HTTPError as exc:
            reason = refusal(exc.code, error_body(exc))
            if reason:
                with self._lock:
                    self.refusals += 1
                    self.refusal = reason
                    if self.refusals >= REFUSALS_BEFORE_STOP:
                        self.denied.set()
            raise
        with self._lock:
            self.refusals = 0


# ---------------------------------------------------------------- log, status, spot


class JobLog:
    """The job log: a local file, the last lines for error.json, and numbered chunks in the bucket."""

    def __init__(self, path: str, poster: Poster | None, chunk_s: float, first_seq: int = 1) -> None:
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115
        self.poster = poster
        self.chunk_s = chunk_s
        self.seq = first_seq
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.pending: list[str] = []
        self.pending_bytes = 0
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="log-shipper", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def write(self, line: str) -> None:
        line = line.rstrip("\r\n")
        with self.lock:
            self.file.write(line + "\n")
            self.file.flush()
            self.tail.append(line)
            self.pending.append(line + "\n")
            self.pending_bytes += len(line) + 1
            if self.pending_bytes >= LOG_CHUNK_BYTES:
                self.wake.set()
        print(line, flush=True)

    def say(self, message: str) -> None:
        """A supervisor line, marked so it reads apart from Blender's own output."""
        self.write(f"[cloud-render {time.strftime('%H:%M:%S', time.gmtime())}] {message}")

    def ship(self) -> bool:
        """Upload what is pending as the next numbered chunk; on failure it stays pending."""
        with self.lock:
            if not self.pending or self.poster is None:
                return True
            text = "".join(self.pending)
            count = len(self.pending)
            seq = self.seq
        try:
            self.poster.put(f"logs/{seq:06d}.log", text.encode("utf-8"), timeout=20)
        except (OSError, http.client.HTTPException):
            return False
        with self.lock:
            del self.pending[:count]
            self.pending_bytes = sum(len(p) for p in self.pending)
            self.seq += 1
        return True

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.wake.wait(self.chunk_s)
            self.wake.clear()
            self.ship()

    def close(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.thread.join(timeout=30)
        for _ in range(5):
            if self.ship() or (self.poster is not None and self.poster.denied.is_set()):
                break
            time.sleep(2)
        self.file.close()


class StatusWriter:
    """status.json: rewritten every heartbeat and on every state change."""

    def __init__(self, poster: Poster, interval_s: float, fields: dict[str, Any]) -> None:
        self.poster = poster
        self.interval_s = interval_s
        self.fields = dict(fields)
        self.fields["seq"] = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="status", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def update(self, push: bool = False, soon: bool = False, **fields: Any) -> None:
        """`push`: write status.json now (this thread waits); `soon`: the heartbeat thread
        writes it at once, and this thread goes on (a machine handing out its next frame)."""
        with self.lock:
            self.fields.update(fields)
        if push:
            self.push()
        elif soon:
            self.wake.set()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            self.fields["seq"] += 1
            self.fields["heartbeat"] = now_iso()
            self.fields["heartbeat_epoch"] = round(time.time(), 3)
            return json.loads(json.dumps(self.fields))

    def push(self) -> bool:
        body = json.dumps(self.snapshot(), indent=1, sort_keys=True).encode()
        try:
            self.poster.put("status.json", body, timeout=15)
            return True
        except (OSError, http.client.HTTPException):
            return False

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.wake.wait(self.interval_s)
            self.wake.clear()
            if self.stopping.is_set():
                return
            self.push()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.thread.join(timeout=20)


class SpotWatcher:
    """Polls IMDSv2 for a spot interruption notice (two minutes' warning on AWS)."""

    def __init__(self, base_url: str, interval_s: float) -> None:
        self.base_url = base_url
        self.interval_s = interval_s
        self.notice: dict[str, Any] | None = None
        self.noticed = threading.Event()
        self.token = ""
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="spot", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def check(self) -> dict[str, Any] | None:
        if not self.token:
            self.token = http_request(
                "PUT",
                self.base_url + "/latest/api/token",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"},
                timeout=2,
                opener=_IMDS_OPENER,
            ).decode()
        try:
            body = http_request(
                "GET",
                self.base_url + "/latest/meta-data/spot/instance-action",
                headers={"X-aws-ec2-metadata-token": self.token},
                timeout=2,
                opener=_IMDS_OPENER,
            )
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                self.token = ""
            if exc.code in (401, 404):
                return None
            raise
        notice: dict[str, Any] = json.loads(body.decode() or "{}")
        return notice

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                notice = self.check()
            except (OSError, ValueError, http.client.HTTPException):
                notice = None  # no IMDS (not on EC2, or it hiccupped): try again next round
            if notice:
                self.notice = notice
                self.noticed.set()
                return
            self.stopping.wait(self.interval_s)


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checked(fetch: Callable[[], Any], say: Callable[[str], None], what: str) -> Any:
    """Run `fetch` (which raises ValueError on a checksum mismatch) with retries; turn every
    failure into a JobFailed that says what happened."""
    for attempt in range(3):
        try:
            return with_retries(f"download of {what}", fetch, say)
        except urllib.error.HTTPError as exc:
            body = error_body(exc)
            if exc.code in (400, 403) and any(marker in body for marker in EXPIRED_MARKERS):
                raise JobFailed(
                    "credentials_expired",
                    f"The link to {what} has expired: the AWS sign-in that signed it ran out.",
                ) from exc
            if exc.code in (403, 404):
                raise JobFailed("missing_file", f"The file {what} is missing from the bucket.") from exc
            raise JobFailed("download", f"Downloading {what} failed (HTTP {exc.code}).") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise JobFailed("download", f"Downloading {what} failed: {exc}.") from exc
        except Oversize as exc:
            raise JobFailed(
                "download",
                f"{what} in the bucket is not the file that was submitted ({exc}): refused before "
                "it could fill the disk. Submit the job again.",
            ) from None
        except ValueError:
            if attempt == 2:
                raise JobFailed(
                    "download", f"{what} arrived damaged three times (checksum mismatch)."
                ) from None
            say(f"{what} arrived damaged (checksum mismatch); downloading it again")
    raise AssertionError("unreachable")


def download(
    url: str,
    dest: str,
    sha256: str,
    say: Callable[[str], None],
    what: str,
    encoding: str = "",
    size: int = -1,
) -> None:
    """Fetch `url` to `dest` through a temporary file, checking the SHA-256 when given.
    `encoding` "zlib": the body is inflated on the way to the disk, never past `size` bytes,
    and the SHA-256 is of the inflated bytes (the input's content address)."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    partial = dest + ".part"
    if encoding and (encoding != "zlib" or size < 0):
        raise JobFailed("contract", f"{what} is stored as {encoding!r} with no size to bound it.")

    def fetch() -> None:
        digest = hashlib.sha256()
        inflater = Inflater(size) if encoding else None
        with _OPENER.open(url, timeout=60) as response, open(partial, "wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                if inflater is not None:
                    block = inflater.feed(block)
                digest.update(block)
                out.write(block)
        if inflater is not None:
            inflater.finish()
        if sha256 and digest.hexdigest() != sha256:
            raise ValueError(f"checksum mismatch for {what}")

    _checked(fetch, say, what)
    os.replace(partial, dest)


CHUNK_THREADS = 8  # parallel chunk downloads: each is one small GET, latency-bound


def download_chunks(
    chunks: list[dict[str, Any]], dest: str, sha256: str, size: int, say: Callable[[str], None], what: str
) -> None:
    """Rebuild a chunked input: each chunk fetched (in parallel), checked against its SHA-256
    and written at its offset in `dest`.part (a chunk stored compressed, `encoding` "zlib", is
    inflated first, never past its size); then the whole file is checked against `sha256`
    before it takes its name, so Blender never sees a file that differs from the artist's."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    partial = dest + ".part"
    offsets: dict[str, list[int]] = {}  # the same bytes twice in a file are fetched once
    sizes: dict[str, int] = {}
    urls: dict[str, str] = {}
    encodings: dict[str, str] = {}
    position = 0
    for chunk in chunks:
        offsets.setdefault(chunk["sha256"], []).append(position)
        sizes[chunk["sha256"]] = int(chunk["size"])
        if chunk["sha256"] not in urls:
            urls[chunk["sha256"]] = chunk["url"]
            encodings[chunk["sha256"]] = chunk.get("encoding") or ""
        position += int(chunk["size"])
    lock = threading.Lock()
    with open(partial, "wb") as out:
        out.truncate(position)

        def one(digest: str) -> None:
            name = f"{what} (chunk {digest[:12]})"

            def fetch() -> bytes:
                limit = sizes[digest]
                if encodings[digest]:  # a body longer than any compression of the chunk is refused
                    limit = compressed_bound(sizes[digest])
                with _OPENER.open(urls[digest], timeout=60) as response:
                    data = response.read(limit + 1)
                if encodings[digest]:
                    if len(data) > limit:
                        raise Oversize(f"its compressed body passed {limit} bytes")
                    data = inflate_bytes(data, sizes[digest])
                if len(data) != sizes[digest] or hashlib.sha256(data).hexdigest() != digest:
                    raise ValueError(f"checksum mismatch for {name}")
                return bytes(data)

            data = _checked(fetch, say, name)
            with lock:
                for offset in offsets[digest]:
                    out.seek(offset)
                    out.write(data)

        with ThreadPoolExecutor(max_workers=CHUNK_THREADS) as pool:
            for future in [pool.submit(one, digest) for digest in offsets]:
                future.result()
    if position != size or sha256_file(partial) != sha256:
        os.unlink(partial)
        raise JobFailed(
            "download",
            f"{what} rebuilt from its {len(chunks)} chunks does not match the file that was submitted "
            "(checksum mismatch): the upload is damaged. Submit the job again.",
        )
    os.replace(partial, dest)
