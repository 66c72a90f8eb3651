"""A resubmitted shot knows its long frames: the machines' per-frame times, kept in the job's
record, become the next job's `frame_seconds` (cloud/job/frame_history.py).

The machine writes through the job's presigned POST to the emulated S3 (moto over HTTP), as in
test_machine_output.py; the job thread reads it through the contract and keeps it in the record.
And a re-run of one machine's job skips every frame already uploaded, over several listing pages.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud.job import frame_history
from cloud.job.events import EventQueue, LogLines
from cloud.job.job_thread import JobRunner
from cloud.job.records import JobRequest, RecordStore, Stage, new_job_id
from cloud.machine import contract
from tests.unit.test_machine_output import followed_job

FRAMES = [1, 2, 3, 4]
DRIVERS = {"adaptive": "off", "bounces": "12,4,4,12,0,8", "denoiser": "OPENIMAGEDENOISE", "time_limit": "0"}
SETTINGS = {
    "engine": "CYCLES",
    "render_samples": 16,
    "render_pixels": 64 * 64,
    "render_drivers": frame_history.drivers_text(DRIVERS),
}


def request_for(record_dir: Path, **changes) -> JobRequest:  # type: ignore[no-untyped-def]
    """A new job of the scene test_machine_output's records are of (tests.factories.job_fields)."""
    fields = {
        "job_id": new_job_id(),
        "blend_copy": record_dir / "copy.blend",
        "blend_name": "/p/shot.blend",
        "scene_name": "Scene",
        "frames": [1, 2, 3, 4, 5],
        "output_dir": record_dir / "out",
        "region": "us-east-1",
        "instance_type": "c5.2xlarge",
        "spot": False,
        "max_cost": 5.0,
        "max_hours": 2.0,
        "price_per_hour": 0.34,
        "blender_version": "5.0.1",
        **SETTINGS,
        **changes,
    }
    return JobRequest(**fields)


def logged(events: EventQueue) -> str:
    taken = events.drain(budget_s=1.0, limit=100_000)
    return "\n".join(line for e in taken if isinstance(e, LogLines) for line in e.lines)


def finished_job(aws, tmp_path: Path, status_seconds: object, done_seconds: object):  # type: ignore[no-untyped-def]
    """A job whose machine posts a status and then done.json with these frame_seconds, followed to its end."""
    runner, events, machine = followed_job(
        aws,
        tmp_path,
        FRAMES,
        tmp_path / "renders",
        stage=Stage.RENDERING.value,
        frames_done=FRAMES,
        **SETTINGS,
    )
    machine.put_json(
        "status.json", {"state": "rendering", "frame": 3, "seq": 1, "frame_seconds": status_seconds}
    )
    runner.poll_outputs()
    machine.put_json("done.json", {"frames_done": FRAMES, "seconds": 9.0, "frame_seconds": done_seconds})
    final = runner.final_state()
    assert final is not None and final[0] is Stage.DONE
    runner.finish(final)
    return runner, events


def test_a_second_job_of_the_scene_gets_the_times_the_machine_reported(aws, tmp_path):
    """Status (the last frames) and done.json (all) land in the record; the next job of the same
    scene and settings gets them as they were, scaled by samples and pixels when those changed,
    and a frame the first job did not render gets the median of the known ones."""
    reported = {"1": 2.5, "2": 10.0, "3": 4.0, "4": 3.0}
    runner, events = finished_job(aws, tmp_path, {"1": 2.5, "2": 10.0}, reported)
    saved = RecordStore(tmp_path / "jobs").load(runner.record.job_id)
    assert saved.stage == Stage.DONE.value and saved.frame_seconds == reported

    second = request_for(tmp_path)
    source, seconds = frame_history.expected_frame_seconds(second, [saved])
    assert source == saved.job_id
    assert seconds == {1: 2.5, 2: 10.0, 3: 4.0, 4: 3.0, 5: 3.5}  # 5: median of the four

    doubled = request_for(tmp_path, render_samples=32, render_pixels=32 * 64)  # 2x samples, half the pixels
    assert frame_history.expected_frame_seconds(doubled, [saved])[1] == seconds
    more = request_for(tmp_path, render_samples=64)
    assert frame_history.expected_frame_seconds(more, [saved])[1][2] == pytest.approx(40.0)

    # The job thread fills the request from its store before launch and says so; the spec gets it.
    thread = JobRunner(saved, aws.settings, events, runner.store, runner.steps)
    thread.expect_frame_seconds(second)
    assert second.frame_seconds == seconds
    assert f"Frame times from your last job of this scene ({saved.job_id}, the same sampling" in logged(
        events
    )
    spec = contract.spec_frame_seconds(second.frame_seconds, second.frames)
    assert spec == {"1": 2.5, "2": 10.0, "3": 4.0, "4": 3.0, "5": 3.5}


def test_a_one_frame_job_keeps_its_time_for_the_parts_and_says_nothing_of_order(aws, tmp_path):
    """A still after a shot of the same scene: one frame has no order to choose, so the log
    says nothing of "the longest frames" first; its time stays in the request, where a split
    still's spot parts are cut by it (cloud/job/still_plan.py)."""
    runner, events = finished_job(aws, tmp_path, None, {"1": 2.0, "2": 3.0})
    events.drain(budget_s=1.0, limit=100_000)
    saved = RecordStore(tmp_path / "jobs").load(runner.record.job_id)
    still = request_for(tmp_path, frames=[1])
    JobRunner(saved, aws.settings, events, runner.store, runner.steps).expect_frame_seconds(still)
    assert still.frame_seconds == {1: 2.0}
    assert "Frame times" not in logged(events)


@pytest.mark.parametrize(
    "change",
    [
        {"blend_name": "/p/other_shot.blend"},
        {"scene_name": "Scene.001"},
        {"instance_type": "g4dn.xlarge"},
        {"engine": "BLENDER_EEVEE_NEXT"},
    ],
)
def test_another_scene_machine_type_or_engine_gets_none(aws, tmp_path, change):
    runner, _ = finished_job(aws, tmp_path, None, {"1": 2.0, "2": 3.0})
    saved = RecordStore(tmp_path / "jobs").load(runner.record.job_id)
    assert frame_history.expected_frame_seconds(request_for(tmp_path, **change), [saved]) == ("", {})
    assert frame_history.expected_frame_seconds(request_for(tmp_path), [saved])[1]  # the control


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"adaptive": "0.01/0"}, "adaptive sampling"),
        ({"denoiser": "off"}, "denoiser"),
        ({"bounces": "4,1,1,2,0,4"}, "light paths"),
        ({"time_limit": "30"}, "time limit"),
    ],
)
def test_times_rendered_under_other_sampling_are_not_carried_and_the_log_says_why(
    aws, tmp_path, change, said
):
    """Issue 26, item 4: an earlier job with adaptive sampling on, another denoiser or other light
    paths predicted 3-5 s a frame for frames of 66-77 s. Its times are not carried, and the job
    log says which setting differed instead of quoting them."""
    runner, events = finished_job(aws, tmp_path, None, {"1": 2.0, "2": 3.0})
    events.drain(budget_s=1.0, limit=100_000)
    saved = RecordStore(tmp_path / "jobs").load(runner.record.job_id)
    request = request_for(tmp_path, render_drivers=frame_history.drivers_text({**DRIVERS, **change}))
    assert frame_history.expected_frame_seconds(request, [saved]) == ("", {})
    JobRunner(saved, aws.settings, events, runner.store, runner.steps).expect_frame_seconds(request)
    assert request.frame_seconds == {}
    log = logged(events)
    assert f"Frame times of your last job of this scene ({saved.job_id}) not used: its {said} differed" in log
    assert "expected; the longest frames start first" not in log


def test_with_adaptive_sampling_on_other_samples_are_not_scaled(tmp_path):
    """Samples and pixels scale a time only with adaptive sampling off: with it on, the samples
    are a ceiling, and a frame stops where its noise does."""
    from tests.factories import job_record

    adaptive = {**SETTINGS, "render_drivers": frame_history.drivers_text({**DRIVERS, "adaptive": "0.01/0"})}
    earlier = job_record(tmp_path, frames=FRAMES, created=100.0, frame_seconds={"1": 4.0}, **adaptive)
    same = request_for(tmp_path, **{k: v for k, v in adaptive.items()})
    assert frame_history.expected_frame_seconds(same, [earlier])[1][1] == pytest.approx(4.0)
    more = request_for(tmp_path, **{**adaptive, "render_samples": 256})
    assert frame_history.expected_frame_seconds(more, [earlier]) == ("", {})
    assert frame_history.differing(earlier, more) == ["samples (with adaptive sampling on)"]
    # A job recorded before the drivers were (none stored) does not lend its times either.
    older = job_record(
        tmp_path, frames=FRAMES, created=50.0, frame_seconds={"1": 4.0}, **{**SETTINGS, "render_drivers": ""}
    )
    assert frame_history.expected_frame_seconds(request_for(tmp_path), [older]) == ("", {})
    assert frame_history.differing(older, request_for(tmp_path)) == ["render settings"]


def test_the_most_recent_matching_job_wins(tmp_path):
    from tests.factories import job_record

    old = job_record(tmp_path, frames=FRAMES, created=100.0, frame_seconds={"1": 1.0}, **SETTINGS)
    new = job_record(tmp_path, frames=FRAMES, created=200.0, frame_seconds={"1": 7.0}, **SETTINGS)
    other = job_record(
        tmp_path, frames=FRAMES, created=300.0, frame_seconds={"1": 9.0}, **{**SETTINGS, "engine": "X"}
    )
    source, seconds = frame_history.expected_frame_seconds(request_for(tmp_path), [old, other, new])
    assert source == new.job_id and set(seconds.values()) == {7.0}
    # A damaged local record (a time out of bounds) is passed over for the next one.
    new.frame_seconds = {"1": -5.0}
    assert frame_history.expected_frame_seconds(request_for(tmp_path), [old, new])[0] == old.job_id


HOSTILE = [
    {"1": -1.0},
    {"1": 0.0},
    {"1": float("nan")},
    {"1": float("inf")},
    {"1": 1e300},
    {"1": "2.0"},
    {"1": True},
    {"9": 1.0},  # a frame the job does not have
    {"x": 1.0},
    {"1.5": 1.0},
    {"0001000000000": 1.0},
    [1.0, 2.0],
    "1:2.0",
]


@pytest.mark.parametrize("hostile", HOSTILE, ids=[json.dumps(h)[:30] for h in HOSTILE])
def test_hostile_frame_times_are_refused_and_the_job_still_ends(aws, tmp_path, hostile):
    runner, events = finished_job(aws, tmp_path, hostile, hostile)
    text = logged(events)
    assert "Ignored what the machine wrote" in text and "frame_seconds" in text
    saved = RecordStore(tmp_path / "jobs").load(runner.record.job_id)
    assert saved.stage == Stage.DONE.value and saved.frame_seconds == {}


def test_more_frame_times_than_the_job_has_frames_are_refused(aws, tmp_path):
    too_many = {str(f): 1.0 for f in range(1, contract.MAX_STATUS_FRAME_SECONDS + 2)}
    with pytest.raises(contract.ContractError):
        contract.parse_status({"state": "rendering", "frame_seconds": too_many}, list(range(1, 1000)))
    with pytest.raises(contract.ContractError):
        contract.parse_frame_seconds({"1": 1.0, "2": 1.0}, "done", {1, 2}, 1)


def test_the_spec_takes_only_bounded_times_of_the_jobs_frames():
    given = {1: 2.0, 2: float("nan"), 3: -1.0, 4: 1e300, 5: 0.0, 99: 3.0, 6: 1.23456}
    assert contract.spec_frame_seconds(given, [1, 2, 3, 4, 5, 6]) == {"1": 2.0, "6": 1.235}


def test_a_rerun_of_one_machine_skips_every_frame_marked_over_several_pages(aws, tmp_path):
    """One machine marks each frame it uploaded (marks/rendered-<f>); the spec lists the marks in
    pages (Ec2Engine.spec_extras, pages of 4 here as a stand-in for S3's 1000: moto honours
    MaxKeys and StartAfter), so a re-run finds all 9 of 13 frames, more than one page holds."""
    from cloud.aws import storage
    from cloud.aws.session import client
    from cloud.job.ec2_engine import Ec2Engine
    from cloud.machine.supervisor import Supervisor
    from cloud.machine.transport import list_pages
    from tests.factories import job_record

    bucket, frames = "cloud-render-marks-test", list(range(1, 14))
    client(aws.settings, "s3").create_bucket(Bucket=bucket)
    record = job_record(tmp_path, frames=frames, bucket=bucket)
    engine = Ec2Engine()
    engine.list_page = 4
    pages = engine.spec_extras(aws.settings, record, 600)["mark_list_urls"]
    assert len(pages) == 4
    post = storage.presign_outputs(aws.settings, bucket, record.job_id, 600)
    spec = {
        "job_id": record.job_id,
        "frames": frames,
        "upload_url": post["url"],
        "upload_fields": post["fields"],
        "upload_prefix": contract.out_prefix(record.job_id),
        "mark_list_urls": pages,
    }
    first = Supervisor(spec, str(tmp_path / "run1"))
    uploaded = [1, 2, 3, 5, 8, 10, 11, 12, 13]
    for frame in uploaded:  # as the upload worker does after each frame's upload
        first.mark_uploaded(frame)
    assert len(list_pages(pages[:1], "one page", print)) == 4  # one page alone would miss five
    again = Supervisor(spec, str(tmp_path / "run2"))
    assert again.marked_frames() == uploaded
    # A spec without mark pages (many machines: claims do this) writes and reads no marks.
    quiet = Supervisor({**spec, "mark_list_urls": []}, str(tmp_path / "run3"))
    quiet.mark_uploaded(4)
    assert quiet.marked_frames() == [] and again.marked_frames() == uploaded
