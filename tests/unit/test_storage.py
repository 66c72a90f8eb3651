"""Objects in the bucket, against moto: small JSON documents, the machine's presigned access,
listing, download and delete."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import requests

from cloud.aws import bucket_setup, storage, uploads
from cloud.aws.session import AwsSettings, client
from cloud.errors import CloudError
from cloud.machine.contract import frames_prefix, out_prefix
from tests.unit.test_uploads import make_files

KiB, MiB = 1024, 1024 * 1024

# --- small JSON objects ----------------------------------------------------------------


def test_json_round_trip_and_write_once(aws, tmp_path):
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
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
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    files = make_files(tmp_path, {"scene.blend": 100 * KiB, "tex/wood.png": 20 * KiB})
    uploads.upload_files(aws.settings, bucket, files)
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
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
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
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    s3 = client(aws.settings, "s3")
    for frame in range(1, 6):
        s3.put_object(Bucket=bucket, Key=f"{frames_prefix('j1')}{frame:04d}.png", Body=b"png")
    first = storage.list_objects(aws.settings, bucket, frames_prefix("j1"))
    assert len(first) == 5 and first[0].size == 3
    newer = storage.list_objects(aws.settings, bucket, frames_prefix("j1"), start_after=first[1].key)
    assert [o.key.rsplit("/", 1)[1] for o in newer] == ["0003.png", "0004.png", "0005.png"]


def test_download_is_atomic(aws, tmp_path):
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
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
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
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
