"""A first submission asks the bucket once, by listing it, not with a HEAD per object; a listing
cut short still answers for every key up to the last one it named. Against moto over HTTP
through the strict layer, whose decision log names each request the artist's keys made."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import requests

from cloud.aws import bucket_setup, stored_listing, uploads
from cloud.aws.session import client
from cloud.machine.contract import cas_key


def operations(url: str) -> Counter[str]:
    """How many times each S3 operation was asked for since the test's reset."""
    decisions = requests.get(f"{url}/strict-api/decisions", timeout=10).json()
    return Counter(str(entry.get("operation", "")) for entry in decisions)


def project(root: Path, count: int, seed: str) -> list[tuple[Path, str, int]]:
    """`count` small files, half of them compressible text (stored as .zlib), half noise."""
    files = []
    rng = random.Random(seed)
    for index in range(count):
        path = root / f"asset_{index:03d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = (f"{seed} vertex {index} " * 2000).encode() if index % 2 else rng.randbytes(20_000)
        path.write_bytes(data)
        files.append((path, uploads.hash_file(path), len(data)))
    return files


def test_a_first_submission_lists_the_bucket_instead_of_asking_each_object(aws, tmp_path):
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    old = project(tmp_path / "old", 30, "old")
    uploads.upload_files(aws.settings, bucket, old)  # an earlier job's files
    new = project(tmp_path / "new", 40, "new")
    before = operations(aws.url)

    result = uploads.upload_files(aws.settings, bucket, old + new)

    asked = operations(aws.url) - before
    assert asked["s3:HeadObject"] == 0, asked  # 70 objects, up to 140 HEADs before the listing
    assert asked["s3:ListObjectsV2"] == 1, asked
    assert sorted(result.uploaded) == sorted(sha for _p, sha, _s in new)
    assert sorted(result.skipped) == sorted(sha for _p, sha, _s in old)
    # Found in the form each was stored in: the compressible ones as .zlib, the noise as it is.
    s3 = client(aws.settings, "s3")
    for index, (_path, sha, _size) in enumerate(new):
        form = "zlib" if index % 2 else ""
        assert result.encodings.get(cas_key(sha), "") == form
        s3.head_object(Bucket=bucket, Key=cas_key(sha, form))


def test_a_resubmit_of_a_few_files_asks_each_one(aws, tmp_path):
    """A listing costs more than a handful of HEADs: a small resubmit asks each object."""
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    files = project(tmp_path / "p", 4, "few")
    uploads.upload_files(aws.settings, bucket, files)
    before = operations(aws.url)
    again = uploads.upload_files(aws.settings, bucket, files)
    asked = operations(aws.url) - before
    assert asked["s3:ListObjectsV2"] == 0 and asked["s3:HeadObject"] >= 4, asked
    assert again.uploaded == [] and len(again.skipped) == 4


def test_a_listing_cut_short_answers_up_to_its_last_key_only(aws, tmp_path):
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    s3 = client(aws.settings, "s3")
    for name in ("cas/10", "cas/30", "cas/50", "cas/70"):
        s3.put_object(Bucket=bucket, Key=name, Body=b"x")

    cut = stored_listing.list_stored(s3, bucket, "cas/", pages=1, page_keys=2)
    assert not cut.complete and cut.horizon == "cas/30"
    assert cut.answers("cas/10") and cut.when("cas/10") is not None
    assert cut.answers("cas/20") and cut.when("cas/20") is None  # below the horizon: not there
    assert not cut.answers("cas/40") and not cut.answers("cas/70")  # beyond it: ask
    assert not cut.answers("jobs/10")  # another prefix: never answered

    whole = stored_listing.list_stored(s3, bucket, "cas/", pages=3, page_keys=2)
    assert whole.complete and set(whole.written) == {"cas/10", "cas/30", "cas/50", "cas/70"}
    assert whole.answers("cas/99") and whole.when("cas/99") is None

    empty = stored_listing.list_stored(s3, bucket, "cas/none/", pages=1)
    assert empty.complete and empty.answers("cas/none/1") and empty.when("cas/none/1") is None


def test_how_many_pages_a_look_up_is_worth():
    assert stored_listing.pages_worth(8) == 0  # a handful: HEAD each
    assert stored_listing.pages_worth(25) == 1
    assert stored_listing.pages_worth(560) == 6  # the bench's first submission (2 forms each)
    assert stored_listing.pages_worth(10**7) == stored_listing.MAX_PAGES
