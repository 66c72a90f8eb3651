"""The artist's bucket: created once per region, locked down, and emptied by lifecycle rules.

Nothing in it bills forever: job data, inputs, the Blender cache and the GPU kernel caches
all expire. Which bucket a region uses is kept in the registry (cloud/aws/bucket_registry.py).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from .bucket_registry import BucketRegistry
from .error_rules import is_code, translating
from .session import AwsSettings, client

BUCKET_PREFIX = "cloud-render-"
DEFAULT_EXPIRE_DAYS = 14
BLENDER_CACHE_DAYS = 30  # a cached Blender build goes 30 days after it was written
# A kept GPU kernel cache goes 14 days after it was written: an archive per (Blender version,
# GPU model, driver) of at most contract.MAX_KERNEL_CACHE_BYTES; an expired one costs the next
# machine one cold kernel compile, and drivers and Blender releases move on within weeks.
KERNEL_CACHE_DAYS = 14


def new_bucket_name() -> str:
    """Bucket names are global across all AWS accounts: a UUID never collides."""
    return BUCKET_PREFIX + uuid.uuid4().hex


# Bumped whenever configure_bucket() sets something new (a lifecycle rule, a policy): a bucket
# the registry knows as set up by an older version is set up again on its next use.
BUCKET_SETUP_VERSION = 3  # 3: the kernel-cache/ expiry


def lifecycle_rules(expire_days: int) -> list[dict[str, Any]]:
    """Nothing in the bucket bills forever: job data, inputs and the Blender cache all expire
    (S3 counts an object's age from its last write)."""
    return [
        {
            "ID": "expire-job-data",
            "Status": "Enabled",
            "Filter": {"Prefix": "jobs/"},
            "Expiration": {"Days": expire_days},
        },
        # Inputs too: nothing bills forever. upload_files() refreshes objects it reuses.
        {
            "ID": "expire-inputs",
            "Status": "Enabled",
            "Filter": {"Prefix": "cas/"},
            "Expiration": {"Days": expire_days},
        },
        # Blender builds the add-on verified and kept for later jobs (cloud/aws/blender_cache.py).
        {
            "ID": "expire-blender-cache",
            "Status": "Enabled",
            "Filter": {"Prefix": "blender-cache/"},
            "Expiration": {"Days": BLENDER_CACHE_DAYS},
        },
        # GPU kernel caches render machines kept for the next ones (cloud/aws/kernel_cache.py).
        {
            "ID": "expire-kernel-cache",
            "Status": "Enabled",
            "Filter": {"Prefix": "kernel-cache/"},
            "Expiration": {"Days": KERNEL_CACHE_DAYS},
        },
        {
            "ID": "abort-incomplete-uploads",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        },
    ]


def tls_only_policy(bucket: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyPlainHttp",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def serves_tls(settings: AwsSettings) -> bool:
    """False for a plain-HTTP endpoint (the local emulator, a LAN S3-compatible store), where a
    TLS-only bucket policy would lock Cloud Render out of its own bucket."""
    endpoint = settings.endpoint_for("s3") or ""
    return not endpoint.lower().startswith("http://")


def configure_bucket(s3: Any, bucket: str, expire_days: int, *, tls_only: bool = True) -> None:
    """Block public access, encrypt at rest, refuse plain HTTP, expire old data."""
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}
            ]
        },
    )
    if tls_only:
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(tls_only_policy(bucket)))
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": lifecycle_rules(expire_days)}
    )


def ensure_bucket(
    settings: AwsSettings, registry: BucketRegistry | Path, *, expire_days: int = DEFAULT_EXPIRE_DAYS
) -> str:
    """The artist's bucket in `settings.region`, created and locked down on first use.

    The check and the creation happen under the registry's lock, so two Blender instances
    submitting at once end up with one bucket per region, not one each.
    """
    if not isinstance(registry, BucketRegistry):
        registry = BucketRegistry(registry)
    region = settings.region
    s3 = client(settings, "s3")
    with translating("preparing your storage bucket", region=region):
        entry = registry.get(region)
        if entry and _is_current(entry, expire_days) and _bucket_answers(s3, str(entry["bucket"])):
            return str(entry["bucket"])
        with registry.locked():
            entry = registry.get(region)  # again: another Blender may have made it meanwhile
            if entry and not _bucket_answers(s3, str(entry["bucket"])):
                entry = None  # deleted by hand: make a new one
            if entry and _is_current(entry, expire_days):
                return str(entry["bucket"])
            if entry:
                bucket = str(entry["bucket"])
            else:
                bucket = new_bucket_name()
                create: dict[str, Any] = {"Bucket": bucket}
                if region != "us-east-1":
                    create["CreateBucketConfiguration"] = {"LocationConstraint": region}
                s3.create_bucket(**create)
                registry.store(region, bucket=bucket, configured=False, expire_days=expire_days)
            configure_bucket(s3, bucket, expire_days, tls_only=serves_tls(settings))
            registry.store(
                region,
                bucket=bucket,
                configured=True,
                expire_days=expire_days,
                setup_version=BUCKET_SETUP_VERSION,
            )
            return bucket


def _is_current(entry: dict[str, Any], expire_days: int) -> bool:
    """Set up, with today's rules and retention: nothing to apply again."""
    return bool(
        entry.get("configured")
        and entry.get("expire_days") == expire_days
        and entry.get("setup_version") == BUCKET_SETUP_VERSION
    )


def _bucket_answers(s3: Any, bucket: str) -> bool:
    """False when the bucket is gone; other errors (no network, denied) are raised."""
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception as exc:
        if not is_code(exc, "404", "NoSuchBucket", "NotFound"):
            raise
        return False
    return True
