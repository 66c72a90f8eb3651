"""The artist's bucket, against moto: created per region, locked down, expiring; and the one
registry of them that every Blender on this computer shares."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from cloud.aws import bucket_registry, bucket_setup, storage
from cloud.aws.session import client
from cloud.errors import CloudError
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]

KiB, MiB = 1024, 1024 * 1024


# --- bucket ----------------------------------------------------------------------------


def test_bucket_is_created_in_its_region_and_locked_down(aws, tmp_path):
    settings = aws.settings.in_region("eu-west-1")
    bucket = bucket_setup.ensure_bucket(settings, tmp_path / "buckets.json")

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
    assert rules["expire-blender-cache"]["Expiration"]["Days"] == bucket_setup.BLENDER_CACHE_DAYS == 30
    # And the GPU kernel caches machines kept for the next ones, 14 days after their last write.
    assert rules["expire-kernel-cache"]["Filter"]["Prefix"] == "kernel-cache/"
    assert rules["expire-kernel-cache"]["Expiration"]["Days"] == bucket_setup.KERNEL_CACHE_DAYS == 14
    expiring = {r["Filter"]["Prefix"] for r in rules.values() if "Expiration" in r}
    assert expiring == {"jobs/", "cas/", "blender-cache/", "kernel-cache/"}

    remembered = json.loads((tmp_path / "buckets.json").read_text())
    assert remembered["eu-west-1"]["bucket"] == bucket and remembered["eu-west-1"]["configured"] is True


def test_tls_only_policy_refuses_plain_http(aws):
    """On real AWS (an https endpoint) the bucket refuses any request not made over TLS."""
    https = replace(aws.settings, endpoint_url=None)
    assert bucket_setup.serves_tls(https) and not bucket_setup.serves_tls(aws.settings)
    s3 = client(aws.settings, "s3")
    s3.create_bucket(Bucket="cloud-render-tls")
    bucket_setup.configure_bucket(s3, "cloud-render-tls", 14, tls_only=True)
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
    registry = bucket_registry.BucketRegistry(tmp_path / "buckets.json")
    first = bucket_setup.ensure_bucket(aws.settings, registry)
    assert bucket_setup.ensure_bucket(aws.settings, registry) == first
    assert len(client(aws.admin, "s3").list_buckets()["Buckets"]) == 1

    other = bucket_setup.ensure_bucket(aws.settings.in_region("ap-northeast-1"), registry)
    assert other != first

    # A shorter retention is applied to the same bucket.
    assert bucket_setup.ensure_bucket(aws.settings, registry, expire_days=3) == first
    rules = client(aws.admin, "s3").get_bucket_lifecycle_configuration(Bucket=first)["Rules"]
    assert {r["ID"]: r for r in rules}["expire-job-data"]["Expiration"]["Days"] == 3


def test_bucket_deleted_by_hand_is_replaced(aws, tmp_path):
    registry = bucket_registry.BucketRegistry(tmp_path / "buckets.json")
    first = bucket_setup.ensure_bucket(aws.settings, registry)
    client(aws.admin, "s3").delete_bucket(Bucket=first)
    second = bucket_setup.ensure_bucket(aws.settings, registry)
    assert second != first
    client(aws.admin, "s3").head_bucket(Bucket=second)
    assert registry.get("us-east-1")["bucket"] == second


# --- one registry, shared by every Blender on this computer ------------------------------


# One Blender instance: remembers `count` regions of its own, as fast as it can, once `go` exists.
# Plain processes, not multiprocessing: its Barrier starts a resource tracker that lives as long
# as the test worker, and the suite's no-process-left check rightly names it.
REMEMBER_REGIONS = r"""
import sys, time
from pathlib import Path
from cloud.aws import bucket_registry
path, prefix, count, ready, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5])
registry = bucket_registry.BucketRegistry(Path(path))
ready.touch()
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.001)
for index in range(count):
    registry.remember(f"{prefix}-{index}", bucket=f"cloud-render-{prefix}{index}", configured=True)
"""


def test_two_processes_remembering_different_regions_both_end_up_in_the_file(tmp_path):
    path = tmp_path / "state" / "buckets.json"
    go = tmp_path / "go"
    ready = {name: tmp_path / f"ready-{name}" for name in ("a", "b")}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", REMEMBER_REGIONS, str(path), name, "40", str(ready[name]), str(go)],
            cwd=ROOT,
        )
        for name in ("a", "b")
    ]
    try:
        wait_for("both processes to start", lambda: all(r.exists() for r in ready.values()), 60)
        go.touch()  # both at once, as two Blenders submitting together
        codes = [worker.wait(120) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert codes == [0, 0]
    regions = json.loads(path.read_text())
    assert set(regions) == {f"{name}-{i}" for name in ("a", "b") for i in range(40)}
    assert regions["b-39"] == {"bucket": "cloud-render-b39", "configured": True}
    # Written through a temporary file renamed into place: nothing half-written is left.
    assert sorted(p.name for p in path.parent.iterdir()) == ["buckets.json", "buckets.json.lock"]


def test_two_submits_at_once_in_one_region_make_one_bucket(aws, tmp_path):
    registry = bucket_registry.bucket_registry(tmp_path / "state")
    barrier = threading.Barrier(2)
    found: list[str] = []

    def submit() -> None:
        barrier.wait(30)
        found.append(
            bucket_setup.ensure_bucket(aws.settings, bucket_registry.bucket_registry(tmp_path / "state"))
        )

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
    west = bucket_setup.ensure_bucket(aws.settings.in_region("us-west-2"), older)
    east = bucket_setup.ensure_bucket(aws.settings, tmp_path / "state" / "buckets.json")
    steps = CloudSteps(tmp_path)
    assert steps.ensure_bucket(aws.settings, bucket_setup.DEFAULT_EXPIRE_DAYS) == east
    assert steps.ensure_bucket(aws.settings.in_region("us-west-2"), bucket_setup.DEFAULT_EXPIRE_DAYS) == west
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
    assert bucket_setup.ensure_bucket(settings, registry) == "cloud-render-old"
    rules = {r["ID"] for r in s3.get_bucket_lifecycle_configuration(Bucket="cloud-render-old")["Rules"]}
    assert "expire-blender-cache" in rules
    entry = json.loads(registry.read_text())["eu-west-1"]
    assert entry["setup_version"] == bucket_setup.BUCKET_SETUP_VERSION
