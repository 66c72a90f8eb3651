"""Which content-addressed objects a bucket holds, from a listing instead of one HEAD each.

A first submission asks about every file and every chunk of the .blend: hundreds of HEADs
(two for a new object: each form it may be stored in), each a round trip, all of them before
the first byte leaves, and on the bench's shared cores the emulator took over a second to
answer them while the uplink sat idle. One ListObjectsV2 page names up to 1,000 keys with when
each was written, which is all a HEAD told us. S3 lists keys in UTF-8 binary order, and its
listings are strongly consistent (Amazon S3 User Guide, "Amazon S3 data consistency model"),
so a listing that stopped after some pages still answers for every key up to the last one it
named: a key at or below that horizon that it did not name is not there. Only keys beyond the
horizon are asked one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

LIST_PAGE_KEYS = 1000  # ListObjectsV2's page size (its MaxKeys limit)
# A page is worth it once it replaces this many HEADs (each new object costs two).
HEADS_PER_PAGE = 100
MAX_PAGES = 50  # 50,000 keys: a bucket larger than that is asked the rest one by one


@dataclass
class StoredListing:
    """The keys under a prefix as one listing saw them. `horizon`: every key at or below it was
    listed if it exists ("" before any listing; the whole prefix once `complete`)."""

    prefix: str = ""
    written: dict[str, datetime] = field(default_factory=dict)
    horizon: str = ""
    complete: bool = False

    def answers(self, key: str) -> bool:
        """Whether this listing says for certain if `key` is there."""
        if not key.startswith(self.prefix) or not (self.complete or self.horizon):
            return False
        return self.complete or key <= self.horizon

    def when(self, key: str) -> datetime | None:
        """When `key` was written, or None: not there (ask `answers` first)."""
        return self.written.get(key)


def pages_worth(asks: int) -> int:
    """How many listing pages pay for `asks` look-ups (0: asking each is cheaper)."""
    if asks < HEADS_PER_PAGE // 4:  # a few files (a resubmit with a warm cache): HEAD them
        return 0
    return max(1, min(MAX_PAGES, -(-asks // HEADS_PER_PAGE)))


def list_stored(
    s3: Any, bucket: str, prefix: str, pages: int, page_keys: int = LIST_PAGE_KEYS
) -> StoredListing:
    """List up to `pages` pages of `page_keys` keys under `prefix` in `bucket` (s3:ListBucket on
    the bucket, which the Render policy grants for the artist's own buckets)."""
    listing = StoredListing(prefix=prefix)
    token = ""
    for _ in range(pages):
        args: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_keys}
        if token:
            args["ContinuationToken"] = token
        reply = s3.list_objects_v2(**args)
        for item in reply.get("Contents", []):
            listing.written[str(item["Key"])] = item["LastModified"]
            listing.horizon = max(listing.horizon, str(item["Key"]))
        token = str(reply.get("NextContinuationToken") or "")
        if not reply.get("IsTruncated") or not token:
            listing.complete = True
            return listing
    return listing
