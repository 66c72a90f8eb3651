"""The GPU kernel caches a job offers its machines: what earlier machines kept, and a way to keep theirs.

The machine cannot sign URLs, and only it knows its NVIDIA driver. So at submit the add-on
lists `kernel-cache/<Blender version>/<GPU model>/` (the instance type's GPU from the
catalog), presigns GETs for the newest few `<driver>.tar` archives there, and adds a POST
limited to that folder and to `MAX_KERNEL_CACHE_BYTES` per object; the machine takes the one
for its driver and uploads its own (cloud/machine/kernel_cache.py, which treats every archive
as untrusted). The folder expires with its own lifecycle rule (bucket_setup.KERNEL_CACHE_DAYS).
Uses only calls the policy already allows (ListBucket, GetObject and PutObject presigned).
"""

from __future__ import annotations

from typing import Any

from ..machine import contract
from .error_rules import translating
from .presign import presign_get, presign_post
from .session import AwsSettings
from .storage import StoredObject, list_objects, presign_client


def newest_first(objects: list[StoredObject], prefix: str) -> list[tuple[str, StoredObject]]:
    """(driver, object) for each `<driver>.tar` directly under `prefix` within the size bound,
    the most recently written first (the current driver, likely); S3 keeps times to the second,
    so a tie goes to the higher driver version."""
    kept = []
    for obj in objects:
        match = contract.KERNEL_ARCHIVE_NAME.fullmatch(obj.key[len(prefix) :])
        if obj.key.startswith(prefix) and match and 0 < obj.size <= contract.MAX_KERNEL_CACHE_BYTES:
            version = tuple(int(part) for part in match.group(1).split("."))
            kept.append((obj.last_modified, version, match.group(1), obj))
    kept.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [(driver, obj) for _when, _version, driver, obj in kept]


def offer(
    settings: AwsSettings, bucket: str, blender_version: str, gpu_model: str | None, expires_s: int
) -> contract.KernelCacheOffer | None:
    """The spec's `kernel_cache` for a GPU job (None for a machine without a GPU model)."""
    if not gpu_model:
        return None
    prefix = contract.kernel_cache_prefix(blender_version, gpu_model)
    kept = newest_first(list_objects(settings, bucket, prefix), prefix)
    s3: Any = presign_client(settings)
    with translating("preparing the render machine's kernel cache", region=settings.region):
        archives = [
            contract.KernelArchive(
                driver=driver, url=presign_get(s3, bucket, obj.key, expires_s), size=obj.size
            )
            for driver, obj in kept[: contract.MAX_KERNEL_CACHE_OFFERS]
        ]
        post = presign_post(s3, bucket, prefix, expires_s, contract.MAX_KERNEL_CACHE_BYTES)
    return contract.KernelCacheOffer(
        blender_version=blender_version,
        gpu_model=gpu_model,
        prefix=prefix,
        archives=archives,
        upload_url=post["url"],
        upload_fields=post["fields"],
        max_bytes=contract.MAX_KERNEL_CACHE_BYTES,
    )
