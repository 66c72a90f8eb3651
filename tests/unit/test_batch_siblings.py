"""Batch siblings (issue 23, item 5): the machines of a job share its links, so one can claim every
frame, rewrite a claim to name another machine, or write another machine's end document. No
machine's word about another is taken: frames count by what landed, an end document is believed
only when it agrees with the claims and the frames, and the job is never done with frames missing.

The rules on their own (batch_siblings.py), then through the job thread's real poll: a hostile
machine posts through the job's presigned POST to the emulated S3 (moto over HTTP), claims
included, as in test_hostile_documents.py.
"""

from __future__ import annotations

import hashlib

import pytest

from cloud.job.batch_siblings import EndSays, Facts, claim_holders, claim_signatures, judge_end, missing_words
from cloud.job.records import Stage
from cloud.machine import contract
from tests.images import png
from tests.unit.test_machine_output import drained, followed_job, log_text


def facts(holders: dict[str, int], landed: set[str], work: set[str] | None = None) -> Facts:
    return Facts(holders, frozenset(landed), frozenset(work if work is not None else {"1", "2", "3"}))


def says(rendered: set[str], left: set[str] = frozenset()) -> EndSays:  # type: ignore[assignment]
    return EndSays(frozenset(rendered), frozenset(left))


# --- the rules --------------------------------------------------------------------------------
def test_a_done_that_agrees_with_the_claims_and_the_frames_is_believed():
    seen = facts({"1": 0, "2": 1, "3": 1}, {"1", "2", "3"})
    assert judge_end(1, "done.json", says({"2", "3"}), seen) == ""
    assert judge_end(0, "done.json", says({"1"}), seen) == ""


def test_a_done_naming_frames_another_machine_holds_is_refused():
    seen = facts({"1": 0, "2": 0, "3": 0}, {"1", "2", "3"})
    why = judge_end(1, "done.json", says({"1", "2", "3"}), seen)
    assert why == "it says machine 1 rendered frames 1, 2, 3, which no claim gives it"


def test_a_done_whose_claimed_frames_never_landed_is_refused():
    seen = facts({"1": 0, "2": 0, "3": 0}, {"1"})
    assert judge_end(0, "done.json", says({"1"}), seen) == (
        "it says machine 0 is done, but frames 2, 3 it claimed never arrived"
    )


def test_a_done_while_frames_are_unclaimed_is_refused():
    seen = facts({"1": 0}, {"1"})
    assert judge_end(0, "done.json", says({"1"}), seen) == (
        "it says nothing is left to claim, but no machine holds frames 2, 3"
    )


def test_an_error_or_interruption_may_only_leave_its_own_claims():
    seen = facts({"1": 0, "2": 1}, set())
    assert judge_end(1, "error.json", says(set(), {"2"}), seen) == ""  # unclaimed 3: not its word
    assert judge_end(1, "interrupted.json", says({"2"}), seen) == ""
    assert "left frame 1 unfinished" in judge_end(1, "error.json", says(set(), {"1"}), seen)
    assert "rendered frame 1," in judge_end(1, "interrupted.json", says({"1"}), seen)


def test_a_claims_bytes_name_its_machine_and_attempt_or_nobody():
    signatures = claim_signatures(machines=2, attempts=3)
    assert len(signatures) == 6
    etag = {(i, a): hashlib.md5(contract.claim_body(i, a)).hexdigest() for i in (0, 1, 5) for a in (1, 3, 4)}
    listing = {"1": etag[0, 1], "2": etag[1, 3], "3": etag[5, 1], "4": etag[0, 4], "x": etag[0, 1]}
    holders, strangers = claim_holders(listing, signatures, ["1", "2", "3", "4", "5"])
    assert holders == {"1": 0, "2": 1}  # "x" is no claim of the job; 5 is not claimed
    assert strangers == ["3", "4"]  # machine 5 of 2, attempt 4 of 3


def test_what_never_arrived_is_said_by_who_held_it():
    said = missing_words(["1", "2", "12", "part-0", "merge", "4"], {"1": 1, "2": 1, "part-0": 0})
    assert said == "Not delivered: part 1 claimed by machine 0; frames 1, 2 claimed by machine 1; " + (
        "frames 4, 12 and the merge claimed by no machine."
    )
    assert missing_words([], {}) == ""


# --- through the job thread's poll ------------------------------------------------------------
PLAN = {"frames": [{"name": f"f_{f:04d}.png", "frame": f} for f in (1, 2, 3)]}


def claim(machine, frame: int | str, index: int, attempt: int = 1) -> None:  # type: ignore[no-untyped-def]
    """A claim written as any machine can: through the job's presigned POST, no condition."""
    machine.put(f"claims/{frame}", contract.claim_body(index, attempt))


def deliver(machine, frame: int) -> None:  # type: ignore[no-untyped-def]
    machine.put(f"frames/f_{frame:04d}.png", png())


@pytest.fixture
def two_machines(aws, tmp_path):  # type: ignore[no-untyped-def]
    runner, events, machine = followed_job(
        aws, tmp_path, [1, 2, 3], tmp_path / "out", machines=2, cloud_engine="batch"
    )
    runner.engine.end_grace_s = 0.0  # no child to wait for: the emulated Batch holds no job
    machine.put_json("machines/0/plan.json", PLAN)
    return runner, events, machine


def rows(runner) -> dict[int, str]:  # type: ignore[no-untyped-def]
    return {row["machine"]: row["state"] for row in runner.outputs.machine_rows()}


def test_a_machine_that_claims_every_frame_and_writes_its_siblings_done_ends_nothing(two_machines):
    """Machine 0 claims every frame, says it is done, and writes machine 1's done.json naming
    every frame: neither is believed, machine 1's row is not "done", and the job goes on. When
    every machine is gone, it ends as frames missing, Relaunch offered, with who held them."""
    runner, events, machine = two_machines
    for frame in (1, 2, 3):
        claim(machine, frame, 0)
    machine.put_json("machines/0/status.json", {"state": "done"})
    machine.put_json("machines/0/done.json", {"frames_done": [1, 2, 3], "seconds": 1.0})
    machine.put_json("machines/1/status.json", {"state": "done"})
    machine.put_json("machines/1/done.json", {"frames_done": [1, 2, 3], "seconds": 1.0})
    deliver(machine, 1)  # one frame really landed

    assert runner.follow_once() is False
    assert runner.follow_once() is False
    assert runner.record.frames_done == [1]
    assert "done" not in rows(runner).values()  # a status saying "done" is no end either
    log = log_text(drained(events))
    assert "machines/0/done.json: it says machine 0 is done, but frames 2, 3 it claimed never arrived" in log
    assert "machines/1/done.json: it says machine 1 rendered frames 1, 2, 3, which no claim gives it" in log
    assert "ended: done" not in log
    assert runner.outputs.final_state() is None  # frames missing: never done, whatever was said

    error = runner.outputs.gone_error()  # what follow_once raises once Batch shows every child gone
    assert error.message == "Every machine has stopped, but 2 frames did not arrive."
    assert error.action == "Relaunch the missing frames; the frames already rendered are kept."
    assert "[cloud-render] Not delivered: frames 2, 3 claimed by machine 0." in log_text(drained(events))


def test_a_rewritten_claim_does_not_credit_or_end_and_the_frames_decide(two_machines):
    """Machine 1 claims and delivers frame 2; machine 0 rewrites that claim to name machine 1's
    sibling, then machine 1's honest done.json no longer agrees with the claims and is refused.
    The job is done all the same, by the frames that landed."""
    runner, events, machine = two_machines
    claim(machine, 1, 0)
    claim(machine, 2, 1)
    claim(machine, 3, 0)
    for frame in (1, 3):
        deliver(machine, frame)
    assert runner.follow_once() is False
    machine.put_json("machines/0/status.json", {"state": "done"})
    machine.put_json("machines/0/done.json", {"frames_done": [1, 3], "frame_seconds": {"1": 2.0, "3": 2.5}})
    assert runner.follow_once() is False
    assert "[cloud-render] Machine 0 ended: done." in log_text(drained(events))
    assert runner.record.frame_seconds == {"1": 2.0, "3": 2.5}

    claim(machine, 2, 0)  # the rewrite: frame 2 now reads as machine 0's, first attempt
    machine.put_json("machines/1/status.json", {"state": "done"})
    machine.put_json("machines/1/done.json", {"frames_done": [2], "frame_seconds": {"2": 9.0}})
    deliver(machine, 2)
    assert runner.follow_once() is True
    assert runner.record.stage == Stage.DONE.value, runner.record.message
    assert sorted(runner.record.frames_done) == [1, 2, 3]
    assert "2" not in runner.record.frame_seconds  # its time was not taken either
    log = log_text(drained(events))
    assert "machines/1/done.json: it says machine 1 rendered frame 2, which no claim gives it" in log


def test_an_early_done_is_refused_then_believed_once_it_agrees(two_machines):
    """A done.json read while a frame is unclaimed is refused, and read again: once every frame
    is claimed and its own landed, the same document is believed."""
    runner, events, machine = two_machines
    claim(machine, 1, 1)
    deliver(machine, 1)
    machine.put_json("machines/1/status.json", {"state": "done"})
    machine.put_json("machines/1/done.json", {"frames_done": [1]})
    assert runner.follow_once() is False
    assert "no machine holds frames 2, 3" in log_text(drained(events))
    assert rows(runner)[1] != "done"

    claim(machine, 2, 0)
    claim(machine, 3, 0)
    assert runner.follow_once() is False
    assert "[cloud-render] Machine 1 ended: done." in log_text(drained(events))
    assert rows(runner)[1] == "done"


def test_a_siblings_error_is_not_the_jobs_cause(two_machines):
    """An error.json in machine 1's folder leaving frames machine 0 holds is refused: the job's
    end does not blame machine 1 with a cause it never gave."""
    runner, events, machine = two_machines
    for frame in (1, 2, 3):
        claim(machine, frame, 0)
    machine.put_json("machines/1/status.json", {"state": "failed"})
    machine.put_json(
        "machines/1/error.json", {"kind": "gpu_memory", "cause": "Out of GPU memory.", "frames_left": [2, 3]}
    )
    assert runner.follow_once() is False
    assert "it says machine 1 left frames 2, 3 unfinished, which no claim gives it" in log_text(
        drained(events)
    )
    error = runner.outputs.gone_error()
    assert error.message == "Every machine has stopped, but 3 frames did not arrive."


def test_a_still_is_judged_by_its_parts_and_its_merge(aws, tmp_path):
    """A split still: a done.json saying it merged, with no merge claim naming it, is refused;
    one whose parts agree with its part claims and their EXRs is believed."""
    runner, events, machine = followed_job(
        aws, tmp_path, [1], tmp_path / "out", machines=2, cloud_engine="still", still_parts=[[0, 8], [8, 8]]
    )
    runner.engine.end_grace_s = 0.0
    claim(machine, "part-0", 0)
    claim(machine, "part-1", 1)
    machine.put("parts/part-0.exr", b"exr")
    machine.put("parts/part-1.exr", b"exr")
    machine.put_json("machines/1/status.json", {"state": "done"})
    machine.put_json("machines/1/done.json", {"frames_done": [1], "parts": [1], "merged": True})
    machine.put_json("machines/0/status.json", {"state": "done"})
    machine.put_json("machines/0/done.json", {"frames_done": [], "parts": [0], "merged": False})
    assert runner.follow_once() is False
    log = log_text(drained(events))
    assert "machines/1/done.json: it says machine 1 rendered the merge, which no claim gives it" in log
    assert "[cloud-render] Machine 0 ended: done." in log
    assert "Machine 1 ended" not in log
