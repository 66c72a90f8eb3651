"""Issue 24, item 4: the jobs of this account on any computer.

The first computer is the installed add-on: it submits a real job (the instance simulator renders
it with Cycles). A second computer is another user folder (its own job records and bucket
registry: it knows no bucket) with the same account's daily key: it lists the first one's job from
the bucket, follows it and gets its frames, then cancels it; the first one sees it cancelled and no
machine is left. A third computer is the add-on's UI again over yet another user folder: Jobs on
Other Computers shows the job marked as from another computer, and Follow Here brings its frames
next to the open file."""

from __future__ import annotations

from pathlib import Path

import bpy
import pytest

from cloud.job.records import FINAL_STAGE_IDS
from dev import addon_harness as harness
from tests.addon.test_panels_draw import draw
from tests.e2e.test_addon_flow import cloud, instance_states, view, wait_final
from tests.e2e.test_local_state import cpu_job_started

pytestmark = pytest.mark.slow
__all__ = ["cloud"]  # a fixture, shared with the main flow test


def another_computer(module, folder: Path, events=None):  # type: ignore[no-untyped-def]
    """A job manager over its own user folder (records and bucket registry), the same keys."""
    first = module.addon.pump.manager()
    return module.cloud.job.manager.JobManager(
        folder / "jobs", events or module.cloud.job.events.EventQueue(), first.settings_for
    )


def test_a_second_computer_lists_follows_and_cancels_the_first_ones_job(cloud, tmp_path):
    _path, job_id = cpu_job_started(tmp_path / "first" / "long.blend", frames=6, size=200, samples=400)
    module = harness.addon()
    first = module.addon.pump.manager()
    harness.drain_until(lambda: first.store.load(job_id).launch_id or view().state in FINAL_STAGE_IDS, 120)
    assert view().state not in FINAL_STAGE_IDS, view().message

    second = another_computer(module, tmp_path / "second")
    assert not (tmp_path / "second" / "state" / "buckets.json").exists()  # it knows no bucket
    listing, elsewhere = second.jobs_elsewhere()
    assert [job.job_id for job in elsewhere] == [job_id] and not listing.skipped
    [job] = elsewhere
    assert job.summary.blend_file == "long.blend" and job.summary.frames == [1, 2, 3, 4, 5, 6]
    assert job.stage not in FINAL_STAGE_IDS and job.summary.launch_id == first.store.load(job_id).launch_id

    frames = tmp_path / "second" / "renders"
    followed = second.follow_shared(job_id, frames, str(tmp_path / "second" / "shot.blend"))
    assert followed.output_dir == str(frames) and second.is_running(job_id)
    harness.drain_until(lambda: second.store.load(job_id).frames_done, 240)
    got = second.store.load(job_id)
    assert got.frame_files and all(
        Path(file).is_file() and frames in Path(file).parents for file in got.frame_files
    )

    second.cancel(job_id)
    harness.drain_until(lambda: second.store.load(job_id).is_final, 120)
    assert second.store.load(job_id).stage == "cancelled"
    # The first computer sees it cancelled, and says by whom; no machine is left.
    wait_final(120)
    assert view().state == "cancelled", view().message
    assert view().message.startswith("Cancelled from another computer."), view().message
    harness.drain_until(lambda: set(instance_states(cloud)) <= {"terminated", "shutting-down"}, 30)
    listing, elsewhere = second.jobs_elsewhere()  # followed here: it has a record here now
    assert [(j.job_id, j.stage) for j in listing.jobs] == [(job_id, "cancelled")] and not elsewhere

    second.stop_all()  # its thread has ended the job: joined, so nothing of it outlives the test

    # A third computer, in the add-on's own UI: the job is listed, marked, and followed here.
    third = another_computer(module, tmp_path / "third", module.addon.pump.events)
    module.addon.pump._manager = third
    try:
        the_third_computer_follows_it_here(module, third, job_id, tmp_path)
    finally:  # the next test's Blender is the first computer again, nothing of this one left
        third.stop_all()
        module.addon.pump._manager = first
        module.addon.panel_results.results().elsewhere = []


def the_third_computer_follows_it_here(module, third, job_id: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Jobs on Other Computers lists the job marked; Follow Here brings its frames next to the open file."""
    module.addon.job_view.forget()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "third" / "shot.blend"))
    module.addon.jobs_list.refresh()
    assert len(module.addon.jobs_list.items()) == 0
    assert bpy.ops.cloud_render.other_jobs("EXEC_DEFAULT") == {"FINISHED"}
    harness.drain_until(lambda: len(module.addon.jobs_list.items()) == 1, 60)
    [row] = module.addon.jobs_list.items()
    assert (row.job_id, row.elsewhere, row.stage) == (job_id, True, "cancelled")
    labels, operators = draw(module.panels.render_panel.CLOUDRENDER_PT_jobs)
    assert row.label.startswith("From another computer: long.blend · c5.2xlarge · 6 frames")
    assert "From another computer:" in " ".join(labels)
    assert "cloud_render.follow_job" in operators and "cloud_render.cancel" not in operators
    assert "cloud_render.delete_cloud_data" not in operators  # nothing of it is here to delete

    assert bpy.ops.cloud_render.follow_job(job_id=job_id) == {"FINISHED"}
    assert module.addon.pump.manager() is third
    harness.drain_until(lambda: third.store.path(job_id).is_file() and third.store.load(job_id).is_final, 120)
    record = third.store.load(job_id)
    assert record.stage == "cancelled" and record.frames_done, record.message
    here = tmp_path / "third" / "cloud_renders" / job_id
    assert record.output_dir == str(here)
    assert all(Path(file).is_file() and here in Path(file).parents for file in record.frame_files)
    [row] = module.addon.jobs_list.items()  # now a job of this file, with its record
    assert not row.elsewhere and row.job_id == job_id
