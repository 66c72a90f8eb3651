"""Presigned requests: how the render machine reads and writes S3 with no credentials.

Thin wrappers over boto3 that the storage module and the tests share, so the scoping rules
(which prefix, how big, how long) are decided in one place.
"""

from __future__ import annotations

from typing import Any


def presign_get(s3: Any, bucket: str, key: str, expires_s: int) -> str:
    return str(
        s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s)
    )


def presign_list(s3: Any, bucket: str, prefix: str, expires_s: int) -> str:
    """A ListObjectsV2 URL limited to one prefix (the worker uses it to skip existing frames)."""
    return str(
        s3.generate_presigned_url(
            "list_objects_v2", Params={"Bucket": bucket, "Prefix": prefix}, ExpiresIn=expires_s
        )
    )


def presign_post(s3: Any, bucket: str, prefix: str, expires_s: int, max_bytes: int) -> dict[str, Any]:
    """A POST policy that only allows keys under `prefix` and objects up to `max_bytes`."""
    if not prefix.endswith("/"):
        raise ValueError("prefix must end with '/'")
    post = s3.generate_presigned_post(
        Bucket=bucket,
        Key=prefix + "${filename}",
        Conditions=[["starts-with", "$key", prefix], ["content-length-range", 0, max_bytes]],
        ExpiresIn=expires_s,
    )
    return {"url": post["url"], "fields": dict(post["fields"])}
