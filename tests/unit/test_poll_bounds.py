"""Bounded work per poll (issue 23, item 2): log lines counted, plan.json read once, outputs bounded.

A hostile machine posts through the job's presigned POST to the emulated S3 (moto over HTTP), as
in test_machine_output.py, and the job thread reads it through its real poll.
"""

from __future__ import annotations

from pathlib import Path

from cloud.job import poll_bounds
from cloud.job.cloud_steps import CloudSteps
from cloud.job.events import LogLines
from cloud.machine import contract
from tests.unit.test_machine_output import drained, files_under, followed_job, log_text


def machine_lines(taken: list) -> list[str]:
    return [
        line for e in taken if isinstance(e, LogLines) for line in e.lines if "[cloud-render]" not in line
    ]


def test_one_poll_passes_on_a_bounded_number_of_log_lines_and_says_how_many_it_left_out(aws, tmp_path):
    """Three chunks of 30,000 short lines each, every chunk well under the size bound: one poll
    once queued all 90,000 for the panel."""
    runner, events, machine = followed_job(aws, tmp_path, [1], tmp_path / "out")
    for chunk in range(1, 4):
        machine.put(f"logs/{chunk:06d}.log", "".join(f"line {chunk}.{i}\n" for i in range(30_000)))
    runner.poll_outputs()
    taken = drained(events)
    assert len(machine_lines(taken)) == poll_bounds.MAX_LOG_LINES_PER_POLL
    assert f"{90_000 - poll_bounds.MAX_LOG_LINES_PER_POLL} lines of the machine's log left out" in log_text(
        taken
    )
    runner.poll_outputs()  # nothing new: nothing more, and nothing said
    assert machine_lines(drained(events)) == []


def test_log_chunks_are_counted_per_poll_and_the_rest_come_in_order(aws, tmp_path):
    runner, events, machine = followed_job(aws, tmp_path, [1], tmp_path / "out")
    count = poll_bounds.MAX_LOG_CHUNKS_PER_POLL + 4
    for chunk in range(1, count + 1):
        machine.put(f"logs/{chunk:06d}.log", f"chunk {chunk}\n")
    runner.poll_outputs()
    first = machine_lines(drained(events))
    runner.poll_outputs()
    assert first + machine_lines(drained(events)) == [f"chunk {n}" for n in range(1, count + 1)]
    assert len(first) == poll_bounds.MAX_LOG_CHUNKS_PER_POLL


class CountingSteps(CloudSteps):
    """The job's own steps, counting the objects read whole (what a poll costs)."""

    def __init__(self, state: Path) -> None:
        super().__init__(state)
        self.reads: list[str] = []

    def get_bytes(self, settings, bucket, key, max_bytes):  # type: ignore[no-untyped-def]
        self.reads.append(key.rsplit("/", 1)[-1])
        return super().get_bytes(settings, bucket, key, max_bytes)


def test_plan_json_is_read_once_and_again_only_when_it_changed(aws, tmp_path):
    """A 14 MB plan read every poll cost 0.6 s a poll; a quoted job's machine rewrites it once
    (its second Blender run), and that plan is read."""
    runner, _events, machine = followed_job(aws, tmp_path, [1, 2], tmp_path / "out")
    runner.steps = CountingSteps(tmp_path / "state")
    machine.put_json("plan.json", {"frames": [{"name": "f_0001.png", "frame": 1}]})
    for _ in range(3):
        runner.poll_outputs()
    assert runner.steps.reads.count("plan.json") == 1
    machine.put_json(
        "plan.json", {"frames": [{"name": "f_0001.png", "frame": 1}, {"name": "f_0002.png", "frame": 2}]}
    )
    runner.poll_outputs()
    runner.poll_outputs()
    assert runner.steps.reads.count("plan.json") == 2
    assert runner.plan == {"f_0001.png": 1, "f_0002.png": 2}


def test_a_jobs_outputs_are_bounded_by_its_frames_and_resolution(aws, tmp_path):
    """A one-frame 4 x 4 job once took 10,064 objects of up to 8 GiB each. Each output now weighs
    at most what a frame of that size can (every pass, in float), and all of them together at
    most that per frame: beyond it nothing is fetched, and the log says so once."""
    runner, events, machine = followed_job(
        aws, tmp_path, [1], tmp_path / "out", frame_format="PNG", frame_width=4, frame_height=4
    )
    one, every = poll_bounds.frame_bytes(runner.record), poll_bounds.job_output_bytes(runner.record)
    assert one == 16 * poll_bounds.MAX_BYTES_PER_PIXEL + poll_bounds.OUTPUT_SLACK_BYTES
    assert every == one + poll_bounds.OUTPUT_SLACK_BYTES
    machine.put("files/a.exr", b"a" * 1_000_000)
    machine.put("files/b.exr", b"b" * 1_000_000)
    machine.put("files/c.exr", b"c" * 200_000)  # 2.2 MB in all: over the job's bound
    machine.put("files/d.exr", b"d" * (one + 1))  # over one output's bound
    machine.put("files/e.exr", b"e" * 300_000)
    runner.poll_outputs()
    runner.poll_outputs()
    assert files_under(Path(runner.record.output_dir)) == {"a.exr", "b.exr"}
    log = log_text(drained(events))
    assert f"{one + 1} bytes, over the {one} allowed" in log
    assert log.count(f"make {every} bytes at most") == 1
    assert every * 1000 < contract.MAX_FRAME_BYTES  # the contract's own bound is no longer the one
