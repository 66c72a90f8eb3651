"""Following a job closely while frames are due, cheaply while none is, and in order after a cut.

The machine writes through the job's presigned POST to the emulated S3 (moto over HTTP), as in
test_machine_output.py; the job thread's follow loop is driven directly.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from cloud.errors import Cancelled
from cloud.job.events import EventQueue, FrameArrived, JobEnded, LogLines
from cloud.job.job_thread import JobRunner
from cloud.job.records import Stage
from cloud.machine import contract
from tests.images import png
from tests.unit.test_machine_output import followed_job


@pytest.fixture
def job(aws, tmp_path: Path):
    runner, events, machine = followed_job(
        aws, tmp_path, [1, 2], tmp_path / "renders" / "job", stage=Stage.RENDERING.value
    )
    plan = [{"name": f"f_{f:04d}.png", "frame": f} for f in (1, 2)]
    machine.put_json("plan.json", {"contract": contract.CONTRACT_VERSION, "frames": plan})
    runner.poll_outputs()  # reads the plan
    return runner, events, machine


def pause_in_background(runner: JobRunner, seconds: float) -> threading.Thread:
    thread = threading.Thread(target=runner.pause, args=(seconds,), daemon=True)
    thread.start()
    return thread


def wait_for_frame(events: EventQueue, deadline_s: float) -> list:
    taken: list = []
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and not any(isinstance(e, FrameArrived) for e in taken):
        taken += events.drain(budget_s=1.0, limit=1000)
        time.sleep(0.02)
    return taken


def test_a_due_frame_is_fetched_between_polls(job):
    """While rendering with frames left, the frames are listed between full polls: a frame
    lands long before the next poll would come (60 s here)."""
    runner, events, machine = job
    pausing = pause_in_background(runner, 60.0)
    try:
        machine.put("frames/f_0001.png", png())
        taken = wait_for_frame(events, 30.0)
        assert [e.frame for e in taken if isinstance(e, FrameArrived)] == [1]
        assert pausing.is_alive()  # fetched by the watch, not by a poll after the pause
    finally:
        runner.cancel()
        pausing.join(30)


@pytest.mark.parametrize("why", ["installing", "frame_not_due"])
def test_nothing_is_listed_while_no_frame_is_due(job, why):
    """Booting, or a long frame whose measured time is far from up: no listing between polls."""
    runner, events, machine = job
    if why == "installing":
        runner.record.stage = Stage.INSTALLING.value
    else:
        runner.record.seconds_per_frame = 600.0
        runner._last_frame_at = time.monotonic()
    machine.put("frames/f_0001.png", png())
    runner.pause(1.0)
    assert not any(isinstance(e, FrameArrived) for e in events.drain(budget_s=1.0, limit=1000))
    runner.poll_outputs()  # the next full poll still brings it
    assert [e.frame for e in events.drain(budget_s=1.0, limit=1000) if isinstance(e, FrameArrived)] == [1]


def test_back_in_contact_is_said_before_the_job_ends(job):
    """A job that ended during a network cut: the first poll that gets through says contact is
    back before it reports the ending, so the artist reads both in order."""
    runner, events, machine = job
    for name in ("f_0001.png", "f_0002.png"):
        machine.put(f"frames/{name}", png())
    machine.put_json("done.json", {"contract": contract.CONTRACT_VERSION, "frames_done": [1, 2]})
    runner._lost_since = time.monotonic() - 5
    assert runner.follow_once() is True
    taken = events.drain(budget_s=1.0, limit=1000)
    back = next(
        i
        for i, e in enumerate(taken)
        if isinstance(e, LogLines) and any("Back in contact" in line for line in e.lines)
    )
    ended = next(i for i, e in enumerate(taken) if isinstance(e, JobEnded))
    assert back < ended
    assert runner.record.stage == "done", runner.record.message


def test_following_retries_little_so_a_cut_shows_at_once(job):
    """Each request while following gets few tries: the loop itself retries, and says so."""
    runner, _events, _machine = job
    runner.cancel()
    with pytest.raises(Cancelled):  # at once; the settings it follows with are what matter
        runner.follow()
    assert runner.settings.max_attempts <= 2


def test_a_frame_that_becomes_due_during_a_long_pause_is_watched_from_then(job):
    """A measured 3 s per frame: nothing is listed for the first second after a frame, then the
    watch starts, well before a long pause (60 s here) would end."""
    runner, events, machine = job
    runner.record.seconds_per_frame = 3.0
    runner._last_frame_at = time.monotonic()
    assert runner.until_frame_due() > 0
    machine.put("frames/f_0001.png", png())
    pausing = pause_in_background(runner, 60.0)
    try:
        taken = wait_for_frame(events, 30.0)
        assert [e.frame for e in taken if isinstance(e, FrameArrived)] == [1]
        assert pausing.is_alive()
    finally:
        runner.cancel()
        pausing.join(30)


def test_polls_back_off_while_nothing_moves(job):
    """A machine booting for minutes, or a long frame far from done: a full poll every
    IDLE_FACTOR seconds instead of every second; back to every second when a frame is due."""
    from cloud.job.job_thread import IDLE_AFTER_S, IDLE_FACTOR

    runner, _events, _machine = job
    runner.set_stage(Stage.INSTALLING, "Installing Blender")
    assert runner.poll_interval() == runner.poll_seconds
    runner._stage_since = time.monotonic() - IDLE_AFTER_S - 1
    assert runner.poll_interval() == runner.poll_seconds * IDLE_FACTOR
    runner.record.stage = Stage.RENDERING.value  # rendering, no frame yet: the first is due
    assert runner.poll_interval() == runner.poll_seconds
    runner.record.seconds_per_frame = 600.0
    runner._last_frame_at = time.monotonic() - IDLE_AFTER_S - 1  # a long frame, far from done
    assert runner.poll_interval() == runner.poll_seconds * IDLE_FACTOR
