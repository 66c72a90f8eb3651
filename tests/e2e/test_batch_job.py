"""Jobs over many machines end to end: the product's Batch engine and job thread, moto's Batch
running each array child as a local machine (dev/batch_simulator.py), real Cycles renders.

moto's gaps are played by the harness, and each test says where: moto never retries a child
(the harness re-runs it as Batch's retry strategy would) and terminating an array job's parent
reaches no child (the engine terminates every child itself, as it does on AWS too).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cloud.aws import batch, job_mail
from cloud.aws.quotas import QUOTA_ERROR_CODES
from cloud.aws.session import client
from cloud.job.batch_engine import BatchEngine
from cloud.job.events import EventQueue, JobEnded, LogLines, MachinesUpdate, StageChanged
from cloud.job.frame_list import kept_text
from cloud.job.manager import JobManager
from cloud.job.records import EngineName, RecordStore
from cloud.machine import contract
from dev.batch_job import BatchJob, make_scene, make_uneven_scene, render_history, start_job, twice
from dev.batch_simulator import BatchSimulator
from dev.emulator import EmulatedAccount, emulated_account
from tests import waiting
from tests.mail_delivery import deliver

pytestmark = pytest.mark.slow

DEADLINE_S = 240.0
EMAIL = "artist@example.com"
SPOT_STANDARD = "L-34B43A08"  # All Standard Spot Instance Requests, in vCPUs


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BatchSimulator, EmulatedAccount]]:
    base = tmp_path_factory.mktemp("batch-e2e")
    with BatchSimulator(base / "sim") as sim, emulated_account(moto_url=sim.url) as account:
        yield sim, account


@pytest.fixture
def sim(world: tuple[BatchSimulator, EmulatedAccount]) -> BatchSimulator:
    simulator, account = world
    account.reset()
    account.quotas.set_quota(SPOT_STANDARD, 64.0)  # room for eight c5.2xlarge
    return simulator


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scene(tmp_path_factory.mktemp("scene") / "shot.blend", frames=8, size=24, samples=1)


@pytest.fixture(scope="module")
def slow_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About a second a frame (subdivision evaluated every frame): a job that lasts long enough
    to be cancelled, capped or left mid-way (one Blender per machine renders frames back to back)."""
    return make_scene(tmp_path_factory.mktemp("slow") / "slow.blend", frames=12, size=24, samples=1, heavy=8)


wait_for = functools.partial(waiting.wait_for, deadline_s=DEADLINE_S)


def submitted(job: BatchJob) -> None:
    wait_for("the Batch job to be submitted", lambda: job.record.launch_id or not job.runner.is_alive())
    assert job.record.launch_id, (job.record.stage, job.record.message)


def finished(job: BatchJob) -> None:
    job.runner.join(DEADLINE_S)
    assert not job.runner.is_alive(), "the job thread did not end"


def nothing_left(sim: BatchSimulator, job: BatchJob) -> None:
    """No machine process of the job runs, and Batch shows no live child."""
    wait_for(
        "every machine process to end",
        lambda: not any(m.running for m in sim.children_of(job.record.launch_id)),
    )
    wait_for("every re-run to end", lambda: all(p.poll() is not None for p in sim.reran.values()))

    def settled() -> bool:
        kids = batch.children(sim.settings, job.record.launch_id, job.record.machines)
        return bool(kids) and not any(c.live for c in kids)

    wait_for("Batch to show no live child", settled)


def one_mail(sim: BatchSimulator, job: BatchJob, ending: str, words: str) -> None:
    """Exactly one e-mail notice for the whole job, written by the machine that saw its end
    last, with `ending` and words matching `words`; and what AWS would send for it (Set Up's
    wiring made now, with the notice already there: tests/mail_delivery.py plays AWS's part)."""
    rec = job.record
    listed = client(sim.settings, "s3").list_objects_v2(
        Bucket=rec.bucket, Prefix=f"jobs/{rec.job_id}/out/notice/"
    )
    notices = [o["Key"].rsplit("/", 2)[-2:] for o in listed.get("Contents", [])]
    assert len(notices) == 1 and notices[0][0] == ending, notices
    assert re.fullmatch(words, notices[0][1]), notices
    job_mail.ensure_job_mail(sim.settings, rec.bucket, EMAIL)
    [mail] = deliver(sim.settings, rec.bucket)
    assert mail.to == (EMAIL,) and mail.rule == job_mail.RULE_PREFIX + ending, mail
    assert notices[0][1] in mail.text


def test_a_first_submission_maps_its_frames_and_starts_the_costliest_first(sim, tmp_path):
    """Item 7 of issue 22: no earlier job of this shot, so the job thread renders a small cost map
    here while the scene is packed and uploaded (the add-on's script in a background Blender);
    the machines then claim the frames that saw the most volume (4 and 8) before any other."""
    shot = make_uneven_scene(tmp_path / "uneven" / "shot.blend", frames=8, width=160, height=90, samples=32)
    job = start_job(sim, shot, list(range(1, 9)), 2, tmp_path / "job", cost_map=True)
    finished(job)
    rec = job.record
    assert rec.stage == "done", (rec.message, rec.action)
    lines = [
        line for e in job.events.drain(2.0, limit=100_000) if isinstance(e, LogLines) for line in e.lines
    ]
    assert any("Cost map: 8 of 8 frames rendered small here" in line for line in lines), lines[:20]
    weights = job.runner.request.frame_seconds if job.runner.request else {}
    assert sorted(weights) == list(range(1, 9))
    assert (weights[4] + weights[8]) / 2 > 1.5 * (weights[1] + weights[5]) / 2, weights
    # The costliest frame went out first, and the first two claims, whichever machine made them,
    # were of the heavier half (in the shot's own order, frames 1 and 2, the lightest, would have
    # been). Claims, not each machine's first frame: on a busy computer one machine may boot
    # late and find the heavy frames taken by the other.
    by_weight = sorted(weights, key=weights.__getitem__, reverse=True)
    firsts = first_frames(sim, rec.launch_id)
    assert by_weight[0] in firsts.values(), (firsts, weights)
    s3 = client(sim.settings, "s3")
    listed = s3.list_objects_v2(Bucket=rec.bucket, Prefix=contract.claims_prefix(rec.job_id))
    claims = sorted(listed.get("Contents", []), key=lambda o: o["LastModified"])
    claimed = [int(o["Key"].rsplit("/", 1)[1]) for o in claims]
    assert sorted(claimed) == list(range(1, 9)), claimed
    # A listing's LastModified is to the second: claims made in one second come in key order, not
    # claim order (a run once listed [8, 2, 3, 4, ...]). Those written strictly before the third
    # claim are surely among the first two.
    stamps = [o["LastModified"] for o in claims]
    surely_first = [frame for frame, at in zip(claimed, stamps, strict=True) if at < stamps[2]]
    assert set(surely_first) <= set(by_weight[:4]), (claimed, stamps, weights)
    nothing_left(sim, job)


def first_frames(sim: BatchSimulator, batch_job_id: str) -> dict[str, int]:
    """Each machine's first frame, from its render log (the order Blender began them)."""
    firsts: dict[str, int] = {}
    for label, folder in sim.folders(batch_job_id):
        log = folder / "root" / "run" / "render.log"
        found = FIRST_FRAME.search(log.read_text(errors="replace")) if log.exists() else None
        if found:
            firsts[label] = int(found.group(1))
    return firsts


FIRST_FRAME = re.compile(r'"event": "frame", "frame": (-?\d+)')


def test_claims_answered_409_now_and_then_still_render_every_frame_once(sim, scene, tmp_path):
    """S3 answers a conditional write 409 ConditionalRequestConflict when another is in flight;
    the strict layer answers every third one so (without writing), and the machines retry: no
    frame is left unclaimed and none is rendered twice (S3 User Guide, conditional requests)."""
    answer = requests.post(f"{sim.url}/strict-api/conflicts?every=3", timeout=10)
    assert answer.status_code == 200, answer.text
    try:
        job = start_job(sim, scene, list(range(1, 9)), 2, tmp_path)
        finished(job)
        counted = requests.get(f"{sim.url}/strict-api/conflicts", timeout=10).json()
        assert counted["seen"] >= 8, counted  # a claim per frame at least: two or more were 409s
    finally:
        requests.post(f"{sim.url}/strict-api/conflicts?every=0", timeout=10)
    rec = job.record
    assert rec.stage == "done", (rec.message, rec.action)
    assert sorted(rec.frames_done) == list(range(1, 9))
    started, done = render_history(sim, rec.launch_id)
    assert twice(started) == [] and twice(done) == []
    nothing_left(sim, job)


def test_frames_are_split_over_three_machines_none_twice(sim, slow_scene, tmp_path):
    job = start_job(sim, slow_scene, list(range(1, 13)), 3, tmp_path, frame_order="preview_first")
    finished(job)
    rec = job.record
    assert rec.stage == "done", (rec.message, rec.action)
    assert sorted(rec.frames_done) == list(range(1, 13))
    assert all(Path(rec.frame_paths[str(f)]).is_file() for f in rec.frames_done)
    started, done = render_history(sim, rec.launch_id)
    assert twice(started) == [] and twice(done) == []
    machines = {labels[0] for labels in done.values()}
    assert len(machines) >= 2, done  # the frames really were shared
    # Preview first across machines: frame 1 (every 8th) was claimed before any other.
    assert min(done[1]) in machines
    # Each machine's status and log came back through the contract, tagged with its machine.
    rows = job.runner.outputs.machine_rows()
    assert [r["machine"] for r in rows] == [0, 1, 2]
    events = job.events.drain(budget_s=2.0, limit=100_000)
    updates = [e for e in events if isinstance(e, MachinesUpdate)]
    assert updates and all(len(u.rows) == 3 for u in updates)
    # The job reads Rendering once its machines render (not "Starting machine" to the end).
    assert [e.stage for e in events if isinstance(e, StageChanged)].count("rendering") == 1
    assert any("rendering, frame" in row and "(spot)" in row for u in updates for row in u.rows)
    lines = [line for e in events if isinstance(e, LogLines) for line in e.lines]
    # The Batch job's id is not called a machine's, nor read as a uuid (the record keeps it).
    assert any(
        line.startswith("[cloud-render] 3 machines requested (spot) from AWS Batch;") for line in lines
    )
    assert {line.split("]")[0] for line in lines if line.startswith("[machine ")} == {
        "[machine 0",
        "[machine 1",
        "[machine 2",
    }
    # Honest machines agree with their claims and frames: no end document of theirs is refused.
    assert not [line for line in lines if "Ignored what the machine wrote" in line]
    nothing_left(sim, job)
    # One e-mail notice for the whole job, from the machine that saw every frame marked last.
    words = r"slow\.blend_is_done_12_of_12_frames_about_\d+\.\d\d_USD_frames_kept_14_days"
    one_mail(sim, job, "done", words)
    # The machines' frame times reached the record as they reported them (read through the
    # contract): the next job of this scene hands out its longest frames first
    # (cloud/job/frame_history.py). The job ends when the last frame arrives, so a machine's
    # last frame may be known only from its done.json, written after: at most one per machine.
    s3 = client(sim.settings, "s3")
    reported: dict[str, float] = {}
    for index in range(3):
        key = contract.machines_prefix(rec.job_id) + f"{index}/done.json"
        body = s3.get_object(Bucket=rec.bucket, Key=key)["Body"].read()
        reported.update(contract.load_document(body, "done.json").get("frame_seconds") or {})
    assert sorted(int(f) for f in reported) == list(range(1, 13))
    assert rec.frame_seconds and all(reported[f] == s for f, s in rec.frame_seconds.items())
    assert len(rec.frame_seconds) >= 12 - 3, rec.frame_seconds
    # The job's page for a phone reads each machine's own status through its embedded link.
    page = requests.get(rec.page_url, timeout=30)
    assert page.ok and page.headers["Content-Type"].startswith("text/html")
    found = re.search(r'<script type="application/json" id="job">(.*?)</script>', page.text, re.S)
    assert found
    data = json.loads(found.group(1))
    assert data["machines"] == 3 and data["frames_total"] == 12
    states = [requests.get(url, timeout=30).json()["state"] for url in data["links"]["machines"]]
    assert states == ["done", "done", "done"]


def test_a_machine_killed_mid_frame_loses_only_that_frame(sim, slow_scene, tmp_path):
    job = start_job(sim, slow_scene, list(range(1, 9)), 2, tmp_path)
    submitted(job)
    lost = sim.kill_mid_frame(job.record.launch_id, 0)
    # moto gap: Batch retries a child whose host was lost (retry strategy "Host EC2*"); moto
    # does not, so the harness runs child 0 again with AWS_BATCH_JOB_ATTEMPT=2.
    sim.rerun(job.record.launch_id, 0, attempt=2)
    finished(job)
    rec = job.record
    assert rec.stage == "done", (rec.message, rec.action)
    assert sorted(rec.frames_done) == list(range(1, 9))
    started, done = render_history(sim, rec.launch_id)
    assert twice(started) == [lost]  # only the lost frame was started again...
    assert twice(done) == []  # ...and no frame was rendered to the end twice
    assert done[lost] == ["0#2"]  # by the retried machine, which finished its lost claim first
    nothing_left(sim, job)
    # The killed attempt wrote no end (Batch retries it); one e-mail, done, for the whole job.
    one_mail(sim, job, "done", r"slow\.blend_is_done_8_of_8_frames_about_\d+\.\d\d_USD_frames_kept_14_days")


def test_a_machine_lost_right_after_its_claim_leaves_no_frame_behind(sim, slow_scene, tmp_path):
    """The host is lost the moment machine 1's first claim lands, before that frame is rendered
    or uploaded: the claim stays (no other machine may take the frame), and the retried machine
    finds it by its ETag (the claim's bytes name machine 1, attempt 1) and renders it."""
    job = start_job(sim, slow_scene, list(range(1, 9)), 2, tmp_path)
    submitted(job)
    rec = job.record
    machine = sim.machine(rec.launch_id, 1)
    s3 = client(sim.settings, "s3")
    ours = hashlib.md5(contract.claim_body(1, 1), usedforsecurity=False).hexdigest()

    def claimed_by_machine_1() -> list[int]:
        listed = s3.list_objects_v2(Bucket=rec.bucket, Prefix=contract.claims_prefix(rec.job_id))
        return [
            int(o["Key"].rsplit("/", 1)[1])
            for o in listed.get("Contents", [])
            if o["ETag"].strip('"') == ours
        ]

    deadline = time.monotonic() + DEADLINE_S
    while not claimed_by_machine_1():
        assert time.monotonic() < deadline, "machine 1 claimed no frame"
        time.sleep(0.01)
    assert sim.standin is not None
    sim.standin.kill(machine, signal.SIGKILL)  # the host is gone: no mark, no upload, no goodbye
    assert machine.wait(30)
    held = claimed_by_machine_1()
    # moto gap: Batch retries a child whose host was lost (retry strategy "Host EC2*"); moto
    # does not, so the harness runs child 1 again with AWS_BATCH_JOB_ATTEMPT=2.
    sim.rerun(rec.launch_id, 1, attempt=2)
    finished(job)
    assert rec.stage == "done", (rec.message, rec.action)
    assert sorted(rec.frames_done) == list(range(1, 9))
    started, done = render_history(sim, rec.launch_id)
    assert twice(done) == []  # nothing rendered to the end twice
    lost = [f for f in held if "1" not in done.get(f, [])]
    assert lost  # killed before it finished what it held...
    assert all(done[f] == ["1#2"] for f in lost)  # ...which only its retry rendered
    assert set(twice(started)) <= set(lost)  # no other frame was even started twice
    nothing_left(sim, job)


def test_cancel_mid_job_ends_every_machine(sim, slow_scene, tmp_path):
    job = start_job(sim, slow_scene, list(range(1, 13)), 3, tmp_path)
    wait_for("a first frame", lambda: job.record.frames_done)
    job.runner.cancel()
    finished(job)
    assert job.record.stage == "cancelled"
    # The panel reads "Cancelled: Frames 1-2 kept in <folder>.", not "Cancelled: Cancelled; ..."
    message = job.record.message
    assert message == kept_text(list(job.record.frames_done), job.record.output_dir), message
    assert message.startswith("Frame") and message.endswith(f" kept in {job.record.output_dir}.")
    # moto gap: terminating the parent reaches no child; the engine terminates each child itself.
    nothing_left(sim, job)
    assert len(job.record.frames_done) < 12


def test_the_cost_cap_ends_every_machine(sim, slow_scene, tmp_path):
    job = start_job(sim, slow_scene, list(range(1, 13)), 3, tmp_path)
    wait_for("a first frame", lambda: job.record.frames_done)
    # A cap low enough to start is hours of machine time; here the machines' seconds so far
    # (summed over all three, at $0.34/h) pass it as soon as it is lowered under them.
    job.record.max_cost = 0.0001
    finished(job)
    assert job.record.stage == "capped", job.record.message
    assert "every machine" in job.record.message
    nothing_left(sim, job)


def test_blender_restarted_mid_job_reattaches_to_every_machine(sim, slow_scene, tmp_path):
    job = start_job(sim, slow_scene, list(range(1, 13)), 3, tmp_path)
    wait_for("a first frame", lambda: job.record.frames_done)
    job.runner.stop_following()  # Blender closes: the machines render on
    job.runner.join(30)
    store = RecordStore(tmp_path / "records")
    again = store.load(job.record.job_id)
    assert again.machines == 3 and again.launch_id == job.record.launch_id
    assert again.cloud_engine == EngineName.BATCH
    # Blender opens again: the manager re-attaches, with the engine the record names.
    artist = job.runner.settings  # the same IAM user's keys, as the add-on keeps them
    events = EventQueue()
    manager = JobManager(tmp_path / "records", events, lambda: artist, poll_seconds=0.5)
    assert manager.attach_unfinished() == [again.job_id]
    runner = manager.runner(again.job_id)
    assert runner is not None and isinstance(runner.engine, BatchEngine)
    runner.join(DEADLINE_S)
    again = store.load(again.job_id)
    assert again.stage == "done", (again.message, again.action)
    # The end tells the panel what the job cost (a job that ends at its first look after a
    # restart sends no cost update: the panel read "$0.00").
    seen = events.drain(2.0, 100_000)
    [ended] = [e for e in seen if isinstance(e, JobEnded)]
    assert ended.cost_so_far == again.cost_so_far > 0
    assert sorted(again.frames_done) == list(range(1, 13))
    # The log comes back with the job: every machine's lines, those written before Blender
    # closed too (issue 26 item 5: after a re-attach a Batch job showed no log at all).
    log = "\n".join(line for e in seen if isinstance(e, LogLines) for line in e.lines)
    uploaded = {int(n) for n in re.findall(r"frame (\d+) uploaded", log)}
    assert uploaded == set(range(1, 13)), log[-2000:]
    assert len({r["machine"] for r in runner.outputs.machine_rows()}) == 3


def test_machines_that_do_not_fit_the_quota_are_refused_with_the_largest_that_fits(
    sim, world, scene, tmp_path
):
    _, account = world
    account.quotas.set_quota(SPOT_STANDARD, 16.0)  # two c5.2xlarge (8 vCPUs each)
    job = start_job(sim, scene, list(range(1, 9)), 3, tmp_path)
    finished(job)
    rec = job.record
    assert rec.stage == "failed" and not rec.launch_id
    assert "leaves room for 2 c5.2xlarge machines (8 vCPUs each), not 3" in rec.message
    assert rec.action.startswith("Render on 2 machines, or request a quota increase to 24 vCPUs")
    [ended] = [e for e in job.events.drain(2.0, 100_000) if isinstance(e, JobEnded)]
    assert ended.code in QUOTA_ERROR_CODES  # the panel offers Request Quota Increase


def test_the_forgotten_machine_search_finds_a_batch_job_and_ends_it(sim, slow_scene, tmp_path):
    job = start_job(sim, slow_scene, list(range(1, 13)), 3, tmp_path)
    wait_for("a first frame", lambda: job.record.frames_done)
    job.runner.stop_following()
    job.runner.join(30)
    # The record says the job is over (a crash, a record from another computer): the machines
    # still running are forgotten ones.
    store = RecordStore(tmp_path / "records")
    record = store.load(job.record.job_id)
    record.stage = "failed"
    store.save(record)
    artist = job.runner.settings  # the artist's keys, as the add-on keeps them
    manager = JobManager(tmp_path / "records", EventQueue(), lambda: artist)
    # The panel's forgotten-machine list shows the Batch job like a machine, and its Terminate
    # ends it.
    [orphan] = manager.forgotten_machines("us-east-1")
    assert (orphan.engine, orphan.region, orphan.launch_id, orphan.job_id) == (
        EngineName.BATCH,
        "us-east-1",
        record.launch_id,
        record.job_id,
    )
    manager.stop_forgotten(orphan)
    # moto gap: the parent's termination reaches no child; the engine terminates each one.
    nothing_left(sim, job)
    assert manager.forgotten_machines("us-east-1") == []


def test_a_machine_whose_blender_cannot_start_fails_with_the_cause(sim, scene, tmp_path):
    """The real window's first many-machine job: each machine's Blender could not start
    ("exec: chroot: not found"), and every machine still said "done" with 0 frames rendered,
    so the job read "Every machine has stopped, but 12 frames did not arrive"."""
    import hashlib
    import io
    import tarfile

    from dev.batch_job import blender_version

    version = blender_version()
    top = f"blender-{version}-linux-x64"
    tarball = tmp_path / f"{top}.tar.xz"
    script = b'#!/bin/sh\necho "chroot: not found" >&2\nexit 127\n'
    with tarfile.open(tarball, "w:xz") as archive:
        info = tarfile.TarInfo(f"{top}/blender")
        info.size, info.mode = len(script), 0o755
        archive.addfile(info, io.BytesIO(script))
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    job = start_job(sim, scene, [1, 2], 1, tmp_path, blender=(tarball, digest))
    finished(job)
    rec = job.record
    assert rec.stage == "failed", (rec.stage, rec.message)
    assert rec.message.startswith(
        "Machine 0 failed: Blender could not start on the machine (exit code 127)."
    ), rec.message
    assert "2 frames did not arrive" in rec.message
    nothing_left(sim, job)
    # Its one machine failed: the e-mail says so, with the failure's kind and nothing rendered.
    one_mail(sim, job, "failed", r"shot\.blend_failed_[a-z_]+_0_of_2_frames_done_about_\d+\.\d\d_USD")


def test_a_machine_that_claimed_every_frame_leaves_them_missing_not_done(sim, scene, tmp_path):
    """Issue 23, item 5: the machines share the job's links, so one can write a claim on every
    frame naming machine 1 (here before either starts, through the job's presigned POST as a
    machine would). Machine 0 finds nothing to claim and ends done, believed; machine 1 renders
    nothing yet holds every frame by the claims, so its done.json is refused. Every machine
    gone, the job ends with the frames missing and Relaunch offered, not done."""
    from cloud.aws import storage
    from cloud.machine.transport import Poster

    frames = list(range(1, 9))
    job = start_job(sim, scene, frames, 2, tmp_path)
    rec = job.record
    wait_for("the bucket to be chosen", lambda: rec.bucket or not job.runner.is_alive())
    assert not rec.launch_id  # no machine yet: the claims below come first
    post = storage.presign_outputs(sim.settings, rec.bucket, rec.job_id, 3600)
    hostile = Poster(post["url"], post["fields"], contract.out_prefix(rec.job_id))
    for frame in frames:
        hostile.put(f"claims/{frame}", contract.claim_body(1, 1))
    finished(job)
    assert (rec.stage, rec.message) == ("failed", "Every machine has stopped, but 8 frames did not arrive.")
    assert rec.action == "Relaunch the missing frames; the frames already rendered are kept."
    assert rec.frames_done == [] and rec.frames_missing == frames
    lines = [
        line for e in job.events.drain(2.0, limit=100_000) if isinstance(e, LogLines) for line in e.lines
    ]
    log = "\n".join(lines)
    assert "[cloud-render] Machine 0 ended: done." in log
    assert "Machine 1 ended" not in log
    assert "machines/1/done.json: it says machine 1 is done, but frames 1, 2, 3" in log
    assert "[cloud-render] Not delivered: frames 1, 2, 3, 4, 5, 6, 7, 8 claimed by machine 1." in log
    nothing_left(sim, job)
    # Both machines ended with nothing left to claim, no frame marked: the last to end says the
    # job stopped with frames not rendered (one e-mail, though neither failed).
    words = r"shot\.blend_stopped_with_frames_not_rendered_0_of_8_frames_done_about_\d+\.\d\d_USD"
    one_mail(sim, job, "stopped", words)
