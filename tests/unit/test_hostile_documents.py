"""A malformed machine document is logged and ignored, never the end of the job (issue 23, item 1).

A hostile machine posts through the job's presigned POST to the emulated S3 (moto over HTTP), as
in test_machine_output.py, and the job thread follows it through its real poll: one machine
(the EC2 engine's reader) and many (the Batch and still engines' `MachineFolders`). Each input
here once escaped the contract and ended the job "Something unexpected went wrong", losing the
machine's own cause; now each is refused in the log, and the job goes on to its real end.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from cloud.job.events import JobEnded
from cloud.job.records import Stage
from cloud.machine import contract
from tests.images import png
from tests.unit.test_machine_output import drained, files_under, followed_job, log_text
from tests.waiting import wait_for

DEEP = b"[" * 6000 + b"]" * 6000  # 12 kB, well under the size bounds: the JSON parser recursed
CAUSE = "The GPU ran out of memory while rendering frame 2."
FUZZ = {
    "truncated": b'{"state": "rendering", "frame": 1, "frames": [{"name": "f_0001.png", "fra',
    "deep": DEEP,
    "deep-field": b'{"state": "rendering", "frames": ' + DEEP + b', "differences": ' + DEEP + b"}",
    "deep-but-parsable": b'{"state": "rendering", "seq": ' + b"[" * 500 + b"]" * 500 + b"}",
    "wrong-types": json.dumps(
        {
            "state": ["rendering"],
            "seq": {"a": []},
            "frame": "1",
            "frames": {"f_0001.png": 1},
            "frames_done": "all",
            "frame_seconds": [1, 2],
            "installed": 5,
            "differences": "none",
            "fingerprint": [],
            "scout_frames": "1",
            "seconds_per_frame": "fast",
            "movie": "x.mp4",
            "last_lines": {"a": 1},
            "frames_left": {"1": 1},
            "kind": ["no_gpu"],
            "cause": {"text": "x"},
            "reason": 5,
        }
    ).encode(),
    "huge-numbers": (
        '{"state": "rendering", "frame": 1, "seq": %s, "seconds_per_frame": 1e999, '
        '"frame_seconds": {"1": %s}, "frames": [{"name": "f_0001.png", "frame": %s}], '
        '"frames_done": [%s], "scout_frames": [1], "frames_left": [%s]}' % ((str(10**400),) * 5)
    ).encode(),
    "huge-numbers-in-seconds": b'{"state": "rendering", "seconds_per_frame": 1' + b"0" * 400 + b"}",
    "nan": (
        b'{"state": "rendering", "frame": NaN, "seconds_per_frame": NaN, "frame_seconds": '
        b'{"1": Infinity}, "scout_frames": [1], "frames": [{"name": "f_0001.png", "frame": -Infinity}]}'
    ),
    "not-an-object": b"[1, 2, 3]",
    "not-utf8": b'\xff\xfe{"state": "rendering"}',
    "empty": b"",
    "too-many-digits": b'{"state": "rendering", "frame": ' + b"9" * 5000 + b"}",
}
PLAN = {"contract": contract.CONTRACT_VERSION, "frames": [{"name": "f_0001.png", "frame": 1}]}


def test_three_inputs_that_ended_the_job_are_ignored_and_the_machines_cause_is_said(aws, tmp_path):
    """A status.json nested 6 kB deep, a machine listing `files/x` and `files/x/y`, and an
    error.json naming a frame the job does not have: the job ends failed with the machine's
    own cause, each refusal in the log, and the frame that did arrive kept."""
    runner, events, machine = followed_job(aws, tmp_path, [1, 2], tmp_path / "out")
    runner.poll_seconds = 0.2
    machine.put("status.json", b'{"state": "rendering", "frame": ' + DEEP + b"}")
    machine.put("files/x", b"a file")
    machine.put("files/x/y", b"a file under the file")
    machine.put_json("plan.json", {"frames": [{"name": "f_0001.png", "frame": 1}]})
    machine.put("frames/f_0001.png", png())
    machine.put_json(
        "error.json", {"kind": "gpu_memory", "cause": CAUSE, "frames_left": [2, 999], "last_lines": ["oom"]}
    )

    seen: list = []

    def job_ended() -> list:
        seen.extend(drained(events))
        return [e for e in seen if isinstance(e, JobEnded)]

    following = threading.Thread(target=runner.run, daemon=True)
    following.start()
    try:
        ended = wait_for("the job to end", job_ended, 60)
    finally:
        runner.cancel()
        following.join(30)

    rec = runner.record
    assert (rec.stage, rec.message) == (Stage.FAILED.value, CAUSE)
    assert "more GPU memory" in rec.action
    assert ended[0].message == CAUSE
    log = log_text(seen)
    assert "unexpected" not in log.lower()
    assert "status.json is nested too deeply" in log
    assert "frames the job does not have: [999]" in log
    assert log.count("Ignored what the machine wrote at jobs/") >= 3
    assert rec.frames_done == [1]
    assert len(files_under(Path(rec.output_dir)) & {"x", "x/y"}) == 1  # whichever landed first


@pytest.mark.parametrize("body", list(FUZZ.values()), ids=list(FUZZ))
def test_fuzzed_documents_are_refused_and_the_job_goes_on_to_its_end(aws, tmp_path, body):
    """Each fuzzed body written as every document a machine writes while it renders (status,
    plan, environment, quote): the polls go on, each refusal is said, and once the machine writes
    its real plan, frame and done.json the job is done."""
    runner, events, machine = followed_job(aws, tmp_path, [1], tmp_path / "out", quote_first=True)
    for name in ("status.json", "plan.json", "environment.json", "quote.json"):
        machine.put(name, body)
    machine.put("frames/f_0001.png", png())
    assert runner.follow_once() is False
    assert runner.follow_once() is False  # a second look at the same documents: still going on
    log = log_text(drained(events))
    assert "Ignored what the machine wrote" in log or body == b""
    assert runner.record.frames_done == []  # no plan read: the frame is not credited

    machine.put_json("plan.json", PLAN)
    machine.put_json("done.json", {"frames_done": [1], "seconds": 3.0})
    assert runner.follow_once() is True
    assert runner.record.stage == Stage.DONE.value, runner.record.message
    assert runner.record.frames_done == [1]


@pytest.mark.parametrize("body", list(FUZZ.values()), ids=list(FUZZ))
@pytest.mark.parametrize("name", ["error.json", "interrupted.json", "done.json"])
def test_a_fuzzed_end_document_ends_the_job_in_plain_words_or_not_at_all(aws, tmp_path, name, body):
    """An end document that is no JSON object is not an end (the machine's state decides); one
    that is, with fields of the wrong kind, ends the job as its name says, in the add-on's words."""
    runner, events, machine = followed_job(aws, tmp_path, [1, 2], tmp_path / "out")
    machine.put(name, body)
    ended = runner.follow_once()
    log = log_text(drained(events))
    assert "unexpected" not in (runner.record.message + log).lower()
    if ended:
        assert runner.record.stage in (Stage.FAILED.value, Stage.INTERRUPTED.value, Stage.DONE.value)
        assert runner.record.message
    else:
        assert "Ignored what the machine wrote" in log or body == b""


@pytest.mark.parametrize("engine", ["batch", "still"])
def test_one_hostile_machine_does_not_end_the_other_machines_job(aws, tmp_path, engine):
    """Many machines (AWS Batch): machine 0 writes the three inputs above in its own folder and
    fails; machine 1 renders the job's frame. The job is done, machine 0's cause in the log."""
    fields = {"still_parts": [[0, 8], [8, 8]]} if engine == "still" else {}
    runner, events, machine = followed_job(
        aws, tmp_path, [1], tmp_path / "out", machines=2, cloud_engine=engine, **fields
    )
    runner.engine.end_grace_s = 0.0  # no child to wait for: the emulated Batch holds no job
    machine.put("machines/0/status.json", b'{"state": "rendering", "frame": ' + DEEP + b"}")
    machine.put("machines/0/plan.json", b'{"frames": ' + DEEP + b"}")
    machine.put("files/x", b"a file")
    machine.put("files/x/y", b"a file under the file")
    machine.put_json(
        "machines/0/error.json",
        {"kind": "crash", "cause": CAUSE, "frames_left": [999], "last_lines": ["boom"]},
    )
    for body in FUZZ.values():
        machine.put("status.json", body)  # the boot script's shared status, as every child writes it
        assert runner.follow_once() is False

    machine.put_json("machines/1/status.json", {"state": "rendering", "frame": 1})
    machine.put_json("machines/1/plan.json", PLAN)
    machine.put("frames/f_0001.png", png())
    assert runner.follow_once() is True
    assert runner.record.stage == Stage.DONE.value, runner.record.message
    log = log_text(drained(events))
    assert "Machine 0 ended: error." in log and "boom" in log
    assert "frames the job does not have: [999]" in log
    assert "nested too deeply" in log
    assert "unexpected" not in log.lower()
