"""Content-addressed uploads, against moto: what is there is skipped, old objects refreshed,
cancel and retry."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from cloud.aws import bucket_setup, storage, uploads
from cloud.aws.session import AwsSettings, client
from cloud.errors import Cancelled, CloudError
from cloud.machine.contract import cas_key
from dev.error_server import CountingProxy

KiB, MiB = 1024, 1024 * 1024


def make_files(root: Path, sizes: dict[str, int], seed: str = "") -> list[tuple[Path, str, int]]:
    """Files of distinct pseudo-random content (incompressible: they travel as they are), as
    (path, sha256, size)."""
    out = []
    for name, size in sizes.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(random.Random(seed + name).randbytes(size))
        out.append((path, uploads.hash_file(path), size))
    return out


def cas_objects(settings: AwsSettings, bucket: str) -> set[str]:
    return {obj.key.removeprefix("cas/") for obj in storage.list_objects(settings, bucket, "cas/")}


# --- content-addressed upload ----------------------------------------------------------


def test_hash_file_matches_sha256(tmp_path):
    ((path, sha, size),) = make_files(tmp_path, {"big.exr": 3 * MiB + 17})
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest() and size == path.stat().st_size


def test_upload_skips_what_is_there_and_reports_progress(aws, tmp_path):
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    files = make_files(
        tmp_path / "p", {"scene.blend": 300 * KiB, "tex/a.png": 9 * MiB, "tex/b.png": 64 * KiB}
    )
    files.append((tmp_path / "p" / "copy-of-b.png", files[2][1], files[2][2]))  # same content twice
    (tmp_path / "p" / "copy-of-b.png").write_bytes((tmp_path / "p" / "tex/b.png").read_bytes())

    reports: list[uploads.UploadProgress] = []
    lock = threading.Lock()

    def progress(report: uploads.UploadProgress) -> None:
        with lock:
            reports.append(report)

    result = uploads.upload_files(aws.settings, bucket, files, progress=progress, part_size=5 * MiB)
    total = 300 * KiB + 9 * MiB + 64 * KiB
    assert sorted(result.uploaded) == sorted({sha for _p, sha, _s in files})
    assert result.bytes_sent == total and result.skipped == []
    assert max(r.done for r in reports) == total and {r.total for r in reports} == {total}
    per_file = {}
    for r in reports:
        per_file[r.sha256] = max(per_file.get(r.sha256, 0), r.file_done)
        assert r.file_total == {sha: size for _p, sha, size in files}[r.sha256]
    assert per_file == {sha: size for _p, sha, size in files}

    s3 = client(aws.settings, "s3")
    big = s3.head_object(Bucket=bucket, Key=cas_key(files[1][1]))
    assert big["ETag"].strip('"').endswith("-2")  # multipart: 9 MiB in 5 MiB parts
    assert big["Metadata"]["sha256"] == files[1][1]

    # Same files again: nothing is sent.
    again = uploads.upload_files(aws.settings, bucket, files)
    assert again.uploaded == [] and again.bytes_sent == 0 and again.bytes_skipped == total

    # One texture changed: only it is sent.
    (changed,) = make_files(tmp_path / "p", {"tex/b.png": 64 * KiB}, seed="v2")
    third = uploads.upload_files(aws.settings, bucket, [files[0], files[1], changed])
    assert third.uploaded == [changed[1]] and third.bytes_sent == 64 * KiB


def test_old_objects_are_refreshed_so_the_lifecycle_rule_spares_them(aws, tmp_path):
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    files = make_files(tmp_path, {"a.png": 10 * KiB})
    uploads.upload_files(aws.settings, bucket, files)
    s3 = client(aws.settings, "s3")
    before = s3.head_object(Bucket=bucket, Key=cas_key(files[0][1]))["LastModified"]
    time.sleep(1.1)
    # Anything older than 0 days counts as old: the reused object is copied onto itself.
    result = uploads.upload_files(aws.settings, bucket, files, refresh_after_days=0)
    after = s3.head_object(Bucket=bucket, Key=cas_key(files[0][1]))
    assert result.skipped == [files[0][1]] and result.bytes_sent == 0
    assert after["LastModified"] > before and after["ContentLength"] == 10 * KiB


def cancelled_mid_upload(aws, bucket: str, files, started_after: int, wait_s: float, **kwargs):  # type: ignore[no-untyped-def]
    """Uploads `files` over a 4 MiB/s link in a thread, cancels once `started_after` bytes are
    sent, and returns (what the upload raised, seconds from the cancel to its end)."""
    cancel = threading.Event()
    started = threading.Event()
    outcome: dict[str, object] = {}

    def progress(report: uploads.UploadProgress) -> None:
        if report.done > started_after:
            started.set()

    with CountingProxy.to_url(aws.url, rate=4 * MiB) as slow_link:
        settings = replace(aws.settings, endpoint_url=slow_link.url)

        def run() -> None:
            try:
                uploads.upload_files(settings, bucket, files, progress=progress, cancel=cancel, **kwargs)
            except BaseException as exc:
                outcome["error"] = exc
            outcome["ended"] = time.monotonic()

        worker = threading.Thread(target=run)
        worker.start()
        assert started.wait(wait_s)
        cancelled_at = time.monotonic()
        cancel.set()
        worker.join(10)
    return outcome["error"], float(outcome["ended"]) - cancelled_at  # type: ignore[arg-type]


def test_cancel_from_another_thread_stops_within_a_second(aws, tmp_path):
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    files = make_files(tmp_path, {"huge.vdb": 24 * MiB, "other.png": 6 * MiB})
    error, took = cancelled_mid_upload(aws, bucket, files, MiB, 20, part_size=8 * MiB)
    assert isinstance(error, Cancelled)
    assert took < 1.0
    assert cas_objects(aws.settings, bucket) == set()
    # The half-sent multipart upload was aborted too (the lifecycle rule is only the backstop).
    assert client(aws.admin, "s3").list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_retry_after_a_cut_connection_sends_only_what_was_missing(aws, tmp_path):
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    files = make_files(tmp_path, {f"tex/{i}.png": 512 * KiB for i in range(6)})
    total = 6 * 512 * KiB

    with CountingProxy.to_url(aws.url, cut_after=int(total * 0.45)) as flaky:
        settings = replace(aws.settings, endpoint_url=flaky.url, max_attempts=1, connect_timeout=1)
        with pytest.raises(CloudError) as caught:
            uploads.upload_files(settings, bucket, files, max_concurrency=1)
    assert caught.value.code == "no_network"

    done = cas_objects(aws.settings, bucket)
    assert 0 < len(done) < 6

    with CountingProxy.to_url(aws.url) as link:
        result = uploads.upload_files(replace(aws.settings, endpoint_url=link.url), bucket, files)
    missing = [sha for _p, sha, _s in files if sha not in done]
    assert sorted(result.skipped) == sorted(done)
    assert sorted(result.uploaded) == sorted(missing)
    payload = len(missing) * 512 * KiB
    assert payload <= link.sent < payload + 64 * KiB  # the missing files and some headers, nothing more
    assert cas_objects(aws.settings, bucket) == {sha for _p, sha, _s in files}


def test_a_file_changed_behind_the_hash_cache_is_refused_by_s3_and_hashed_afresh_next_time(aws, tmp_path):
    """A texture rewritten with its size and modification time kept (a tool that restores the
    time): the hash cache still gives the old hash, but each single-PUT upload carries its
    SHA-256 (x-amz-checksum-sha256), so S3 refuses the bytes (400 BadDigest, Amazon S3 User
    Guide, "Checking object integrity"; the strict layer refuses as S3 does, moto would store
    them): nothing lands under the old address, the artist reads which file, and the next
    submit hashes that file afresh."""
    from cloud.job.cloud_steps import CloudSteps, PackedScene

    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    project = tmp_path / "project"
    ((texture, _, size),) = make_files(project, {"tex/wood.png": 64 * KiB})
    os.utime(texture, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))  # long ago: cached
    steps = CloudSteps(tmp_path / "user")
    old_sha, _ = steps.hash_cache.hash(texture)
    stamp = texture.stat()
    texture.write_bytes(bytes(reversed(texture.read_bytes())))  # same size, other bytes
    os.utime(texture, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert steps.hash_cache.hash(texture)[0] == old_sha  # the stale hash

    def packed(sha: str) -> PackedScene:
        return PackedScene(
            blend_path="tex/wood.png",
            files={"tex/wood.png": (sha, size)},
            root=project,
            sources={"tex/wood.png": texture},
            stamps={"tex/wood.png": (size, stamp.st_mtime_ns)},
        )

    with pytest.raises(uploads.NotAsHashed) as refused:
        steps.upload(aws.settings, bucket, packed(old_sha), lambda *_: None, threading.Event())
    assert refused.value.message.startswith("wood.png is not the file that was hashed")
    assert refused.value.action.startswith("Render in Cloud again")
    assert old_sha not in cas_objects(aws.settings, bucket)

    new_sha, _ = steps.hash_cache.hash(texture)  # read afresh: the kept hash was dropped
    assert new_sha == hashlib.sha256(texture.read_bytes()).hexdigest() != old_sha
    steps.upload(aws.settings, bucket, packed(new_sha), lambda *_: None, threading.Event())
    assert new_sha in cas_objects(aws.settings, bucket)


# --- compressing overlapped with sending ------------------------------------------------


def make_squeezable(path: Path, size: int, seed: str) -> tuple[Path, str, int]:
    """A file of pseudo-random bytes over 64 symbols: zlib takes it to about 80 % (it is
    compressed, and still large once compressed)."""
    symbols = bytes(range(64)) * 4
    data = random.Random(seed).randbytes(size).translate(symbols)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest(), size


def test_a_large_compressible_file_is_sent_while_it_is_still_being_compressed(aws, tmp_path):
    """The first bytes leave before the file is compressed to its end (issue 25, "Overlap"): a
    large compressible file goes as a multipart upload whose parts are sent as the compressor
    fills them. Seen in S3 itself: when the upload reports the file read and compressed to its
    end, parts of it are stored already (with five parts or more this cannot be otherwise: the
    compressor runs at most STREAM_AHEAD parts ahead of what S3 has answered). The small files
    beside it go as they are ready, and everything lands under its content address."""
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    size = 30 * MiB
    assert size * 0.7 > (uploads.STREAM_AHEAD + 1) * uploads.STREAM_PART
    big = make_squeezable(tmp_path / "p" / "cache.vdb", size, "big")
    small = [make_squeezable(tmp_path / "p" / f"frame_{i}.bphys", 200 * KiB, f"s{i}") for i in range(4)]
    admin = client(aws.admin, "s3")
    key = cas_key(big[1], "zlib")
    seen: list[tuple[str, str]] = []
    parts_stored_when_compressed: list[int] = []
    lock = threading.Lock()

    def events(step: str, sha: str) -> None:
        if step == "compressed" and sha == big[1]:
            (upload,) = [
                u for u in admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []) if u["Key"] == key
            ]
            listed = admin.list_parts(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
            parts_stored_when_compressed.append(len(listed.get("Parts", [])))
        with lock:
            seen.append((step, sha))

    with CountingProxy.to_url(aws.url, rate=16 * MiB) as link:
        settings = replace(aws.settings, endpoint_url=link.url)
        result = uploads.upload_files(settings, bucket, [big, *small], events=events)

    assert parts_stored_when_compressed and parts_stored_when_compressed[0] >= 1
    assert seen.index(("compressed", big[1])) < seen.index(("sent", big[1]))
    assert sorted(result.uploaded) == sorted(sha for _p, sha, _s in [big, *small])
    assert result.encodings[cas_key(big[1])] == "zlib" and result.bytes_sent == size + 4 * 200 * KiB
    assert result.wire_bytes < 0.9 * result.bytes_sent and result.wire_bytes < link.sent < result.bytes_sent
    stored = admin.get_object(Bucket=bucket, Key=key)
    assert stored["Metadata"] == {"sha256": big[1], "encoding": "zlib"}
    assert hashlib.sha256(zlib.decompress(stored["Body"].read())).hexdigest() == big[1]
    assert cas_objects(aws.settings, bucket) == {f"{sha}.zlib" for _p, sha, _s in [big, *small]}
    assert admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_streamed_file_that_is_not_as_hashed_leaves_nothing_in_the_bucket(aws, tmp_path):
    """A large compressible file whose bytes changed behind the hash cache is found out once it
    is read to its end: its multipart upload is aborted, so no part and no object stays under an
    address that is not its bytes'; the artist reads which file."""
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    path, sha, size = make_squeezable(tmp_path / "cache.vdb", 24 * MiB, "old")
    make_squeezable(path, size, "new")  # same size, other bytes: the old hash is stale
    with pytest.raises(uploads.NotAsHashed) as refused:
        uploads.upload_files(aws.settings, bucket, [(path, sha, size)])
    assert refused.value.path == path
    assert cas_objects(aws.settings, bucket) == set()
    assert client(aws.admin, "s3").list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_cancel_stops_a_streamed_file_within_a_second(aws, tmp_path):
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    files = [make_squeezable(tmp_path / "cache.vdb", 40 * MiB, "c")]
    error, took = cancelled_mid_upload(aws, bucket, files, 0, 60)
    assert isinstance(error, Cancelled)
    assert took < 1.0
    assert cas_objects(aws.settings, bucket) == set()
    assert client(aws.admin, "s3").list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
