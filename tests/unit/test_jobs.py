"""Job records, stages and the runner's arithmetic (no AWS needed for these)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from cloud.aws.session import AwsSettings
from cloud.job.cloud_steps import CloudSteps
from cloud.job.events import EventQueue
from cloud.job.job_thread import JobRunner
from cloud.job.manager import JobManager
from cloud.job.records import FINAL_STAGE_IDS, FINAL_STAGES, JobRecord, RecordStore, Stage
from tests.factories import job_record


def record(**changes: Any) -> JobRecord:
    """Ten frames at $0.36/h: the figures the arithmetic below works with."""
    return job_record("/tmp/out", frames=list(range(1, 11)), price_per_hour=0.36, **changes)


def test_records_round_trip_and_a_damaged_file_is_skipped(tmp_path: Path):
    store = RecordStore(tmp_path)
    first = record(created=time.time() - 10)
    second = record()
    store.save(first)
    store.save(second)
    (tmp_path / "broken.json").write_text("{not json")
    assert [r.job_id for r in store.all()] == [second.job_id, first.job_id]
    assert store.load(first.job_id) == first


def test_a_record_being_saved_is_never_listed_twice(tmp_path: Path):
    """The runner saves its record from its own thread while the panel lists the jobs: a
    listing must never show the half-written copy beside the record (CI once read two)."""
    store = RecordStore(tmp_path)
    rec = record()
    store.save(rec)
    (tmp_path / ".tmp-left-by-a-crash.json").write_text(rec.to_json())
    stop = threading.Event()

    def keep_saving() -> None:
        while not stop.is_set():
            store.save(rec)

    saver = threading.Thread(target=keep_saving)
    saver.start()
    try:
        listings = [[r.job_id for r in store.all()] for _ in range(300)]
    finally:
        stop.set()
        saver.join()
    assert all(ids == [rec.job_id] for ids in listings)


def test_frames_missing_and_final_stages():
    rec = record(frames_done=[1, 2, 5])
    assert rec.frames_missing == [3, 4, 6, 7, 8, 9, 10]
    assert not rec.is_final
    rec.stage = Stage.CAPPED.value
    assert rec.is_final


def test_stages_are_stored_as_ids_and_shown_as_words():
    """The record holds the id; the panel's words come from the label map."""
    assert Stage.QUOTED.value == "quoted" and Stage.QUOTED.label == "Waiting for you"
    assert Stage.STARTING.label == "Starting machine"
    assert {stage.value for stage in FINAL_STAGES} == FINAL_STAGE_IDS
    assert json.loads(record(stage=Stage.DONE.value).to_json())["stage"] == "done"


def test_a_record_saved_with_the_old_shown_words_still_loads(tmp_path: Path):
    """Records written before the stage ids held the shown words ("Waiting for you", "Done"):
    they load as the same stage, and an unfinished one is still unfinished."""
    store = RecordStore(tmp_path)
    for words, stage in (
        ("Done", Stage.DONE),
        ("Waiting for you", Stage.QUOTED),
        ("Rendering", Stage.RENDERING),
    ):
        old = json.loads(record().to_json())
        old["stage"] = words
        store.path(old["job_id"]).write_text(json.dumps(old))
        loaded = store.load(old["job_id"])
        assert loaded.stage == stage.value and loaded.stage_enum is stage
        assert loaded.is_final == (stage is Stage.DONE)
    assert Stage.parse("Starting machine") is Stage.STARTING and Stage.parse("capped") is Stage.CAPPED


def test_projection_uses_the_measured_pace(tmp_path: Path):
    rec = record(frames_done=[1, 2], seconds_per_frame=600.0, cost_so_far=0.25)
    runner = JobRunner(rec, AwsSettings(), EventQueue(), RecordStore(tmp_path), CloudSteps(tmp_path))
    # 8 frames left x 600 s at $0.36/h = $0.48, plus $0.25 so far.
    assert abs(runner.projected_total() - 0.73) < 1e-9
    rec.seconds_per_frame = 0.0
    assert runner.projected_total() == 0.0


def test_a_job_that_never_launched_is_not_reattached(tmp_path: Path):
    manager = JobManager(tmp_path / "jobs", EventQueue(), AwsSettings)
    rec = record(stage=Stage.UPLOADING.value)
    manager.store.save(rec)
    assert manager.attach_unfinished(rec.blend_name) == []
    again = manager.store.load(rec.job_id)
    assert again.stage == "failed"
    assert "closed before the machine started" in again.message
    assert again.action == "Press Render in Cloud again."
