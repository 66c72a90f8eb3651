"""Finding the account's Cloud Render buckets, and one level of a bucket's folders.

Another computer with the same keys has no bucket registry of its own (cloud/aws/bucket_registry.py
is per user folder), and bucket names are random: it finds the account's `cloud-render-*` buckets
by ListBuckets (s3:ListAllMyBuckets) and asks each for its region (s3:GetBucketLocation). Both
are bounded: a computer lists jobs, it does not walk the account.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import CloudError, ErrorCode
from .bucket_setup import BUCKET_PREFIX
from .error_rules import translating
from .session import AwsSettings, client

MAX_BUCKETS = 32  # one per region used is the rule; more is someone else's doing
MAX_PAGES = 10  # one level of a folder, at 1,000 entries a page


@dataclass(frozen=True)
class Level:
    """One level under a prefix: the sub-folders (keys ending in '/') and the objects' keys."""

    folders: list[str]
    keys: list[str]
    truncated: bool  # more than MAX_PAGES pages: the rest was not listed


def account_buckets(settings: AwsSettings, known: dict[str, str]) -> dict[str, str]:
    """Bucket -> region: those `known` (the registry's), and every other `cloud-render-*` bucket
    of the account, at most MAX_BUCKETS in all."""
    found = dict(known)
    s3 = client(settings, "s3")
    try:
        with translating("listing your storage buckets", region=settings.region):
            listed = s3.list_buckets().get("Buckets", [])
    except CloudError as error:
        # A Render policy copied before it allowed s3:ListAllMyBuckets: this computer's own
        # buckets still list; with none known, the refusal says which permission is missing.
        if error.code is ErrorCode.ACCESS_DENIED and found:
            return found
        raise
    names = sorted(str(b["Name"]) for b in listed if str(b["Name"]).startswith(BUCKET_PREFIX))
    with translating("listing your storage buckets", region=settings.region):
        for name in names:
            if len(found) >= MAX_BUCKETS:
                break
            if name not in found:
                # us-east-1 answers with no constraint (AWS: GetBucketLocation, "null" for us-east-1).
                found[name] = s3.get_bucket_location(Bucket=name).get("LocationConstraint") or "us-east-1"
    return found


def list_level(
    settings: AwsSettings, bucket: str, prefix: str, max_keys: int = 1000, max_pages: int = MAX_PAGES
) -> Level:
    """The folders and objects right under `prefix` (ListObjectsV2 with Delimiter '/'), bounded:
    at most `max_pages` requests of `max_keys` entries."""
    folders: list[str] = []
    keys: list[str] = []
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/", "MaxKeys": max_keys}
    s3 = client(settings, "s3")
    with translating("listing the jobs", region=settings.region):
        for _page in range(max_pages):
            reply = s3.list_objects_v2(**kwargs)
            folders.extend(str(p["Prefix"]) for p in reply.get("CommonPrefixes", []))
            keys.extend(str(item["Key"]) for item in reply.get("Contents", []))
            token = reply.get("NextContinuationToken")
            if not reply.get("IsTruncated") or not token:
                return Level(folders, keys, False)
            kwargs["ContinuationToken"] = token
    return Level(folders, keys, True)
