"""The objects in the artist's bucket: small JSON documents, bounded reads, listings, downloads,
deletion, and the presigned links through which the render machine reads and writes them.

A job's own data (spec, record, outputs) lives under `jobs/<id>/` and expires with the
bucket's lifecycle rule (cloud/aws/bucket_setup.py); inputs go up through cloud/aws/uploads.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.credentials import RefreshableCredentials

from ..errors import CloudError, ErrorCode
from ..machine.contract import InputChunk, InputFile, cas_key, chunk_key, job_prefix, out_prefix
from .error_rules import is_code, translating
from .presign import LIST_PAGE, presign_get, presign_list, presign_list_pages, presign_post
from .session import AwsSettings, client, client_config, make_session

MAX_PRESIGN_S = 7 * 24 * 3600  # SigV4 presigned URLs live at most 7 days
PRESIGN_MARGIN_S = 2 * 3600  # boot, install and download happen before the time cap starts counting
DEFAULT_OUTPUT_CAP = 5 * 1024**3  # largest single output object the instance may POST (S3's POST limit)
MiB = 1024 * 1024


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


def put_text(settings: AwsSettings, bucket: str, key: str, text: str, content_type: str = "") -> None:
    """Write a small text object (a Batch job's boot script, fetched by each child; the job's
    page, served as `content_type` text/html)."""
    extra = {"ContentType": content_type} if content_type else {}
    with translating("saving the job", region=settings.region):
        client(settings, "s3").put_object(Bucket=bucket, Key=key, Body=text.encode(), **extra)


class TooLarge(CloudError):
    """An object larger than the caller allows: it is not read."""


def etag(settings: AwsSettings, bucket: str, key: str) -> str | None:
    """An object's ETag (a HEAD: nothing read), or None when it does not exist."""
    with translating("reading the job", region=settings.region):
        try:
            reply = client(settings, "s3").head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            if is_code(exc, "NoSuchKey", "404", "NotFound"):
                return None
            raise
    return str(reply.get("ETag", "")).strip('"')


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


def get_link(settings: AwsSettings, bucket: str, key: str, expires_s: int, content_type: str = "") -> str:
    """A presigned GET of one object (the job spec, a worker script, the quote's go-ahead)."""
    return presign_get(client(settings, "s3"), bucket, key, expires_s, content_type)


def put_links(settings: AwsSettings, bucket: str, keys: Mapping[str, str], expires_s: int) -> dict[str, str]:
    """A presigned PUT per key (name -> key), each sent by a machine with If-None-Match: * (the
    claims of many machines: the first write wins)."""
    s3 = client(settings, "s3")
    return {
        name: s3.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s
        )
        for name, key in keys.items()
    }


def list_link(settings: AwsSettings, bucket: str, prefix: str, expires_s: int) -> str:
    """A presigned ListObjectsV2 of one prefix (the machine skips the frames already there)."""
    return presign_list(client(settings, "s3"), bucket, prefix, expires_s)


def list_page_links(
    settings: AwsSettings, bucket: str, prefix: str, names: list[str], expires_s: int, page: int = LIST_PAGE
) -> list[str]:
    """Presigned ListObjectsV2 pages that together list every key `prefix + name` that exists
    (cloud/aws/presign.presign_list_pages)."""
    return presign_list_pages(client(settings, "s3"), bucket, prefix, names, expires_s, page=page)


def presign_inputs(
    settings: AwsSettings,
    bucket: str,
    inputs: Iterable[tuple[str, str, int]],
    expires_s: int,
    chunks: Mapping[str, Sequence[tuple[str, int]]] | None = None,
    encodings: Mapping[str, str] | None = None,
) -> list[InputFile]:
    """Presigned GETs for (job-relative path, sha256, size) inputs; a path in `chunks` gets one
    per chunk (sha256, size) instead, in order. `encodings`: plain key -> "zlib" for the objects
    stored compressed (uploads.UploadResult.encodings): their link is of that form and their
    entry says so. The links travel in the job spec in the bucket (EC2's user-data holds only
    the spec's link: 16 KB would not hold hundreds of chunks)."""
    s3 = presign_client(settings)
    chunks = chunks or {}
    encodings = encodings or {}
    with translating("preparing the render machine's downloads", region=settings.region):
        found = []
        for path, sha, size in inputs:
            pieces = chunks.get(path) or ()
            if pieces:
                links = []
                for c, n in pieces:
                    form = encodings.get(chunk_key(c), "")
                    links.append(
                        InputChunk(c, n, presign_get(s3, bucket, chunk_key(c, form), expires_s), form)
                    )
                found.append(InputFile(path=path, url="", sha256=sha, size=size, chunks=links))
            else:
                form = encodings.get(cas_key(sha), "")
                url = presign_get(s3, bucket, cas_key(sha, form), expires_s)
                found.append(InputFile(path=path, url=url, sha256=sha, size=size, encoding=form))
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


def signing_lifetime(settings: AwsSettings) -> tuple[float, str] | None:
    """How long links signed now keep working (seconds, at most 7 days) and the words for why,
    or None when no credentials are found.

    A presigned URL stops working when the credentials that signed it expire: IAM-user keys
    allow 7 days, STS session keys their own expiry (1 to 36 hours), SSO about 12 hours.
    """
    if settings.access_key_id and settings.secret_access_key:
        if settings.session_token:
            return (
                3600,
                "Your pasted keys are temporary (they include a session token) and may expire within an hour",
            )
        return MAX_PRESIGN_S, "Links signed with access keys last 7 days at most"
    with translating("checking your AWS profile", region=settings.region):
        creds = make_session(settings).get_credentials()
        if creds is None:
            return None
        # SSO and assumed roles hand back deferred credentials: nothing is fetched, and no
        # expiry is known, until they are first used. Fetch them now to read the real one.
        frozen = creds.get_frozen_credentials()
    expiry = getattr(creds, "_expiry_time", None) if isinstance(creds, RefreshableCredentials) else None
    if expiry is not None:
        limit = min(float(MAX_PRESIGN_S), max(0.0, (expiry - datetime.now(UTC)).total_seconds()))
        return (
            limit,
            f"Your AWS sign-in expires in {_human(limit)}" if limit > 0 else "Your AWS sign-in has expired",
        )
    if frozen.token:
        return 3600, "Your AWS profile uses temporary keys that may expire within an hour"
    return MAX_PRESIGN_S, "Links signed with access keys last 7 days at most"


def credential_lifetime_warning(settings: AwsSettings, needed_seconds: int) -> str | None:
    """A sentence for the panel when the signing credentials die before the job's URLs must
    (`signing_lifetime`)."""
    lifetime = signing_lifetime(settings)
    if lifetime is None:
        return None
    limit, kind = lifetime
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


def download(
    settings: AwsSettings,
    bucket: str,
    key: str,
    dest: Path,
    *,
    max_bytes: int = 0,
    check: Callable[[Path], object] | None = None,
) -> Path:
    """Download to a temporary file beside `dest`, then rename: readers never see half a frame.
    With `max_bytes`, an object that turns out larger is abandoned (TooLarge), never kept; with
    `check`, the whole file is checked before the rename, and what it raises leaves nothing."""
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
        if check is not None:
            check(Path(tmp))
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
