"""Issue 24, item 4: the account's jobs on any computer, read from its buckets.

A job's summary (`jobs/<id>/job.json`, cloud/job/summary.py) is written by the add-on, but anyone
holding the daily key can write the bucket: here the daily-policy user writes hostile ones and
the listing skips them with a log line. Real HTTP to moto through the strict IAM layer, as the
artist's user holding the Render policy alone (after Set Up made the buckets)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from cloud.aws import bucket_listing, bucket_setup, storage
from cloud.aws.bucket_registry import bucket_registry
from cloud.job.account_jobs import MAX_JOBS, list_account_jobs
from cloud.job.events import EventQueue
from cloud.job.manager import JobManager
from cloud.job.records import Stage
from cloud.job.summary import MAX_SUMMARY_BYTES, parse_summary, summary_of
from cloud.machine import contract
from dev.emulator import detach
from tests import quota_fixtures
from tests.factories import job_record

account = quota_fixtures.account
quotas = quota_fixtures.quotas
public_params = quota_fixtures.public_params


@pytest.fixture
def daily(aws, tmp_path):
    """A bucket in us-east-1 and one in us-west-2, made by Set Up on a first computer; then the
    artist holds the Render policy alone. (settings, {bucket: region})."""
    registry = bucket_registry(tmp_path / "first" / "state")
    east = bucket_setup.ensure_bucket(aws.settings, registry)
    west = bucket_setup.ensure_bucket(aws.settings.in_region("us-west-2"), registry)
    detach(aws.admin, "setup")
    return aws.settings, {east: "us-east-1", west: "us-west-2"}


def summary(tmp_path: Path, job_id: str, **changes) -> dict:
    record = job_record(tmp_path / "renders", job_id=job_id, launch_id="i-0123456789abcdef0", **changes)
    record.stage = changes.get("stage", Stage.RENDERING.value)
    return summary_of(record)


def timed_id(n: int) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(1_780_000_000 + n * 60)) + f"-{n:06x}"


def test_the_summary_holds_nothing_private_and_reads_back(tmp_path):
    record = job_record(
        "/home/artist/secret/renders/x",
        blend_name="/home/artist/secret/shot.blend",
        launch_id="i-0123456789abcdef0",
        bucket="cloud-render-abc",
    )
    record.page_url = "https://example.invalid/presigned?X-Amz-Signature=abc"
    text = json.dumps(summary_of(record))
    assert "/home" not in text and "secret" not in text and "Signature" not in text
    back = parse_summary(text.encode(), record.job_id)
    assert (back.blend_file, back.frames, back.launch_id, back.engine) == (
        "shot.blend",
        [1],
        record.launch_id,
        "ec2",
    )
    here = back.to_record("cloud-render-abc", "/here/out", "/here/mine.blend")
    assert (here.output_dir, here.blend_name) == ("/here/out", "/here/mine.blend")
    assert summary_of(here)["blend_file"] == "shot.blend"  # a follower's rewrite keeps the name


def test_a_second_computer_finds_the_buckets_with_no_registry_of_its_own(daily):
    settings, buckets = daily
    assert bucket_listing.account_buckets(settings, {}) == buckets


def test_hostile_summaries_are_skipped_with_a_log_line_and_not_shown(daily, tmp_path, caplog):
    settings, buckets = daily
    bucket = next(b for b, region in buckets.items() if region == "us-east-1")
    good = timed_id(1)

    def put(key: str, body: bytes) -> None:
        storage.put_text(settings, bucket, key, body.decode("latin-1"))

    storage.put_json(settings, bucket, contract.record_key(good), summary(tmp_path, good))
    oversized = summary(tmp_path, timed_id(2))
    oversized["scene"] = "x" * 200
    oversized["pad"] = "y" * MAX_SUMMARY_BYTES
    storage.put_json(settings, bucket, contract.record_key(timed_id(2)), oversized)
    wrong = summary(tmp_path, timed_id(3))
    wrong.update(frames="1-10", machines="2", spot="yes")
    storage.put_json(settings, bucket, contract.record_key(timed_id(3)), wrong)
    # A folder whose name is no job id, and a summary naming another job than its folder's.
    storage.put_json(settings, bucket, "jobs/..%2F..%2Fetc/job.json", summary(tmp_path, good))
    storage.put_json(settings, bucket, "jobs/a.b/job.json", summary(tmp_path, good))
    storage.put_json(settings, bucket, "jobs/../job.json", summary(tmp_path, good))
    elsewhere = summary(tmp_path, "../../etc")
    storage.put_json(settings, bucket, contract.record_key(timed_id(4)), elsewhere)
    put(contract.record_key(timed_id(5)), b"\xff\xfe not json")
    put(contract.record_key(timed_id(6)), b"[" * 5000 + b"]" * 5000)

    with caplog.at_level(logging.WARNING, logger="cloud.job.account_jobs"):
        listing = list_account_jobs(settings.in_region("us-east-1"), buckets)
    assert [job.job_id for job in listing.jobs] == [good]
    said = "\n".join(record.getMessage() for record in caplog.records)
    assert said == "\n".join(listing.skipped)
    for job_id in (timed_id(n) for n in range(2, 7)):
        assert f"jobs/{job_id}/job.json" in said, job_id
    assert "over 262144 bytes" in said
    assert "frames must be a list" in said
    assert (
        "jobs/../: not a job id" in said
        and "jobs/a.b/: not a job id" in said
        and "jobs/..%2F..%2Fetc/: not a job id" in said
    )
    assert "names job '../../etc'" in said


def test_the_listing_is_bounded_to_the_newest_jobs(daily, tmp_path):
    settings, buckets = daily
    bucket = next(b for b, region in buckets.items() if region == "us-west-2")
    west = settings.in_region("us-west-2")
    ids = [timed_id(n) for n in range(MAX_JOBS + 5)]
    for n, job_id in enumerate(ids):
        body = summary(tmp_path, job_id, region="us-west-2", created=1_780_000_000.0 + n * 60)
        storage.put_json(west, bucket, contract.record_key(job_id), body)
    listing = list_account_jobs(settings, buckets)
    assert [job.job_id for job in listing.jobs] == list(reversed(ids))[:MAX_JOBS]
    assert not listing.skipped and not listing.truncated


@pytest.mark.parametrize(
    ("written", "stage"),
    [
        ({}, "rendering"),
        ({"out/done.json": {"contract": 4}}, "done"),
        ({"out/error.json": {"contract": 4, "cause": "no GPU"}}, "failed"),
        ({"out/interrupted.json": {"contract": 4, "reason": "time_cap"}}, "capped"),
        ({"control/cancel.json": {}, "out/status.json": {"state": "rendering"}}, "cancelled"),
        # Blender killed by the cancel: the machine's error.json does not make it a failure.
        ({"control/cancel.json": {}, "out/error.json": {"contract": 4, "cause": "killed"}}, "cancelled"),
        ({"control/cancel.json": {}, "out/done.json": {"contract": 4}}, "done"),
    ],
)
def test_the_bucket_decides_where_the_summary_lags(daily, tmp_path, written, stage):
    settings, buckets = daily
    bucket = next(b for b, region in buckets.items() if region == "us-east-1")
    job_id = timed_id(7)
    storage.put_json(settings, bucket, contract.record_key(job_id), summary(tmp_path, job_id))
    for name, body in written.items():
        storage.put_json(settings, bucket, f"jobs/{job_id}/{name}", body)
    [job] = list_account_jobs(settings, buckets).jobs
    assert job.summary.stage == "rendering" and job.stage == stage


@pytest.mark.parametrize(
    ("notices", "stage"),
    [
        ([], "rendering"),  # every machine's end written, no notice: still going, as before
        (["capped/shot_stopped_at_its_time_cap_2_of_4_frames_done_about_0.10_USD"], "capped"),
        (["failed/shot_failed_no_gpu_0_of_4_frames_done_about_0.10_USD"], "failed"),
        (["stopped/shot_stopped_0_of_4_frames_done_about_0.10_USD"], "interrupted"),
        (["exploded/shot_is_gone", "quote/shot_waits_for_your_answer"], "rendering"),  # forged, no end
        (["aaa/x", "done/shot_is_done_4_of_4_frames", "exploded/y"], "done"),
    ],
)
def test_a_batch_job_ends_as_its_notice_says(daily, tmp_path, notices, stage):
    """Many machines write their end documents each in their own folder; the last to end writes
    the job's one e-mail notice, and its ending is what another computer reads."""
    settings, buckets = daily
    bucket = next(b for b, region in buckets.items() if region == "us-east-1")
    job_id = timed_id(8)
    storage.put_json(settings, bucket, contract.record_key(job_id), summary(tmp_path, job_id, machines=2))
    for i in range(2):
        storage.put_json(settings, bucket, f"jobs/{job_id}/out/machines/{i}/error.json", {"contract": 4})
    for key in notices:
        storage.put_text(settings, bucket, f"jobs/{job_id}/out/notice/{key}", "")
    [job] = list_account_jobs(settings, buckets).jobs
    assert job.summary.engine == "batch" and job.summary.stage == "rendering"
    assert job.stage == stage


def test_a_local_record_that_says_running_follows_the_bucket_when_it_ended(daily, tmp_path):
    """Cancelled from another computer while this one was closed: the record follows the bucket."""
    settings, buckets = daily
    bucket = next(b for b, region in buckets.items() if region == "us-east-1")
    manager = JobManager(tmp_path / "first" / "jobs", EventQueue(), lambda: settings)
    record = job_record(tmp_path / "renders", launch_id="i-0123456789abcdef0", bucket=bucket)
    record.stage = Stage.RENDERING.value
    manager.store.save(record)
    storage.put_json(settings, bucket, contract.record_key(record.job_id), summary_of(record))
    storage.put_json(settings, bucket, contract.cancel_key(record.job_id), {})

    listing = manager.account_jobs()
    assert [(job.job_id, job.stage) for job in listing.jobs] == [(record.job_id, "cancelled")]
    after = manager.store.load(record.job_id)
    assert after.stage == "cancelled" and "as the bucket says" in after.message


def test_a_machine_of_a_job_going_on_elsewhere_is_not_forgotten_here(daily, tmp_path):
    settings, buckets = daily
    bucket = next(b for b, region in buckets.items() if region == "us-east-1")
    manager = JobManager(tmp_path / "second" / "jobs", EventQueue(), lambda: settings)
    going, ended = timed_id(8), timed_id(9)
    storage.put_json(settings, bucket, contract.record_key(going), summary(tmp_path, going))
    storage.put_json(settings, bucket, contract.record_key(ended), summary(tmp_path, ended, stage="done"))
    assert manager.is_job_live(going) is False  # nothing listed yet: unknown here
    _listing, elsewhere = manager.jobs_elsewhere()
    assert {job.job_id: job.stage for job in elsewhere} == {going: "rendering", ended: "done"}
    assert manager.is_job_live(going) is True and manager.is_job_live(ended) is False


def test_the_submitting_computer_ends_a_job_cancelled_elsewhere_as_cancelled(aws, tmp_path):
    """The machine, killed by another computer's cancel, wrote error.json as Blender died: the
    computer that follows the job reads the cancel mark and says what happened."""
    from tests.unit.test_machine_output import drained, followed_job

    runner, events, machine = followed_job(aws, tmp_path, [1, 2, 3], tmp_path / "renders")
    machine.put_json("error.json", {"kind": "crash", "cause": "Blender crashed with signal SIGTERM."})
    storage.put_json(aws.settings, runner.record.bucket, contract.cancel_key(runner.record.job_id), {})
    runner.run()  # its follow loop, here in the test's thread: it ends at once
    assert runner.record.stage == "cancelled"
    assert runner.record.message == "Cancelled from another computer. No frame was rendered."
    assert runner.cancelled_elsewhere and drained(events)
    shared = json.loads(machine_summary(aws, runner.record))
    assert shared["stage"] == "cancelled"  # the summary says it too, for every other computer


def machine_summary(aws, record) -> str:  # type: ignore[no-untyped-def]
    body = storage.get_bytes(
        aws.settings, record.bucket, contract.record_key(record.job_id), MAX_SUMMARY_BYTES
    )
    assert body is not None
    return body.decode()


def test_a_key_not_allowed_to_list_bucket_names_still_lists_this_computers_buckets(aws, tmp_path):
    """A Render policy copied before it allowed s3:ListAllMyBuckets (modelled by a user whose
    policy lacks it): the registry's buckets list; with none, the refusal names the permission."""
    from dataclasses import replace

    from cloud.errors import CloudError
    from dev.emulator import create_artist

    key, secret = create_artist(aws.admin, ("setup",), name="older")
    older = replace(aws.settings, access_key_id=key, secret_access_key=secret)
    known = {"cloud-render-0123": "eu-west-1"}
    assert bucket_listing.account_buckets(older, known) == known
    with pytest.raises(CloudError) as refused:
        bucket_listing.account_buckets(older, {})
    assert "s3:ListAllMyBuckets" in refused.value.message


def test_cancel_of_a_listed_job_not_followed_here_marks_it_and_stops_its_machine(account, tmp_path):
    """Cancel on a row of another computer's job: no record is made here; the cancel mark is
    written first, then its machine stopped (the first computer then ends it as cancelled)."""
    from cloud.aws import compute
    from cloud.aws.session import client

    settings = account.settings
    bucket = bucket_setup.ensure_bucket(settings, bucket_registry(tmp_path / "first" / "state"))
    job_id = timed_id(10)
    machine = compute.launch(
        settings, job_id=job_id, instance_type="g4dn.xlarge", user_data="#!/bin/bash\n", spot=False
    )
    record = job_record(tmp_path / "renders", job_id=job_id, launch_id=machine.instance_id, bucket=bucket)
    record.stage = Stage.RENDERING.value
    storage.put_json(settings, bucket, contract.record_key(job_id), summary_of(record))

    second = JobManager(tmp_path / "second" / "jobs", EventQueue(), lambda: settings)
    _listing, elsewhere = second.jobs_elsewhere()
    assert [job.job_id for job in elsewhere] == [job_id]
    assert [m.launch_id for m in second.forgotten_machines("us-east-1")] == []  # live elsewhere
    second.cancel(job_id)
    assert storage.etag(settings, bucket, contract.cancel_key(job_id)) is not None
    reply = client(account.moto_settings, "ec2").describe_instances(InstanceIds=[machine.instance_id])
    assert reply["Reservations"][0]["Instances"][0]["State"]["Name"] in ("shutting-down", "terminated")
    assert not second.store.path(job_id).exists()
    [job] = second.jobs_elsewhere()[1]
    assert job.stage == "cancelled"
