"""What the render machine writes is untrusted input on the artist's computer.

A hostile machine (or anyone who can write to the job's folder) posts through the job's own
presigned POST, exactly as the worker's `Poster` does, to the emulated S3 (moto over HTTP);
the add-on's job thread then reads it. Nothing may land outside the job's output folder,
nothing oversized is read, malformed documents are logged and ignored, and following goes on.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cloud.aws import storage
from cloud.aws.session import client
from cloud.job.cloud_steps import CloudSteps
from cloud.job.events import EventQueue, FrameArrived, LogLines, MachineStatus
from cloud.job.job_thread import JobRunner
from cloud.job.records import RecordStore, Stage, new_job_id
from cloud.machine import contract
from cloud.machine.transport import Poster
from tests.factories import job_record
from tests.images import png

BUCKET = "cloud-render-hostile-test"


class Machine:
    """Writes under jobs/<id>/out/ through the job's presigned POST, as the worker does."""

    def __init__(self, aws, job_id: str) -> None:
        post = storage.presign_outputs(aws.settings, BUCKET, job_id, 3600)
        self.poster = Poster(post["url"], post["fields"], contract.out_prefix(job_id))

    def put(self, relative: str, body: bytes | str) -> None:
        self.poster.put(relative, body.encode() if isinstance(body, str) else body)

    def put_json(self, name: str, data: object) -> None:
        self.put(name, json.dumps(data))


def followed_job(aws, tmp_path: Path, frames: list[int], output_dir: Path, **fields):  # type: ignore[no-untyped-def]
    """A launched job in the emulated bucket, with the thread that follows it (not started)."""
    client(aws.settings, "s3").create_bucket(Bucket=BUCKET)
    record = job_record(output_dir, frames=frames, bucket=BUCKET, launched_at=time.time(), **fields)
    store = RecordStore(tmp_path / "jobs")
    store.save(record)
    events = EventQueue()
    runner = JobRunner(record, aws.settings, events, store, CloudSteps(tmp_path / "state"))
    return runner, events, Machine(aws, record.job_id)


@pytest.fixture
def job(aws, tmp_path: Path):
    runner, events, machine = followed_job(aws, tmp_path, [1, 2, 3], tmp_path / "home" / "renders" / "job")
    return runner, events, machine, tmp_path


def drained(events: EventQueue) -> list:
    return events.drain(budget_s=1.0, limit=100_000)


def log_text(taken: list) -> str:
    return "\n".join(line for e in taken if isinstance(e, LogLines) for line in e.lines)


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def test_keys_that_would_leave_the_output_folder_are_refused_and_logged(job):
    runner, events, machine, tmp_path = job
    hostile = [
        "files/../../../../escape.blend",
        "files/..\\..\\startup.py",
        "files/C:/Users/artist/evil.py",
        "files//etc/cron.d/evil",
        "files/./hidden.py",
        "files/ok/\x1b[2Jclear.txt",
    ]
    for key in hostile:
        machine.put(key, b"evil")
    machine.put("files/passes/normal.exr", b"fine")
    runner.poll_outputs()

    out = Path(runner.record.output_dir)
    assert files_under(out) == {"passes/normal.exr"}
    everything = files_under(tmp_path)
    assert not [name for name in everything if "escape" in name or "evil" in name or "startup" in name]
    log = log_text(drained(events))
    assert log.count("Ignored what the machine wrote") == len(hostile)
    assert "\x1b" not in log  # the terminal escape is not echoed into the panel either


def test_a_link_inside_the_output_folder_is_not_followed(job):
    runner, events, machine, tmp_path = job
    outside = tmp_path / "outside"
    outside.mkdir()
    out = Path(runner.record.output_dir)
    out.mkdir(parents=True)
    os.symlink(outside, out / "passes")
    machine.put("files/passes/x.exr", b"through the link")
    runner.poll_outputs()
    assert list(outside.iterdir()) == []
    assert "through a link" in log_text(drained(events))


def test_frames_come_from_the_machines_plan_not_from_digits_in_their_names(job):
    runner, events, machine, _ = job
    # The artist's output is //shot_####_v2: the last digits of each name are "2".
    plan = [{"name": f"shot_{f:04d}_v2.png", "frame": f} for f in (1, 2, 3)]
    machine.put_json("plan.json", {"contract": contract.CONTRACT_VERSION, "frames": plan})
    for f in (1, 2, 3):
        machine.put(f"frames/shot_{f:04d}_v2.png", png(f, f))
    machine.put("frames/not-in-plan.png", b"stray")
    runner.poll_outputs()
    arrived = sorted(e.frame for e in drained(events) if isinstance(e, FrameArrived))
    assert arrived == [1, 2, 3]
    assert sorted(runner.record.frames_done) == [1, 2, 3]
    runner.finish((Stage.DONE, {"frames_done": [1, 2, 3]}))
    assert runner.record.stage == "done", runner.record.message


def test_a_plan_that_names_a_foreign_frame_or_a_bad_path_is_refused_whole(job):
    runner, events, machine, _ = job
    machine.put_json("plan.json", {"frames": [{"name": "../../x.png", "frame": 1}]})
    machine.put("frames/../../x.png", b"x")
    runner.poll_outputs()
    assert not [e for e in drained(events) if isinstance(e, FrameArrived)]
    assert runner.record.frames_done == []
    machine.put_json("plan.json", {"frames": [{"name": "a.png", "frame": 999}]})
    runner._refused.clear()
    runner.poll_outputs()
    assert "frame 999, which the job does not have" in log_text(drained(events))


@pytest.mark.parametrize(
    "status",
    [
        {"state": "rendering", "frame": "12"},
        {"state": "rendering", "frame": [1]},
        {"state": "rendering", "frame": 10**30},
        {"state": "rendering", "frame": 2, "sample": 5, "samples": 4},
        {"state": "rendering", "frame": 2, "seconds_per_frame": float("nan")},
        {"state": "rendering", "frame": 77},
        {"state": "exploded", "frame": 2},
        ["not", "an", "object"],
        {"state": "rendering", "frame": 2, "contract": 99},
    ],
)
def test_malformed_status_is_logged_and_ignored_and_following_goes_on(job, status):
    runner, events, machine, _ = job
    machine.put_json("status.json", status)
    runner.poll_outputs()
    taken = drained(events)
    assert not [e for e in taken if isinstance(e, MachineStatus)]
    assert "Ignored what the machine wrote" in log_text(taken)
    machine.put_json("status.json", {"state": "rendering", "frame": 2, "sample": 3, "samples": 8, "seq": 2})
    runner.poll_outputs()
    status_events = [e for e in drained(events) if isinstance(e, MachineStatus)]
    assert [(e.frame, e.sample, e.samples_total) for e in status_events] == [(2, 3, 8)]


def test_a_version_mismatch_says_so_in_plain_words(job):
    runner, events, machine, _ = job
    machine.put_json("status.json", {"contract": 7, "state": "rendering"})
    runner.poll_outputs()
    assert "contract version 7, this add-on speaks version" in log_text(drained(events))


def test_oversized_documents_frames_and_log_chunks_are_never_read(job, monkeypatch):
    runner, events, machine, _ = job
    machine.put("status.json", b" " * (contract.MAX_JSON_BYTES + 10))
    machine.put("logs/000001.log", b"x" * (contract.MAX_LOG_CHUNK_BYTES + 1))
    machine.put("logs/000002.log", "a fine line\n" + "y" * 5000 + "\n")
    machine.put_json("plan.json", {"frames": [{"name": "big.exr", "frame": 1}]})
    monkeypatch.setattr(contract, "MAX_FRAME_BYTES", 1000)  # a stand-in for the real 8 GiB bound
    machine.put("frames/big.exr", b"z" * 1001)
    runner.poll_outputs()
    taken = drained(events)
    log = log_text(taken)
    assert "status.json is" in log and "over the" in log
    assert "log chunk over" in log
    assert "a fine line" in log
    assert max(len(line) for e in taken if isinstance(e, LogLines) for line in e.lines) <= (
        contract.MAX_LOG_LINE_CHARS
    )
    assert "1001 bytes, over the 1000 allowed" in log
    assert not Path(runner.record.output_dir, "big.exr").exists()


def test_too_many_objects_are_cut_at_the_bound(job, monkeypatch):
    runner, events, machine, _ = job
    monkeypatch.setattr(contract, "MAX_OUTPUT_OBJECTS_PER_FRAME", 1)
    monkeypatch.setattr(contract, "MAX_EXTRA_OUTPUT_OBJECTS", 2)
    for index in range(8):
        machine.put(f"files/pass{index}.exr", b"p")
    runner.poll_outputs()
    assert len(files_under(Path(runner.record.output_dir))) == 5  # 3 frames x 1 + 2
    assert "8 objects, over the 5 this job may have" in log_text(drained(events))


def test_the_failures_last_lines_reach_the_log_and_the_kind_chooses_the_action(job):
    runner, events, machine, _ = job
    machine.put_json(
        "error.json",
        {
            "kind": "gpu_memory",
            "cause": "The GPU ran out of memory while rendering.",
            "last_lines": ["Fra:2 Mem:23000M", "CUDA error: out of memory\x07"],
            "frames_left": [2, 3],
        },
    )
    final = runner.final_state()
    assert final is not None
    runner.finish(final)
    log = log_text(drained(events))
    assert "CUDA error: out of memory" in log and "\x07" not in log
    assert runner.record.stage == "failed"
    assert runner.record.message == "The GPU ran out of memory while rendering."
    assert "more GPU memory" in runner.record.action


def test_an_input_missing_from_the_bucket_makes_the_next_submit_ask_s3_again(job):
    """What this computer saw in the bucket spares a resubmit its HEADs; a job that found an input
    missing there (deleted by hand) makes it forget that bucket, so the next submit sends it."""
    runner, _events, machine, _ = job
    known = runner.steps.known_objects
    seen = {"cas/" + "a" * 64: datetime.now(UTC)}
    known.remember(BUCKET, seen)
    known.remember("cloud-render-another-bucket", seen)
    assert known.trusted(BUCKET, list(seen), refresh_after_s=86400) != {}
    machine.put_json(
        "error.json",
        {"kind": "missing_file", "cause": "The file textures/checker.png is missing from the bucket."},
    )
    final = runner.final_state()
    assert final is not None
    runner.finish(final)
    assert runner.record.stage == "failed"
    assert known.trusted(BUCKET, list(seen), refresh_after_s=86400) == {}
    assert known.trusted("cloud-render-another-bucket", list(seen), refresh_after_s=86400) != {}


def test_reattaching_does_not_download_frames_already_on_disk(job, aws):
    runner, events, machine, tmp_path = job
    machine.put_json("plan.json", {"frames": [{"name": "f0001.png", "frame": 1}]})
    machine.put("frames/f0001.png", png())
    runner.poll_outputs()
    local = Path(runner.record.output_dir) / "f0001.png"
    assert local.read_bytes() == png()
    edited = png(rgba=(201, 81, 41, 255))
    local.write_bytes(edited)  # same size: touched by the artist after it arrived
    # Blender restarted: a new runner follows the same job from its record.
    store = RecordStore(tmp_path / "jobs")
    again = JobRunner(store.load(runner.record.job_id), aws.settings, events, store, CloudSteps(tmp_path))
    drained(events)
    again.poll_outputs()
    assert local.read_bytes() == edited
    assert not [e for e in drained(events) if isinstance(e, FrameArrived)]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"spec_version": contract.CONTRACT_VERSION - 1}, "do not match"),
        ({"engine": "lambda"}, "names engine 'lambda'"),
    ],
    ids=["contract-version", "unknown-engine"],
)
def test_the_machine_refuses_a_spec_it_cannot_run(aws, tmp_path, change, words):
    """Checked on the machine's side too: a worker of one version never runs another's spec,
    and runs no engine but the ones it knows."""
    from cloud.machine.__main__ import main

    client(aws.settings, "s3").create_bucket(Bucket=BUCKET)
    job_id = new_job_id()
    post = storage.presign_outputs(aws.settings, BUCKET, job_id, 3600)
    spec = {
        "spec_version": contract.CONTRACT_VERSION,
        "job_id": job_id,
        "upload_url": post["url"],
        "upload_fields": post["fields"],
        "upload_prefix": contract.out_prefix(job_id),
        **change,
    }
    spec_path = tmp_path / "job-spec.json"
    spec_path.write_text(json.dumps(spec))
    code = main(["--spec", str(spec_path), "--work", str(tmp_path / "run"), "--no-power-off"])
    assert code == 1
    body = client(aws.settings, "s3").get_object(
        Bucket=BUCKET, Key=contract.out_prefix(job_id) + "error.json"
    )
    error = contract.parse_error(contract.load_document(body["Body"].read(), "error.json"), [])
    assert error.kind == "contract"
    assert words in error.cause
    assert not (tmp_path / "run" / "job").exists()  # nothing was downloaded or rendered


def test_the_end_of_a_long_job_is_read(aws, tmp_path):
    """done.json lists every frame done (as the machine writes it, indented): for 40000 frames
    that is over the 256 kB allowed a status, and the end of the job was refused."""
    frames = list(range(1, 40_001))
    runner, _events, machine = followed_job(aws, tmp_path, frames, tmp_path / "out")
    machine.put("done.json", json.dumps({"frames_done": frames, "seconds": 9.0}, indent=1))
    assert len(json.dumps({"frames_done": frames}, indent=1)) > contract.MAX_JSON_BYTES
    final = runner.final_state()
    assert final is not None and final[0].value == "done"


def test_the_spec_names_its_engine_and_an_old_spec_gets_one():
    """The entry point picks the runner by the spec's engine; a spec written before the field
    existed is read as "batch" where it hands out claims, else "ec2"."""
    assert contract.spec_engine({"engine": "batch"}) == "batch"
    assert contract.spec_engine({"claim_urls": {"1": "https://claim"}}) == "batch"
    assert contract.spec_engine({"claim_urls": {}}) == "ec2"
    assert contract.spec_engine({}) == "ec2"
    with pytest.raises(contract.ContractError, match="engine"):
        contract.spec_engine({"engine": "EC2"})
    one = contract.WorkerSpec("j1", "5.0.1", "shot.blend", [1], [], "https://u", {}, "jobs/j1/out/")
    many = contract.WorkerSpec(
        "j1", "5.0.1", "shot.blend", [1], [], "https://u", {}, "jobs/j1/out/", claim_urls={"1": "https://c"}
    )
    assert (one.engine, many.engine) == ("ec2", "batch")
    assert json.loads(many.to_json())["engine"] == "batch"
    with pytest.raises(contract.ContractError):
        contract.WorkerSpec("j1", "5.0.1", "shot.blend", [1], [], "https://u", {}, "jobs/j1/out/", engine="x")


# What would make a line read as something else: a right-to-left override (a file name that
# shows backwards), isolates, zero-width and invisible characters, terminal escapes, a bell, a
# Unicode line separator, and a lone surrogate (JSON's \ud800, which no UTF-8 string can hold).
HIDDEN = (
    "\u202e",
    "\u202c",
    "\u2066",
    "\u2069",
    "\u200b",
    "\u200d",
    "\ufeff",
    "\x1b",
    "\x07",
    "\u2028",
    "\ud800",
)


def _texts(taken: list) -> list[str]:
    """Every text the machine's words reached, in each event the job thread posted."""
    texts: list[str] = []
    for event in taken:
        for value in vars(event).values():
            if isinstance(value, str):
                texts.append(value)
            elif isinstance(value, tuple):
                texts += [v for v in value if isinstance(v, str)]
    return texts


def test_machine_text_reaches_the_log_and_panel_as_text(job):
    """Hostile text in the machine's log, status and error reaches the job's events with every
    hidden character removed or shown as <U+XXXX>: the artist reads what is really there."""
    runner, events, machine, _ = job
    machine.put(
        "logs/000001.log", "invoice_\u202egnp.exe\u202c done\u200b \u2066\u2069\x1b[2J\x07 next\u2028line\n"
    )
    machine.put_json(
        "status.json",
        {
            "state": "rendering",
            "frame": 2,
            "device": "NVIDIA \u202eA10G\ufeff",
            "message": "ok\ud800\u200d",
            "seq": 1,
        },
    )
    machine.put_json(
        "error.json", {"kind": "other", "cause": "Blender stopped: \u202e.exe\u2066 \x1b]0;pwned\x07"}
    )
    runner.poll_outputs()
    final = runner.final_state()
    assert final is not None
    runner.finish(final)
    taken = drained(events)
    texts = [*_texts(taken), runner.record.message]
    assert not [text for text in texts if any(char in text for char in HIDDEN)], texts
    log = log_text(taken)
    # The escape and the bell are gone; the line separator ends a log line, as a newline does.
    assert "invoice_<U+202E>gnp.exe<U+202C> done<U+200B> <U+2066><U+2069> next\nline" in log
    device = next(e.device for e in taken if isinstance(e, MachineStatus))
    assert device == "NVIDIA <U+202E>A10G<U+FEFF>"
    assert "Blender stopped: <U+202E>.exe<U+2066>" in runner.record.message + log
