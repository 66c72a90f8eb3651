"""What this computer saw in the bucket spares a resubmit its HEADs, within the trust rules of
cloud/aws/known_objects.py, against moto. An object deleted behind the add-on's back shows which
path was taken: trusted, it is not sent again; asked about, it is."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cloud.aws import uploads
from cloud.aws.known_objects import KnownObjects
from cloud.aws.session import client
from cloud.machine.contract import cas_key
from cloud.pack.hash_cache import RACY_S


def write(path: Path, size: int, seed: str) -> Path:
    """`size` bytes made from `seed`, dated well in the past (no hash-cache race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = hashlib.sha256(seed.encode()).digest() * 32
    path.write_bytes((block * (size // len(block) + 1))[:size])
    old = time.time() - 10 * RACY_S
    os.utime(path, (old, old))
    return path


def triple(path):  # type: ignore[no-untyped-def]
    data = path.read_bytes()
    return (path, hashlib.sha256(data).hexdigest(), len(data))


def test_a_resubmit_trusts_what_it_saw_and_asks_again_once_told_to_forget(aws, tmp_path):
    bucket = "cloud-render-known-test"
    s3 = client(aws.settings, "s3")
    s3.create_bucket(Bucket=bucket)
    files = [triple(write(tmp_path / "p" / f"tex{i}.png", 4000 + i, f"t{i}")) for i in range(3)]
    known = KnownObjects(tmp_path / "state" / "known.sqlite")
    first = uploads.upload_files(aws.settings, bucket, files, known=known)
    assert sorted(first.uploaded) == sorted(sha for _p, sha, _s in files)

    gone = files[0][1]
    stored = cas_key(gone, first.encodings.get(cas_key(gone), ""))  # as it is, or compressed
    s3.delete_object(Bucket=bucket, Key=stored)  # behind the add-on's back
    trusted = uploads.upload_files(aws.settings, bucket, files, known=known)
    assert trusted.uploaded == [] and len(trusted.skipped) == 3  # no HEAD asked: nothing noticed

    known.forget(bucket)  # what a job that found an input missing does
    asked = uploads.upload_files(aws.settings, bucket, files, known=known)
    assert asked.uploaded == [gone] and len(asked.skipped) == 2
    s3.head_object(Bucket=bucket, Key=stored)


def test_trust_ends_after_a_day_and_before_the_refresh_age(aws, tmp_path):
    bucket = "cloud-render-known-age-test"
    s3 = client(aws.settings, "s3")
    s3.create_bucket(Bucket=bucket)
    path, sha, size = triple(write(tmp_path / "p" / "tex.png", 5000, "age"))
    key = cas_key(sha)
    known = KnownObjects(tmp_path / "known.sqlite")
    now = time.time()
    fresh = datetime.now(UTC)
    known.remember(bucket, {key: fresh}, now=now)
    got = known.trusted(bucket, [key], refresh_after_s=7 * 86400, now=now + 3600)
    assert list(got) == [key] and abs((got[key] - fresh).total_seconds()) < 0.001
    assert known.trusted(bucket, [key], refresh_after_s=7 * 86400, now=now + 86400 + 1) == {}
    # Written eight days ago, confirmed just now: past the refresh age, so asked again (and the
    # upload refreshes it, which trusting it would skip).
    old = fresh - timedelta(days=8)
    known.remember(bucket, {key: old}, now=now)
    assert known.trusted(bucket, [key], refresh_after_s=7 * 86400, now=now + 1) == {}
    # Another bucket never answers for this one.
    assert known.trusted("cloud-render-other", [key], refresh_after_s=7 * 86400, now=now) == {}
    # The real thing: a trusted entry for an object the bucket lacks is not asked about; with no
    # trust left, the object is found missing and sent.
    known.remember(bucket, {key: fresh})
    assert uploads.upload_files(aws.settings, bucket, [(path, sha, size)], known=known).uploaded == []
    untrusting = KnownObjects(tmp_path / "known.sqlite", trust_s=0.0)
    assert uploads.upload_files(aws.settings, bucket, [(path, sha, size)], known=untrusting).uploaded == [sha]


def test_an_unreadable_file_only_costs_the_heads(aws, tmp_path):
    bucket = "cloud-render-known-broken-test"
    client(aws.settings, "s3").create_bucket(Bucket=bucket)
    broken = tmp_path / "known.sqlite"
    broken.write_bytes(b"not a database" * 100)
    known = KnownObjects(broken)
    path, sha, size = triple(write(tmp_path / "p" / "tex.png", 5000, "broken"))
    assert uploads.upload_files(aws.settings, bucket, [(path, sha, size)], known=known).uploaded == [sha]
    assert uploads.upload_files(aws.settings, bucket, [(path, sha, size)], known=known).skipped == [sha]
