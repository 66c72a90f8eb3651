"""Hash and upload in one pipeline, against moto: every file lands under cas/<its sha256>,
what the bucket holds is skipped, the same bytes under two names are sent once, and with the
hash cache a resubmit re-reads only the changed file."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from cloud.aws import storage
from cloud.aws.session import client
from cloud.machine.contract import cas_key
from cloud.pack.hash_cache import RACY_S, HashCache

MiB = 1024 * 1024


def write(path: Path, size: int, seed: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = hashlib.sha256(seed.encode()).digest() * 32
    path.write_bytes((block * (size // len(block) + 1))[:size])
    old = time.time() - 10 * RACY_S
    os.utime(path, (old, old))
    return path


def test_hash_and_upload_sends_each_content_once_and_skips_what_is_there(aws, tmp_path):
    bucket = "cloud-render-pipeline-test"
    s3 = client(aws.settings, "s3")
    s3.create_bucket(Bucket=bucket)
    big = write(tmp_path / "p" / "cache.vdb", 7 * MiB, "big")
    small = write(tmp_path / "p" / "tex.png", 3000, "small")
    twin = write(tmp_path / "p" / "copy_of_tex.png", 3000, "small")
    seen: list[storage.UploadProgress] = []
    result, hashes = storage.hash_and_upload(
        aws.settings, bucket, [big, small, twin], progress=seen.append, part_size=5 * MiB
    )
    assert hashes[str(big)] == (hashlib.sha256(big.read_bytes()).hexdigest(), 7 * MiB)
    assert hashes[str(small)] == hashes[str(twin)]
    assert sorted(result.uploaded) == sorted({hashes[str(big)][0], hashes[str(small)][0]})
    for sha, size in hashes.values():
        assert s3.head_object(Bucket=bucket, Key=cas_key(sha))["ContentLength"] == size
    assert seen[-1].done == seen[-1].total == 7 * MiB + 6000

    # A resubmit with one file changed: only it is read and sent.
    cache = HashCache(tmp_path / "state" / "hashes.sqlite")
    storage.hash_and_upload(aws.settings, bucket, [big, small, twin], cache.hash)
    write(small, 3000, "repainted")
    cache.hits = cache.misses = 0
    result, hashes = storage.hash_and_upload(aws.settings, bucket, [big, small, twin], cache.hash)
    assert (cache.hits, cache.misses) == (2, 1)
    assert result.uploaded == [hashes[str(small)][0]] and result.bytes_sent == 3000
