"""Quote first, the add-on's half: price the job from the machine's scout frames, then go on
by itself only under the cap, or wait for the artist. Real S3 (moto) carries quote and answer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cloud.aws.session import client
from cloud.job.cloud_steps import CloudSteps, scout_frames
from cloud.job.events import EventQueue, StageChanged
from cloud.job.job_thread import JobRunner
from cloud.job.records import RecordStore
from cloud.machine import contract
from tests.factories import job_record

BUCKET = "cloud-render-quote-test"


def runner_for(
    aws, tmp_path: Path, price: float, max_cost: float, frames: int = 10
) -> tuple[JobRunner, EventQueue]:
    s3 = client(aws.settings, "s3")
    s3.create_bucket(Bucket=BUCKET)
    record = job_record(
        tmp_path / "out",
        frames=list(range(1, frames + 1)),
        price_per_hour=price,
        max_cost=max_cost,
        bucket=BUCKET,
        launched_at=time.time() - 10,
        quote_first=True,
    )
    scouts = scout_frames(record.frames)
    quote = {
        "scout_frames": scouts,
        "seconds_per_frame": 1.0,
        "frames_total": frames,
        "frames_left": [f for f in record.frames if f not in scouts],  # as the machine writes it
    }
    s3.put_object(
        Bucket=BUCKET,
        Key=contract.out_prefix(record.job_id) + "quote.json",
        Body=json.dumps(quote, indent=1, sort_keys=True),
    )
    events = EventQueue()
    return JobRunner(
        record, aws.settings, events, RecordStore(tmp_path / "jobs"), CloudSteps(tmp_path)
    ), events


def go_answer(aws, job_id: str) -> dict:
    body = client(aws.settings, "s3").get_object(Bucket=BUCKET, Key=contract.control_key(job_id, "go.json"))[
        "Body"
    ]
    return json.loads(body.read())


def test_under_the_cap_the_job_goes_on_by_itself(aws, tmp_path):
    runner, _ = runner_for(aws, tmp_path, price=0.34, max_cost=5.0)
    runner.check_quote()
    assert runner.record.quote["under_cap"] is True
    assert go_answer(aws, runner.record.job_id) == {"go": True}


def test_over_the_cap_it_waits_for_the_artist_and_passes_on_the_answer(aws, tmp_path):
    # $3600/h: 10 s of boot plus 10 frames of 1 s, billed as EC2 does (one-minute minimum): $60.
    runner, events = runner_for(aws, tmp_path, price=3600.0, max_cost=0.5)
    runner.check_quote()
    assert runner.record.quote["under_cap"] is False
    assert runner.record.quote["projected_total"] == pytest.approx(60.0, rel=0.05)
    assert runner.record.stage == "quoted"
    stages = [e for e in events.drain(budget_s=1.0) if isinstance(e, StageChanged)]
    assert "Go on, or stop" in stages[-1].message
    with pytest.raises(Exception):  # noqa: B017 - nothing answered yet: no go.json exists
        go_answer(aws, runner.record.job_id)
    runner.answer_quote(False)
    assert go_answer(aws, runner.record.job_id) == {"go": False}


def test_scouts_are_first_middle_and_last():
    assert scout_frames(list(range(1, 101))) == [1, 51, 100]
    assert scout_frames([1, 2, 3]) == []


def test_the_quote_of_a_long_job_is_read(aws, tmp_path):
    """quote.json lists every frame left: 40000 frames is over the 256 kB allowed most machine
    documents, and the quote was refused, so the job could never go on or ask."""
    runner, _ = runner_for(aws, tmp_path, price=0.34, max_cost=5000.0, frames=40_000)
    runner.check_quote()
    assert runner.record.quote["under_cap"] is True
    assert go_answer(aws, runner.record.job_id) == {"go": True}
