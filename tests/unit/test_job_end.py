"""Issue 24, item 1, on many machines: the last machine to end sends the job's one e-mail, whose
ending sums up every machine's (cloud/machine/job_end.py). The machines' real code over the
job's presigned links, real HTTP to moto through the strict layer; AWS's delivery played by
tests/mail_delivery.py."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest

from cloud.aws import bucket_setup, job_mail, storage
from cloud.aws.session import client
from cloud.machine import contract, job_end
from cloud.machine.batch_worker import BatchSupervisor
from tests.mail_delivery import deliver

EMAIL = "artist@example.com"
FRAMES = [1, 2, 3, 4]


@pytest.fixture
def wired(aws, tmp_path: Path) -> str:
    bucket = bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")
    job_mail.ensure_job_mail(aws.settings, bucket, EMAIL)
    return bucket


def job_spec(aws, bucket: str, job: str, machines: int) -> dict[str, Any]:
    """What the Batch engine puts in the spec for the end and the e-mail (batch_engine.spec_extras)."""
    settings = aws.settings
    post = storage.presign_outputs(settings, bucket, job, 3600)
    marks = [contract.rendered_mark(f) for f in FRAMES]
    return {
        "job_id": job,
        "frames": FRAMES,
        "upload_url": post["url"],
        "upload_fields": post["fields"],
        "upload_prefix": contract.out_prefix(job),
        "machine_count": machines,
        "machine_list_urls": {
            str(i): storage.list_page_links(settings, bucket, contract.marks_prefix(job, i), marks, 3600)
            for i in range(machines)
        },
        "ended_list_urls": storage.list_page_links(
            settings, bucket, contract.ended_prefix(job), [str(i) for i in range(machines)], 3600
        ),
        "notice_claim_url": storage.put_links(settings, bucket, {"m": contract.mail_claim_key(job)}, 3600)[
            "m"
        ],
        "notice": {"label": "forest.blend", "usd_per_hour": 0.5, "keep_days": 14},
    }


class Racing(BatchSupervisor):
    """A machine whose listing waits until every racer has written its end mark: the worst case
    of machines that end at once (each lists only after its own mark landed)."""

    barrier: threading.Barrier

    def frames_marked(self) -> set[int]:
        self.barrier.wait(timeout=60)
        return super().frames_marked()


def notices(aws, bucket: str, job: str) -> list[list[str]]:
    listed = client(aws.admin, "s3").list_objects_v2(Bucket=bucket, Prefix=f"jobs/{job}/out/notice/")
    return [o["Key"].rsplit("/", 2)[-2:] for o in listed.get("Contents", [])]


def mark(aws, bucket: str, job: str, machine: int, frames: list[int]) -> None:
    s3 = client(aws.admin, "s3")
    for f in frames:
        s3.put_object(
            Bucket=bucket, Key=contract.marks_prefix(job, machine) + contract.rendered_mark(f), Body=b""
        )


def test_two_machines_that_end_at_once_send_one_notice(aws, wired, tmp_path):
    job = "20261207-180000-aaaaaa"
    spec = job_spec(aws, wired, job, 2)
    mark(aws, wired, job, 0, [1, 2])  # frames 3 and 4 never arrive
    Racing.barrier = threading.Barrier(2)
    ends = {0: job_end.machine_end("failed", "", "no_gpu"), 1: job_end.machine_end("capped", "time_cap")}
    racers = [Racing(spec, str(tmp_path / f"m{i}"), index=i, attempt=1) for i in (0, 1)]
    threads = [threading.Thread(target=m.tell_if_last, args=(ends[m.index],)) for m in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    # Both saw both ends; the mail claim let exactly one write the notice: capped over failed.
    [(ending, words)] = notices(aws, wired, job)
    assert ending == "capped"
    assert words.startswith("forest.blend_stopped_at_its_time_cap_2_of_4_frames_done_about_"), words
    [mail] = deliver(aws.admin, wired)
    assert mail.to == (EMAIL,) and mail.rule.endswith("capped") and words in mail.text


def test_the_last_machine_to_end_sends_and_the_first_does_not(aws, wired, tmp_path):
    job = "20261207-180100-bbbbbb"
    spec = job_spec(aws, wired, job, 2)
    mark(aws, wired, job, 1, [1, 3])
    first = BatchSupervisor(spec, str(tmp_path / "m0"), index=0, attempt=1)
    first.tell_if_last(job_end.machine_end("failed", "", "gpu_memory"))
    assert notices(aws, wired, job) == []  # machine 1 is still rendering
    last = BatchSupervisor(spec, str(tmp_path / "m1"), index=1, attempt=1)
    last.tell_if_last(job_end.machine_end("interrupted", "spot"))
    [(ending, words)] = notices(aws, wired, job)
    assert ending == "failed" and words.startswith("forest.blend_failed_gpu_memory_2_of_4_frames_done_"), (
        words
    )
    # Every frame marked: done, whatever the machines said (and the claim is already taken).
    mark(aws, wired, job, 0, [2, 4])
    last.tell_if_last(job_end.machine_end("done", ""))
    assert len(notices(aws, wired, job)) == 1


def test_the_ending_sums_up_the_machines():
    done, capped, stopped = ("done", ""), ("capped", ""), ("stopped", "")
    assert job_end.job_ending({0: done}, 3, every_frame_marked=True) == done  # the rest never started
    assert job_end.job_ending({0: done, 1: capped}, 3, False) is None  # machine 2 has not ended
    assert job_end.job_ending({0: ("failed", "crash"), 1: capped, 2: stopped}, 3, False) == capped
    failed = {0: stopped, 1: ("failed", "no_gpu"), 2: ("failed", "crash")}
    assert job_end.job_ending(failed, 3, False) == ("failed", "no_gpu")  # the first failure's kind
    assert job_end.job_ending({0: done, 1: stopped}, 2, False) == stopped
    assert job_end.machine_end("failed", "", "made up") == ("failed", "")


def test_forged_end_marks_are_ignored():
    def etag(body: bytes) -> str:
        return hashlib.md5(body, usedforsecurity=False).hexdigest()

    listed = {
        "0": etag(contract.end_mark_body("done")),
        "1": etag(b'{"ending": "exploded"}'),  # no end an honest machine writes
        "7": etag(contract.end_mark_body("capped")),  # no machine of a 2-machine job
        "x": etag(contract.end_mark_body("capped")),
    }
    assert job_end.read_ends(listed, 2) == {0: ("done", "")}
