"""Presigned requests: how the render machine reads and writes S3 with no credentials.

Thin wrappers over boto3 that the storage module and the tests share, so the scoping rules
(which prefix, how big, how long) are decided in one place.
"""

from __future__ import annotations

from typing import Any


def presign_get(s3: Any, bucket: str, key: str, expires_s: int, content_type: str = "") -> str:
    """A GET of one object; with `content_type`, S3 answers with that type whatever the object was
    stored as (ResponseContentType, signed into the link: a machine-written body served as an
    image is only ever an image)."""
    params = {"Bucket": bucket, "Key": key}
    if content_type:
        params["ResponseContentType"] = content_type
    return str(s3.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s))


def presign_list(s3: Any, bucket: str, prefix: str, expires_s: int) -> str:
    """A ListObjectsV2 URL limited to one prefix (the worker uses it to skip existing frames)."""
    return str(
        s3.generate_presigned_url(
            "list_objects_v2", Params={"Bucket": bucket, "Prefix": prefix}, ExpiresIn=expires_s
        )
    )


LIST_PAGE = 1000  # what one ListObjectsV2 answers at most


def presign_list_pages(
    s3: Any, bucket: str, prefix: str, names: list[str], expires_s: int, page: int = LIST_PAGE
) -> list[str]:
    """ListObjectsV2 URLs that together list every object under `prefix` whose name is among
    `names` (every name such a key can have, known in advance), however many there are.

    A presigned URL signs its query, so the machine cannot ask for the next page with a
    continuation token of its own. Instead the keys are cut, in S3's order, into runs of `page`
    names: URL k lists `page` keys from just after run k-1's last one. Only these names exist
    under the prefix, so every existing key of run k is among those `page` keys."""
    keys = sorted(prefix + name for name in set(names))  # code-point order is S3's UTF-8 order
    urls = []
    for start in range(0, max(len(keys), 1), page):
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page}
        if start:
            params["StartAfter"] = keys[start - 1]
        urls.append(str(s3.generate_presigned_url("list_objects_v2", Params=params, ExpiresIn=expires_s)))
    return urls


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
