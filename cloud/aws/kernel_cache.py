"""The GPU kernel caches a job offers its machines: the one an earlier job kept, and a way to keep theirs.

The machine cannot sign URLs, and only it knows its NVIDIA driver. So the machines report their
driver (status.json's `gpu_driver`), the add-on remembers it after a job that could keep a
cache (cloud/aws/kernel_drivers.py), and at the next submit it offers exactly
`kernel-cache/v2/<Blender version>/<GPU model>/<that driver>.tar`: one key, checked to exist by a
listing of that key alone, never "the newest" of the folder, so archives a machine placed under
other names (four fake "newer drivers") are never offered. Nothing remembered: no archive; the
machine compiles and keeps its own, which the next job offers.

A job whose scene can run Python on the machine (Auto Run on, or add-ons travelling) gets no
upload POST: its machine could plant OptiX/CUDA entries that later jobs of other scenes
restore. It may still restore. Others get a POST limited to that folder and to
`MAX_KERNEL_CACHE_BYTES` per object; the machine (cloud/machine/kernel_cache.py) treats every
archive as untrusted. The folder expires with its own lifecycle rule
(bucket_setup.KERNEL_CACHE_DAYS). Uses only calls the policy already allows (ListBucket,
GetObject and PutObject presigned).
"""

from __future__ import annotations

from typing import Any

from ..machine import contract
from .error_rules import translating
from .presign import presign_get, presign_post
from .session import AwsSettings
from .storage import list_objects, presign_client


def why_not_kept(auto_run: bool, addons: int) -> str:
    """Why a job's machine may not keep its kernel cache ("" when it may): scene Python could
    write into the cache folders what other scenes' jobs would load."""
    if auto_run:
        return "the scene runs Python on the machine (Auto Run is on)"
    if addons:
        return "add-ons travel with the job and run Python on the machine"
    return ""


def kept_archive(
    settings: AwsSettings, bucket: str, prefix: str, driver: str, expires_s: int
) -> contract.KernelArchive | None:
    """The archive at exactly `<prefix><driver>.tar`, when it is there within the size bound."""
    if not contract.DRIVER_VERSION.fullmatch(driver):
        return None
    key = f"{prefix}{driver}.tar"
    found = [o for o in list_objects(settings, bucket, key) if o.key == key]
    if not found or not 0 < found[0].size <= contract.MAX_KERNEL_CACHE_BYTES:
        return None
    s3: Any = presign_client(settings)
    with translating("preparing the render machine's kernel cache", region=settings.region):
        return contract.KernelArchive(
            driver=driver, url=presign_get(s3, bucket, key, expires_s), size=found[0].size
        )


def offer(
    settings: AwsSettings,
    bucket: str,
    blender_version: str,
    gpu_model: str | None,
    expires_s: int,
    driver: str = "",
    not_kept_because: str = "",
) -> contract.KernelCacheOffer | None:
    """The spec's `kernel_cache` for a GPU job (None for a machine without a GPU model):
    the archive for `driver` (the one remembered; "" offers none), and an upload POST unless
    `not_kept_because` says why not."""
    if not gpu_model:
        return None
    prefix = contract.kernel_cache_prefix(blender_version, gpu_model)
    archive = kept_archive(settings, bucket, prefix, driver, expires_s) if driver else None
    post: dict[str, Any] = {"url": "", "fields": {}}
    if not not_kept_because:
        s3: Any = presign_client(settings)
        with translating("preparing the render machine's kernel cache", region=settings.region):
            post = presign_post(s3, bucket, prefix, expires_s, contract.MAX_KERNEL_CACHE_BYTES)
    return contract.KernelCacheOffer(
        blender_version=blender_version,
        gpu_model=gpu_model,
        prefix=prefix,
        archives=[archive] if archive else [],
        upload_url=post["url"],
        upload_fields=post["fields"],
        max_bytes=contract.MAX_KERNEL_CACHE_BYTES,
        not_kept_because=not_kept_because,
    )
