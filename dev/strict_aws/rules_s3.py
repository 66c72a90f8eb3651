"""S3 limits moto does not keep: key length, checksums and Content-MD5, the 1,000-key page,
user metadata size, the 5 GB single PUT, and conditional writes that lose a race (409)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import zlib
from collections.abc import Callable

from .model import AwsRequest, Refusal, Rule
from .rules_common import header
from .rules_post import post_upload

KEY_DOC = (
    'Amazon S3 User Guide, "Naming Amazon S3 objects": '
    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html"
)
CHECKSUM_DOC = (
    'Amazon S3 User Guide, "Checking object integrity in Amazon S3": '
    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html; "
    'Amazon S3 API Reference, "PutObject" (Content-MD5): '
    "https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html"
)
LIST_DOC = (
    'Amazon S3 API Reference, "ListObjectsV2" (MaxKeys: "returns up to 1,000 key names"): '
    "https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html"
)
CONDITIONAL_DOC = (
    'Amazon S3 User Guide, "Add preconditions to S3 operations with conditional requests" / '
    '"How to prevent object overwrites with conditional writes" (409 ConditionalRequestConflict): '
    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html"
)
METADATA_DOC = (
    'Amazon S3 User Guide, "Working with object metadata" (user-defined metadata is limited to 2 KB): '
    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingMetadata.html"
)
UPLOAD_SIZE_DOC = (
    'Amazon S3 User Guide, "Uploading objects" (up to 5 GB in a single PUT): '
    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/upload-objects.html"
)

MAX_KEY_BYTES = 1024
MAX_LIST_KEYS = 1000
MAX_USER_METADATA_BYTES = 2048
MAX_SINGLE_PUT = 5 * 1024**3
WRITES_WITH_KEY = ("PutObject", "CreateMultipartUpload", "CopyObject")


class KeyLength:
    """An object key over 1,024 bytes of UTF-8 (PutObject, CreateMultipartUpload, CopyObject and
    a presigned POST's key once `${filename}` is replaced)."""

    name = "s3-key-length"
    doc = KEY_DOC

    def check(self, request: AwsRequest) -> Refusal | None:
        if request.service != "s3":
            return None
        upload = post_upload(request)
        if upload is not None:
            key = upload.key
        elif request.operation in WRITES_WITH_KEY and request.key is not None:
            key = request.key
        else:
            return None
        if len(key.encode("utf-8")) > MAX_KEY_BYTES:
            return Refusal(400, "KeyTooLongError", "Your key is too long")
        return None


def _crc32(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


def _crt(name: str) -> Callable[[bytes], bytes] | None:
    """CRC32C and CRC64NVME need awscrt (botocore uses it for them too); without it they are
    not checked here rather than checked wrongly."""
    try:
        from awscrt import checksums  # type: ignore[import-not-found]
    except ImportError:
        return None
    if name == "crc32c":
        return lambda data: int(checksums.crc32c(data)).to_bytes(4, "big")
    return lambda data: int(checksums.crc64nvme(data)).to_bytes(8, "big")


DIGESTS: dict[str, Callable[[bytes], bytes] | None] = {
    "crc32": _crc32,
    "sha1": lambda data: hashlib.sha1(data, usedforsecurity=False).digest(),
    "sha256": lambda data: hashlib.sha256(data).digest(),
    "crc32c": _crt("crc32c"),
    "crc64nvme": _crt("crc64nvme"),
}


def decode_aws_chunked(body: bytes) -> tuple[bytes, dict[str, str]]:
    """The payload and trailing headers of an `aws-chunked` body (botocore's trailing checksums
    over HTTPS): `<hex size>[;chunk-signature=...]\\r\\n<data>\\r\\n` ... `0\\r\\n<trailers>\\r\\n`."""
    payload = bytearray()
    trailers: dict[str, str] = {}
    at = 0
    while at < len(body):
        end = body.index(b"\r\n", at)
        size = int(body[at:end].split(b";")[0], 16)
        at = end + 2
        if size == 0:
            for line in body[at:].split(b"\r\n"):
                if b":" in line:
                    name, value = line.split(b":", 1)
                    trailers[name.strip().lower().decode()] = value.strip().decode()
            break
        payload += body[at : at + size]
        at += size + 2
    return bytes(payload), trailers


def _payload(request: AwsRequest) -> tuple[bytes, dict[str, str]]:
    encoding = (header(request, "content-encoding") or "").lower()
    sha = header(request, "x-amz-content-sha256") or ""
    if "aws-chunked" in encoding or sha.startswith("STREAMING-"):
        try:
            return decode_aws_chunked(request.body)
        except ValueError:
            return request.body, {}
    return request.body, {}


def checksum_refusal(algorithm: str, claimed: str, data: bytes) -> Refusal | None:
    """BadDigest when the base64 `claimed` checksum is not the data's; InvalidRequest when it is
    not a checksum of that algorithm at all."""
    digest = DIGESTS.get(algorithm)
    if digest is None:
        return None
    expected = digest(data)
    try:
        given = base64.b64decode(claimed, validate=True)
    except (binascii.Error, ValueError):
        given = b""
    if len(given) != len(expected):
        return Refusal(400, "InvalidRequest", f"Value for x-amz-checksum-{algorithm} header is invalid.")
    if given != expected:
        return Refusal(
            400, "BadDigest", f"The {algorithm.upper()} you specified did not match the calculated checksum."
        )
    return None


class Checksums:
    """A body that does not match its `x-amz-checksum-*` header or trailer, or its Content-MD5
    (moto stores the claimed checksum without computing it, and ignores Content-MD5), and a
    presigned POST whose `x-amz-checksum-*` field is not its file's."""

    name = "s3-checksums"
    doc = CHECKSUM_DOC

    def check(self, request: AwsRequest) -> Refusal | None:
        if request.service != "s3":
            return None
        upload = post_upload(request)
        if upload is not None:
            for algorithm in DIGESTS:
                claimed = upload.fields.get(f"x-amz-checksum-{algorithm}")
                if claimed is not None:
                    refusal = checksum_refusal(algorithm, claimed, request.post_file or b"")
                    if refusal is not None:
                        return refusal
            return None
        # CompleteMultipartUpload's checksum is the whole object's, not its XML body's; a copy
        # has no body of its own.
        if (
            request.method not in ("PUT", "POST")
            or request.operation == "CompleteMultipartUpload"
            or ("uploadId" in request.query and request.method == "POST")
            or header(request, "x-amz-copy-source") is not None
        ):
            return None
        data, trailers = _payload(request)
        for algorithm in DIGESTS:
            name = f"x-amz-checksum-{algorithm}"
            claimed = trailers.get(name) or header(request, name)
            if claimed:
                refusal = checksum_refusal(algorithm, claimed, data)
                if refusal is not None:
                    return refusal
        return _md5_refusal(header(request, "content-md5"), data)


def _md5_refusal(claimed: str | None, data: bytes) -> Refusal | None:
    if claimed is None:
        return None
    try:
        given = base64.b64decode(claimed, validate=True)
    except (binascii.Error, ValueError):
        given = b""
    if len(given) != 16:
        return Refusal(400, "InvalidDigest", "The Content-MD5 you specified is not valid.")
    if given != hashlib.md5(data, usedforsecurity=False).digest():
        return Refusal(400, "BadDigest", "The Content-MD5 you specified did not match what we received.")
    return None


class ListPage:
    """ListObjects(V2) answers at most 1,000 keys whatever `max-keys` asks; moto answers as many
    as asked. Nothing to refuse: `adjust` lowers `max-keys` to 1,000 before moto sees it (a
    presigned URL's signature was checked on the request as it came)."""

    name = "s3-list-page"
    doc = LIST_DOC

    def check(self, request: AwsRequest) -> Refusal | None:
        return None

    def adjust(self, request: AwsRequest) -> None:
        if request.service != "s3" or request.operation not in ("ListObjectsV2", "ListObjects"):
            return
        asked = request.query.get("max-keys")
        if not asked:
            return
        try:
            too_many = int(asked[0]) > MAX_LIST_KEYS
        except ValueError:
            return
        if too_many:
            request.query["max-keys"] = [str(MAX_LIST_KEYS)]
            request.params["max-keys"] = str(MAX_LIST_KEYS)


class MetadataSize:
    """User-defined metadata (`x-amz-meta-*`) over 2 KB: the UTF-8 bytes of every name (without
    the prefix) and value together."""

    name = "s3-metadata-size"
    doc = METADATA_DOC

    def check(self, request: AwsRequest) -> Refusal | None:
        if request.service != "s3":
            return None
        upload = post_upload(request)
        if upload is not None:
            pairs = upload.fields.items()
        elif request.operation in WRITES_WITH_KEY:
            pairs = request.headers.items()
        else:
            return None
        size = sum(
            len(name[len("x-amz-meta-") :].encode()) + len(value.encode())
            for name, value in pairs
            if name.lower().startswith("x-amz-meta-")
        )
        if size > MAX_USER_METADATA_BYTES:
            return Refusal(
                400, "MetadataTooLarge", "Your metadata headers exceed the maximum allowed metadata size."
            )
        return None


class SinglePutSize:
    """One PutObject over 5 GB (larger objects need a multipart upload)."""

    name = "s3-single-put-size"
    doc = UPLOAD_SIZE_DOC

    def check(self, request: AwsRequest) -> Refusal | None:
        if request.service != "s3" or request.operation != "PutObject":
            return None
        declared = header(request, "x-amz-decoded-content-length") or header(request, "content-length")
        try:
            size = int(declared) if declared else len(request.body)
        except ValueError:
            size = len(request.body)
        if size > MAX_SINGLE_PUT:
            return Refusal(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
        return None


class ConditionalConflicts:
    """409 ConditionalRequestConflict, which AWS answers a conditional write that races another
    one on the same key, made to happen on demand: off (`conflict_every_n = 0`) until the server's
    `/strict-api/conflicts?every=N` calls `set_conflicts(N)`; then the N-th, 2N-th, ... PutObject
    or CompleteMultipartUpload carrying If-None-Match or If-Match is answered 409 and not written."""

    name = "s3-conditional-conflict"
    doc = CONDITIONAL_DOC

    def __init__(self) -> None:
        self.conflict_every_n = 0
        self._seen = 0
        self._lock = threading.Lock()

    def set_conflicts(self, every: int) -> None:
        """Answer every `every`-th conditional write 409 from now on (0: never); counts afresh."""
        with self._lock:
            self.conflict_every_n = max(0, int(every))
            self._seen = 0

    def reset(self) -> None:
        self.set_conflicts(0)

    def seen(self) -> int:
        """Conditional writes counted since the switch was last set (every N-th was a 409)."""
        with self._lock:
            return self._seen

    def check(self, request: AwsRequest) -> Refusal | None:
        if request.service != "s3" or request.operation not in ("PutObject", "CompleteMultipartUpload"):
            return None
        if header(request, "if-none-match") is None and header(request, "if-match") is None:
            return None
        with self._lock:
            if self.conflict_every_n <= 0:
                return None
            self._seen += 1
            if self._seen % self.conflict_every_n:
                return None
        return Refusal(
            409,
            "ConditionalRequestConflict",
            "A conflicting conditional operation is currently in progress against this resource. Try again.",
        )


RULES: list[Rule] = [
    KeyLength(),
    Checksums(),
    MetadataSize(),
    SinglePutSize(),
    ListPage(),
    ConditionalConflicts(),
]
