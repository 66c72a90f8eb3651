"""The artist's bucket, content-addressed uploads, presigned access and outputs, against moto."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from cloud.aws import storage
from cloud.aws.session import AwsSettings, client
from cloud.errors import Cancelled, CloudError
from cloud.machine.contract import cas_key, frames_prefix, out_prefix
from dev.error_server import CountingProxy

KiB, MiB = 1024, 1024 * 1024


def make_files(root: Path, sizes: dict[str, int], seed: str = "") -> list[tuple[Path, str, int]]:
    """Files of distinct pseudo-random content, as (path, sha256, size)."""
    out = []
    for name, size in sizes.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        block = hashlib.sha256((seed + name).encode()).digest() * 32  # 1 KiB
        path.write_bytes((block * (size // len(block) + 1))[:size])
        out.append((path, storage.hash_file(path), size))
    return out


def cas_objects(settings: AwsSettings, bucket: str) -> set[str]:
    return {obj.key.removeprefix("cas/") for obj in storage.list_objects(settings, bucket, "cas/")}


# --- bucket ----------------------------------------------------------------------------


def test_bucket_is_created_in_its_region_and_locked_down(aws, tmp_path):
    settings = aws.settings.in_region("eu-west-1")
    bucket = storage.ensure_bucket(settings, tmp_path / "buckets.json")

    assert bucket.startswith("cloud-render-") and len(bucket) == len("cloud-render-") + 32
    s3 = client(aws.admin.in_region("eu-west-1"), "s3")  # read back as the account
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(
        block[k]
        for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
    )
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    # The emulator is reached over plain HTTP: no TLS-only policy there (see the next test).
    with pytest.raises(s3.exceptions.ClientError, match="NoSuchBucketPolicy"):
        s3.get_bucket_policy(Bucket=bucket)
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert rules["expire-job-data"]["Filter"]["Prefix"] == "jobs/"
    assert rules["expire-job-data"]["Expiration"]["Days"] == 14
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1
    # Nothing bills forever: the shared Blender cache expires too, 30 days after its last write.
    assert rules["expire-blender-cache"]["Filter"]["Prefix"] == "blender-cache/"
    assert rules["expire-blender-cache"]["Expiration"]["Days"] == storage.BLENDER_CACHE_DAYS == 30
    # And the GPU kernel caches machines kept for the next ones, 14 days after their last write.
    assert rules["expire-kernel-cache"]["Filter"]["Prefix"] == "kernel-cache/"
    assert rules["expire-kernel-cache"]["Expiration"]["Days"] == storage.KERNEL_CACHE_DAYS == 14
    expiring = {r["Filter"]["Prefix"] for r in rules.values() if "Expiration" in r}
    assert expiring == {"jobs/", "cas/", "blender-cache/", "kernel-cache/"}

    remembered = json.loads((tmp_path / "buckets.json").read_text())
    assert remembered["eu-west-1"]["bucket"] == bucket and remembered["eu-west-1"]["configured"] is True


def test_tls_only_policy_refuses_plain_http(aws):
    """On real AWS (an https endpoint) the bucket refuses any request not made over TLS."""
    https = replace(aws.settings, endpoint_url=None)
    assert storage.serves_tls(https) and not storage.serves_tls(aws.settings)
    s3 = client(aws.settings, "s3")
    s3.create_bucket(Bucket="cloud-render-tls")
    storage.configure_bucket(s3, "cloud-render-tls", 14, tls_only=True)
    policy = json.loads(client(aws.admin, "s3").get_bucket_policy(Bucket="cloud-render-tls")["Policy"])
    (deny,) = policy["Statement"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Resource"] == ["arn:aws:s3:::cloud-render-tls", "arn:aws:s3:::cloud-render-tls/*"]
    # This request goes over plain HTTP, so the bucket refuses it.
    with pytest.raises(CloudError) as caught:
        storage.put_json(aws.settings, "cloud-render-tls", "jobs/j1/job.json", {})
    assert caught.value.code == "access_denied"


def test_bucket_is_reused_per_region_and_follows_settings(aws, tmp_path):
    registry = storage.BucketRegistry(tmp_path / "buckets.json")
    first = storage.ensure_bucket(aws.settings, registry)
    assert storage.ensure_bucket(aws.settings, registry) == first
    assert len(client(aws.admin, "s3").list_buckets()["Buckets"]) == 1

    other = storage.ensure_bucket(aws.settings.in_region("ap-northeast-1"), registry)
    assert other != first

    # A shorter retention is applied to the same bucket.
    assert storage.ensure_bucket(aws.settings, registry, expire_days=3) == first
    rules = client(aws.admin, "s3").get_bucket_lifecycle_configuration(Bucket=first)["Rules"]
    assert {r["ID"]: r for r in rules}["expire-job-data"]["Expiration"]["Days"] == 3


def test_bucket_deleted_by_hand_is_replaced(aws, tmp_path):
    registry = storage.BucketRegistry(tmp_path / "buckets.json")
    first = storage.ensure_bucket(aws.settings, registry)
    client(aws.admin, "s3").delete_bucket(Bucket=first)
    second = storage.ensure_bucket(aws.settings, registry)
    assert second != first
    client(aws.admin, "s3").head_bucket(Bucket=second)
    assert registry.get("us-east-1")["bucket"] == second


# --- content-addressed upload ----------------------------------------------------------


def test_hash_file_matches_sha256(tmp_path):
    ((path, sha, size),) = make_files(tmp_path, {"big.exr": 3 * MiB + 17})
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest() and size == path.stat().st_size


def test_upload_skips_what_is_there_and_reports_progress(aws, tmp_path):
    bucket = storage.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    files = make_files(
        tmp_path / "p", {"scene.blend": 300 * KiB, "tex/a.png": 9 * MiB, "tex/b.png": 64 * KiB}
    )
    files.append((tmp_path / "p" / "copy-of-b.png", files[2][1], files[2][2]))  # same content twice
    (tmp_path / "p" / "copy-of-b.png").write_bytes((tmp_path / "p" / "tex/b.png").read_bytes())

    reports: list[storage.UploadProgress] = []
    lock = threading.Lock()

    def progress(report: storage.UploadProgress) -> None:
        with lock:
            reports.append(report)

    result = storage.upload_files(aws.settings, bucket, files, progress=progress, part_size=5 * MiB)
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
    again = storage.upload_files(aws.settings, bucket, files)
    assert again.uploaded == [] and again.bytes_sent == 0 and again.bytes_skipped == total

    # One texture changed: only it is sent.
    (changed,) = make_files(tmp_path / "p", {"tex/b.png": 64 * KiB}, seed="v2")
    third = storage.upload_files(aws.settings, bucket, [files[0], files[1], changed])
    assert third.uploaded == [changed[1]] and third.bytes_sent == 64 * KiB


def test_old_objects_are_refreshed_so_the_lifecycle_rule_spares_them(aws, tmp_path):
    bucket = storage.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    files = make_files(tmp_path, {"a.png": 10 * KiB})
    storage.upload_files(aws.settings, bucket, files)
    s3 = client(aws.settings, "s3")
    before = s3.head_object(Bucket=bucket, Key=cas_key(files[0][1]))["LastModified"]
    time.sleep(1.1)
    # Anything older than 0 days counts as old: the reused object is copied onto itself.
    result = storage.upload_files(aws.settings, bucket, files, refresh_after_days=0)
    after = s3.head_object(Bucket=bucket, Key=cas_key(files[0][1]))
    assert result.skipped == [files[0][1]] and result.bytes_sent == 0
    assert after["LastModified"] > before and after["ContentLength"] == 10 * KiB


def test_cancel_from_another_thread_stops_within_a_second(aws, tmp_path):
    bucket = storage.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    files = make_files(tmp_path, {"huge.vdb": 24 * MiB, "other.png": 6 * MiB})
    cancel = threading.Event()
    started = threading.Event()
    outcome: dict[str, object] = {}

    def progress(report: storage.UploadProgress) -> None:
        if report.done > MiB:
            started.set()

    with CountingProxy.to_url(aws.url, rate=4 * MiB) as slow_link:
        settings = replace(aws.settings, endpoint_url=slow_link.url)

        def run() -> None:
            try:
                storage.upload_files(
                    settings, bucket, files, progress=progress, cancel=cancel, part_size=8 * MiB
                )
            except BaseException as exc:
                outcome["error"] = exc
            outcome["ended"] = time.monotonic()

        worker = threading.Thread(target=run)
        worker.start()
        assert started.wait(20)
        cancelled_at = time.monotonic()
        cancel.set()
        worker.join(10)
    assert isinstance(outcome["error"], Cancelled)
    assert float(outcome["ended"]) - cancelled_at < 1.0  # type: ignore[arg-type]
    assert cas_objects(aws.settings, bucket) == set()
    # The half-sent multipart upload was aborted too (the lifecycle rule is only the backstop).
    assert client(aws.admin, "s3").list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_retry_after_a_cut_connection_sends_only_what_was_missing(aws, tmp_path):
    bucket = storage.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    files = make_files(tmp_path, {f"tex/{i}.png": 512 * KiB for i in range(6)})
    total = 6 * 512 * KiB

    with CountingProxy.to_url(aws.url, cut_after=int(total * 0.45)) as flaky:
        settings = replace(aws.settings, endpoint_url=flaky.url, max_attempts=1, connect_timeout=1)
        with pytest.raises(CloudError) as caught:
            storage.upload_files(settings, bucket, files, max_concurrency=1)
    assert caught.value.code == "no_network"

    done = cas_objects(aws.settings, bucket)
    assert 0 < len(done) < 6

    with CountingProxy.to_url(aws.url) as link:
        result = storage.upload_files(replace(aws.settings, endpoint_url=link.url), bucket, files)
    missing = [sha for _p, sha, _s in files if sha not in done]
    assert sorted(result.skipped) == sorted(done)
    assert sorted(result.uploaded) == sorted(missing)
    payload = len(missing) * 512 * KiB
    assert payload <= link.sent < payload + 64 * KiB  # the missing files and some headers, nothing more
    assert cas_objects(aws.settings, bucket) == {sha for _p, sha, _s in files}


# --- small JSON objects ----------------------------------------------------------------


def test_json_round_trip_and_write_once(aws, tmp_path):
    bucket = storage.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    storage.put_json(aws.settings, bucket, "jobs/j1/job.json", {"state": "uploading"}, only_if_new=True)
    assert json.loads(storage.get_bytes(aws.settings, bucket, "jobs/j1/job.json", 1024) or b"") == {
        "state": "uploading"
    }
    assert storage.get_bytes(aws.settings, bucket, "jobs/j1/missing.json", 1024) is None
    with pytest.raises(CloudError) as caught:
        storage.put_json(aws.settings, bucket, "jobs/j1/job.json", {"state": "other"}, only_if_new=True)
    assert caught.value.code == "conflict"
    assert caught.value.action == "Refresh the job list, then try again."


# --- presigned access ------------------------------------------------------------------


def test_presign_expiry_follows_the_time_cap():
    assert storage.presign_expiry(3600) == 3600 + storage.PRESIGN_MARGIN_S
    assert storage.presign_expiry(30 * 86400) == 7 * 86400


def test_presigned_inputs_download_the_exact_bytes(aws, tmp_path):
    bucket = storage.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    files = make_files(tmp_path, {"scene.blend": 100 * KiB, "tex/wood.png": 20 * KiB})
    storage.upload_files(aws.settings, bucket, files)
    expires = storage.presign_expiry(7200)
    inputs = storage.presign_inputs(
        aws.settings,
        bucket,
        [(p.relative_to(tmp_path).as_posix(), sha, size) for p, sha, size in files],
        expires,
    )
    assert [i.path for i in inputs] == ["scene.blend", "tex/wood.png"]
    for item in inputs:
        assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in item.url and f"X-Amz-Expires={expires}" in item.url
        body = requests.get(item.url, timeout=10).content
        assert hashlib.sha256(body).hexdigest() == item.sha256 and len(body) == item.size


def test_presigned_post_is_limited_to_the_job_output_prefix_and_size(aws, tmp_path):
    bucket = storage.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    post = storage.presign_outputs(aws.settings, bucket, "job-42", expires_s=3600, max_bytes=50 * MiB)

    # moto does not enforce POST policy conditions (an upload outside the prefix or over the
    # size is accepted), so the policy itself is decoded and checked: S3 enforces it.
    policy = json.loads(base64.b64decode(post["fields"]["policy"]))
    conditions = policy["conditions"]
    assert ["starts-with", "$key", "jobs/job-42/out/"] in conditions
    assert ["content-length-range", 0, 50 * MiB] in conditions
    assert {"bucket": bucket} in conditions
    assert post["fields"]["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    expiration = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert timedelta(minutes=59) < expiration - datetime.now(UTC) <= timedelta(hours=1)

    # And it works: the worker's upload lands where the add-on looks for frames.
    key = frames_prefix("job-42") + "0001.png"
    reply = requests.post(
        post["url"],
        data={**post["fields"], "key": key},
        files={"file": ("0001.png", b"PNG frame")},
        timeout=10,
    )
    assert reply.status_code in (200, 201, 204)
    assert [o.key for o in storage.list_objects(aws.settings, bucket, out_prefix("job-42"))] == [key]


def test_credential_lifetime_warnings(tmp_path, monkeypatch):
    keys = AwsSettings(access_key_id="AKIAIOSFODNN7EXAMPLE", secret_access_key="A" * 40)
    assert storage.credential_lifetime_warning(keys, 2 * 86400) is None
    warning = storage.credential_lifetime_warning(keys, 8 * 86400)
    assert warning == (
        "Links signed with access keys last 7 days at most, but this job may run for 8 days: once its "
        "links expire, the render machine can no longer save frames and stops. Lower Max Hours or Max "
        "Cost so the job fits in 7 days."
    )

    session = replace(keys, access_key_id="ASIAIOSFODNN7EXAMPLE", session_token="token")
    assert storage.credential_lifetime_warning(session, 1800) is None
    assert "temporary" in (storage.credential_lifetime_warning(session, 4 * 3600) or "")

    # A profile whose credentials expire in two hours (as SSO and assumed roles do).
    expiry = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    script = tmp_path / "creds.py"
    script.write_text(
        "import json\nprint(json.dumps({'Version': 1, 'AccessKeyId': 'ASIAIOSFODNN7EXAMPLE', "
        f"'SecretAccessKey': 'x' * 40, 'SessionToken': 'token', 'Expiration': '{expiry}'}}))\n"
    )
    config = tmp_path / "config"
    config.write_text(f"[profile studio]\ncredential_process = {sys.executable} {script}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    profile = AwsSettings(profile="studio")
    assert storage.credential_lifetime_warning(profile, 3600) is None
    warning = storage.credential_lifetime_warning(profile, 10 * 3600)
    assert warning is not None and "expires in 2 hours" in warning and "10 hours" in warning
    assert "Sign in again just before you launch" in warning


def test_credential_lifetime_of_an_assumed_role_is_read_not_guessed(aws, tmp_path, monkeypatch):
    """Assumed roles (and SSO) hand back deferred credentials with no expiry until first used:
    the warning fetches them and reads the real one, instead of guessing "an hour"."""
    config = tmp_path / "config"
    config.write_text(
        "[profile base]\naws_access_key_id = AKIAEXAMPLETESTKEY00\naws_secret_access_key = test-secret\n"
        "[profile studio]\nrole_arn = arn:aws:iam::123456789012:role/render\nsource_profile = base\n"
        f"duration_seconds = 900\nregion = us-east-1\nendpoint_url = {aws.url}\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    role = AwsSettings(profile="studio")
    # A 15-minute role session and a job that may run 50 minutes: said, in minutes.
    warning = storage.credential_lifetime_warning(role, 50 * 60)
    assert warning is not None
    assert "Your AWS sign-in expires in 15 minutes" in warning or "in 14 minutes" in warning
    assert "may run for 50 minutes" in warning
    assert storage.credential_lifetime_warning(role, 10 * 60) is None


# --- outputs ---------------------------------------------------------------------------


def test_list_new_frames_since_a_marker(aws, tmp_path):
    bucket = storage.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    s3 = client(aws.settings, "s3")
    for frame in range(1, 6):
        s3.put_object(Bucket=bucket, Key=f"{frames_prefix('j1')}{frame:04d}.png", Body=b"png")
    first = storage.list_objects(aws.settings, bucket, frames_prefix("j1"))
    assert len(first) == 5 and first[0].size == 3
    newer = storage.list_objects(aws.settings, bucket, frames_prefix("j1"), start_after=first[1].key)
    assert [o.key.rsplit("/", 1)[1] for o in newer] == ["0003.png", "0004.png", "0005.png"]


def test_download_is_atomic(aws, tmp_path):
    bucket = storage.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    client(aws.settings, "s3").put_object(
        Bucket=bucket, Key="jobs/j1/out/frames/0001.exr", Body=b"x" * (3 * MiB)
    )
    dest = tmp_path / "frames" / "0001.exr"
    storage.download(aws.settings, bucket, "jobs/j1/out/frames/0001.exr", dest)
    assert dest.read_bytes() == b"x" * (3 * MiB)

    # A failed download leaves the previous file as it was and no temporary file behind.
    with pytest.raises(CloudError):
        storage.download(aws.settings, bucket, "jobs/j1/out/frames/missing.exr", dest)
    assert dest.read_bytes() == b"x" * (3 * MiB)
    assert os.listdir(dest.parent) == ["0001.exr"]


def test_delete_job_data_keeps_other_jobs_and_inputs(aws, tmp_path):
    bucket = storage.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    s3 = client(aws.settings, "s3")
    for key in [
        "jobs/j1/job.json",
        "jobs/j1/out/frames/0001.png",
        "jobs/j10/job.json",
        "jobs/j2/job.json",
        "cas/abc",
    ]:
        s3.put_object(Bucket=bucket, Key=key, Body=b"{}")
    assert storage.delete_job_data(aws.settings, bucket, "j1") == 2
    left = {o.key for o in storage.list_objects(aws.settings, bucket, "")}
    assert left == {"jobs/j10/job.json", "jobs/j2/job.json", "cas/abc"}


# --- one registry, shared by every Blender on this computer ------------------------------


def _remember_regions(path: str, prefix: str, count: int, barrier) -> None:  # type: ignore[no-untyped-def]
    """One Blender instance: remembers `count` regions of its own, as fast as it can."""
    registry = storage.BucketRegistry(Path(path))
    barrier.wait(60)
    for index in range(count):
        registry.remember(f"{prefix}-{index}", bucket=f"cloud-render-{prefix}{index}", configured=True)


def test_two_processes_remembering_different_regions_both_end_up_in_the_file(tmp_path):
    import multiprocessing

    path = tmp_path / "state" / "buckets.json"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [
        context.Process(target=_remember_regions, args=(str(path), name, 40, barrier)) for name in ("a", "b")
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    regions = json.loads(path.read_text())
    assert set(regions) == {f"{name}-{i}" for name in ("a", "b") for i in range(40)}
    assert regions["b-39"] == {"bucket": "cloud-render-b39", "configured": True}
    # Written through a temporary file renamed into place: nothing half-written is left.
    assert sorted(p.name for p in path.parent.iterdir()) == ["buckets.json", "buckets.json.lock"]


def test_two_submits_at_once_in_one_region_make_one_bucket(aws, tmp_path):
    registry = storage.bucket_registry(tmp_path / "state")
    barrier = threading.Barrier(2)
    found: list[str] = []

    def submit() -> None:
        barrier.wait(30)
        found.append(storage.ensure_bucket(aws.settings, storage.bucket_registry(tmp_path / "state")))

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(found) == 2 and found[0] == found[1]
    assert [b["Name"] for b in client(aws.admin, "s3").list_buckets()["Buckets"]] == [found[0]]
    assert registry.get("us-east-1")["bucket"] == found[0]


def test_an_older_registry_is_adopted_without_losing_regions(aws, tmp_path):
    from cloud.job.cloud_steps import CloudSteps

    older = tmp_path / "buckets.json"  # where jobs kept their own registry before
    west = storage.ensure_bucket(aws.settings.in_region("us-west-2"), older)
    east = storage.ensure_bucket(aws.settings, tmp_path / "state" / "buckets.json")
    steps = CloudSteps(tmp_path)
    assert steps.ensure_bucket(aws.settings, storage.DEFAULT_EXPIRE_DAYS) == east
    assert steps.ensure_bucket(aws.settings.in_region("us-west-2"), storage.DEFAULT_EXPIRE_DAYS) == west
    assert not older.exists()
    assert {b["Name"] for b in client(aws.admin, "s3").list_buckets()["Buckets"]} == {east, west}


def test_a_bucket_set_up_by_an_older_version_gets_todays_rules_on_its_next_use(aws, tmp_path):
    """Buckets made before the Blender cache expired had no rule for it: nothing may bill forever,
    so a bucket the registry knows from an older set-up is set up again."""
    settings = aws.settings.in_region("eu-west-1")
    s3 = client(aws.admin.in_region("eu-west-1"), "s3")  # as an older version left it
    s3.create_bucket(Bucket="cloud-render-old", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    registry = tmp_path / "buckets.json"
    registry.write_text(
        json.dumps({"eu-west-1": {"bucket": "cloud-render-old", "configured": True, "expire_days": 14}})
    )
    assert storage.ensure_bucket(settings, registry) == "cloud-render-old"
    rules = {r["ID"] for r in s3.get_bucket_lifecycle_configuration(Bucket="cloud-render-old")["Rules"]}
    assert "expire-blender-cache" in rules
    entry = json.loads(registry.read_text())["eu-west-1"]
    assert entry["setup_version"] == storage.BUCKET_SETUP_VERSION
