"""The bucket's Blender cache: builds later machines fetch in-region, kept only when verified.

The cache (`blender-cache/<version>/<file>`) is shared by every later job, so only the add-on
writes it, and only builds whose checksum it verified itself: a build a render machine handed
back (`jobs/<id>/out/blender-cache/`) is kept when S3's own SHA-256 of it equals the one Blender
publishes for that release (`OFFICIAL_CHECKSUMS_URL`, fetched here, never from the machine).
The digest beside a cached build (`<file>.trusted.json`) is written by the add-on alone;
`blender_sources` offers nothing else. Old `<file>.sha256` digests (once copied from what
machines wrote) are never read. The cache expires with its own lifecycle rule
(bucket_setup.lifecycle_rules). The GPU kernel caches beside it are cloud/aws/kernel_cache.py.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any

from ..errors import CloudError, ErrorCode
from ..machine import contract
from .presign import presign_get
from .session import AwsSettings, client
from .storage import list_objects
from .uploads import hash_file

# Blender's published SHA-256 list per release: the source the Blender cache trusts.
OFFICIAL_CHECKSUMS_URL = "https://download.blender.org/release/Blender{series}/blender-{version}.sha256"
TARBALL_NAME = re.compile(r"blender-(\d+\.\d+\.\d+)-linux-x64\.tar\.xz")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
TRUSTED_SUFFIX = ".trusted.json"  # beside a cached build: the digest the add-on verified
MAX_TRUSTED_BYTES = 4096
MAX_CHECKSUMS_BYTES = 256 * 1024
MAX_COPY_BYTES = 5 * 1024**3  # CopyObject's limit; an official tarball is well under it


def blender_sources(
    settings: AwsSettings, bucket: str, version: str, expires: int
) -> list[contract.BlenderSource]:
    """Bucket cache first (in-region, checked by hash), then the official bpy wheel on PyPI."""
    sources = []
    name = f"blender-{version}-linux-x64.tar.xz"
    key = contract.blender_cache_key(version, name)
    digest = cached_digest(settings, bucket, key)
    if digest:
        s3 = client(settings, "s3")
        sources.append(
            contract.BlenderSource(
                kind="bucket", version=version, url=presign_get(s3, bucket, key, expires), sha256=digest
            )
        )
    sources.append(contract.BlenderSource(kind="pypi", version=version, package=f"bpy=={version}"))
    return sources


def cached_digest(settings: AwsSettings, bucket: str, key: str) -> str:
    """The SHA-256 the add-on verified for a cached build (`<key>.trusted.json`), or '' when
    there is none, it is malformed, or the build itself is gone."""
    s3 = client(settings, "s3")
    try:
        body = s3.get_object(Bucket=bucket, Key=key + TRUSTED_SUFFIX)["Body"].read(MAX_TRUSTED_BYTES)
        record = json.loads(body)
        s3.head_object(Bucket=bucket, Key=key)
    except Exception:
        return ""
    digest = record.get("sha256") if isinstance(record, dict) else None
    return digest if isinstance(digest, str) and SHA256_HEX.fullmatch(digest) else ""


def _mark_trusted(s3: Any, bucket: str, key: str, sha256: str, source: str) -> None:
    record = {"sha256": sha256, "file": key.rsplit("/", 1)[-1], "verified_against": source}
    record["verified_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    s3.put_object(Bucket=bucket, Key=key + TRUSTED_SUFFIX, Body=json.dumps(record, indent=1).encode())


def stage_build(settings: AwsSettings, bucket: str, version: str, tarball: Path, sha256: str) -> None:
    """Put a Blender tarball from this computer in the bucket's cache (demo, tests, benchmarks).

    The artist's own computer is trusted; the digest is checked against the file all the same.
    """
    actual = hash_file(tarball)
    if actual != sha256:
        raise CloudError(
            f"{tarball.name} does not match the checksum it was given.",
            "Download the Blender release again.",
            code=ErrorCode.CHECKSUM_MISMATCH,
        )
    s3 = client(settings, "s3")
    key = contract.blender_cache_key(version, tarball.name)
    s3.delete_object(Bucket=bucket, Key=key + TRUSTED_SUFFIX)
    s3.upload_file(str(tarball), bucket, key)
    _mark_trusted(s3, bucket, key, actual, "staged from this computer")


def checksums_url(version: str, template: str = OFFICIAL_CHECKSUMS_URL) -> str:
    """Where Blender publishes the checksums of `version` (`template` is a test's own server)."""
    series = ".".join(version.split(".")[:2])
    return template.format(series=series, version=version)


def official_checksums(version: str, template: str = OFFICIAL_CHECKSUMS_URL) -> dict[str, str]:
    """{file name: SHA-256} from Blender's published checksum list for `version` (HTTPS).

    Raises CloudError when the list cannot be fetched; an empty dict when it lists nothing.
    """
    url = checksums_url(version, template)
    try:
        with urllib.request.urlopen(url, timeout=30, context=_tls_context()) as response:
            body = response.read(MAX_CHECKSUMS_BYTES + 1)
    except (OSError, ValueError) as exc:
        raise CloudError(
            f"Blender's official checksums for {version} could not be fetched.",
            "Check your internet connection; the Blender build is fetched again next time.",
            code=ErrorCode.CHECKSUMS_UNREACHABLE,
            detail=f"{url}: {exc}",
        ) from exc
    found: dict[str, str] = {}
    for line in body[:MAX_CHECKSUMS_BYTES].decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) == 2 and SHA256_HEX.fullmatch(parts[0].lower()):
            found[parts[1].lstrip("*")] = parts[0].lower()
    return found


def keep_fetched_builds(
    settings: AwsSettings, bucket: str, job_id: str, template: str = OFFICIAL_CHECKSUMS_URL
) -> list[str]:
    """Keep a Blender build the job's machine fetched in the bucket's cache, so later boots fetch
    in-region, when it is an official release byte for byte; returns lines for the job log.

    Nothing the machine wrote is believed: the checksum is S3's own (computed while copying
    the object into the cache) and is compared with Blender's published one. Whatever goes
    wrong here only costs the cache, never the job, so errors become log lines.
    """
    prefix = contract.out_prefix(job_id) + "blender-cache/"
    notes: list[str] = []
    try:
        found = list_objects(settings, bucket, prefix)
    except CloudError as error:
        return [f"Blender cache not updated: {error.message}"]
    s3 = client(settings, "s3")
    checksums: dict[str, dict[str, str]] = {}
    for obj in found:
        name = obj.key[len(prefix) :]
        match = TARBALL_NAME.fullmatch(name)
        if not match:
            continue  # wheels, checksums or anything else a machine wrote: never kept
        version = match.group(1)
        try:
            if version not in checksums:
                checksums[version] = official_checksums(version, template)
            trusted = checksums[version].get(name, "")
            if not trusted:
                notes.append(f"Not keeping {name}: Blender publishes no checksum for such a file.")
                continue
            if obj.size > MAX_COPY_BYTES:
                notes.append(f"Not keeping {name}: it is larger than an official release.")
                continue
            target = contract.blender_cache_key(version, name)
            if cached_digest(settings, bucket, target) == trusted:
                continue  # already cached and verified
            s3.delete_object(Bucket=bucket, Key=target + TRUSTED_SUFFIX)  # no digest while it changes
            actual = _copy_with_sha256(s3, bucket, obj.key, target)
            if actual != trusted:
                s3.delete_object(Bucket=bucket, Key=target)
                notes.append(
                    f"Not keeping {name}: it differs from Blender's official release "
                    f"(SHA-256 {actual[:16] or 'unknown'}..., expected {trusted[:16]}...)."
                )
                continue
            _mark_trusted(s3, bucket, target, trusted, checksums_url(version, template))
            notes.append(f"Kept Blender {version} in your bucket for the next jobs (official checksum).")
        except CloudError as error:
            notes.append(f"Not keeping {name}: {error.message}")
        except Exception as error:  # botocore errors: the cache is a convenience, the job is over
            notes.append(f"Not keeping {name}: {type(error).__name__}: {error}")
    return notes


def _tls_context() -> ssl.SSLContext:
    """Certificates from certifi (shipped in vendor/) where Blender's Python has no system store."""
    try:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:
        return ssl.create_default_context()


def _copy_with_sha256(s3: Any, bucket: str, source: str, target: str) -> str:
    """Copy `source` to `target` inside the bucket; returns S3's SHA-256 of the copy, in hex."""
    reply = s3.copy_object(
        Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": source}, ChecksumAlgorithm="SHA256"
    )
    checksum = (reply.get("CopyObjectResult") or {}).get("ChecksumSHA256") or s3.head_object(
        Bucket=bucket, Key=target, ChecksumMode="ENABLED"
    ).get("ChecksumSHA256", "")
    try:
        raw = base64.b64decode(checksum, validate=True)
    except (ValueError, TypeError):
        return ""
    return raw.hex() if len(raw) == 32 else ""  # a multipart checksum ("...-N") is not a file's SHA-256
