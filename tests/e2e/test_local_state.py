"""What the add-on keeps on the artist's disk and carries to the cloud, end to end: the installed
extension, the emulated account, the instance simulator rendering for real."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import bpy
import pytest

from cloud.aws.session import client
from cloud.job.records import FINAL_STAGE_IDS
from cloud.machine.contract import logs_prefix, out_prefix
from dev import addon_harness as harness
from tests.addon.test_panels_draw import draw
from tests.e2e.test_addon_flow import CPU_TYPE, cloud, instance_states, textured_scene, view, wait_final

pytestmark = pytest.mark.slow
__all__ = ["cloud"]  # a fixture, shared with the main flow test


def cpu_job_started(path: Path, **scene: int) -> tuple[Path, str]:
    """A scene saved at `path` on a CPU machine type, Render in Cloud pressed: (path, job id)."""
    harness.make_scene(path, **scene)
    bpy.context.scene.cloud_render.instance_type = CPU_TYPE
    bpy.ops.wm.save_mainfile()
    assert bpy.ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
    return path, view().job_id


def test_the_next_job_carries_no_frames_of_the_last_and_no_copy_stays_behind(cloud, tmp_path):
    textured_scene(tmp_path, frames=1)
    module = harness.addon()
    manager = module.addon.pump.manager()
    submit_root = module.addon.pump.user_dir("submit")
    assert bpy.ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
    first = view().job_id
    wait_final()
    assert view().state == "done", view().message
    # Uploaded: the scene copy and its pack (a copy of every texture) left the artist's disk.
    assert not (submit_root / first).exists()

    # The artist looks at the frames (the image editor keeps the image in the file) and renders again.
    assert bpy.ops.cloud_render.show_frames(job_id=first) == {"FINISHED"}
    assert module.addon.job_view.image_name(first) in bpy.data.images
    bpy.ops.wm.save_mainfile()
    assert bpy.ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
    second = view().job_id
    wait_final()
    assert view().state == "done", view().message

    one, two = manager.store.load(first), manager.store.load(second)
    frames = [
        path for path in two.pack_manifest if "cloud_renders" in path or path.endswith("frame_0001.png")
    ]
    assert frames == [], frames
    assert sorted(two.pack_manifest) == sorted(one.pack_manifest)  # the scene and its texture, no more
    assert not (submit_root / second).exists()


@pytest.mark.iam_managed_policies  # Set Up's Batch step attaches AWS's managed ECS policy
def test_set_up_uses_the_bucket_jobs_use(cloud):
    """One bucket registry: Set Up finds the bucket the fixture's job steps made, and makes none."""
    cloud.attach("setup")  # as the README says: the Set Up policy is attached for Set Up
    cloud.quotas.set_quota("L-DB2E81BA", 16)
    settings = bpy.context.scene.cloud_render
    settings.instance_type, settings.use_spot, settings.machines = "g4dn.xlarge", True, 2
    view().setup_summary = ""
    try:
        assert bpy.ops.cloud_render.setup() == {"FINISHED"}
        harness.drain_until(lambda: bool(view().setup_summary), 60)
    finally:
        settings.use_spot, settings.machines = False, 1
    assert view().setup_summary.splitlines()[0] == "Ready to render"
    assert [b["Name"] for b in client(cloud.settings, "s3").list_buckets()["Buckets"]] == [cloud.bucket]
    # Set Up also made the Batch engine for the scene's machines: its type, spot, two of them.
    [env] = client(cloud.settings, "batch").describe_compute_environments(
        computeEnvironments=["cloud-render-g4dn-xlarge-spot"]
    )["computeEnvironments"]
    assert (env["computeResources"]["type"], env["computeResources"]["maxvCpus"]) == ("SPOT", 8)


def test_a_running_job_is_its_files_again_after_file_new_and_open_recent(cloud, tmp_path):
    """Issue 26, item 1, from the real window: a job started, File > New, the file opened again
    from Open Recent. Its Current Job panel is back, with Cancel, and Render in Cloud asks before
    a second billing job (it started one silently while the first rendered on)."""
    path, job_id = cpu_job_started(tmp_path / "project" / "survives.blend", frames=6, size=200, samples=400)
    addon = harness.addon().addon
    manager = addon.pump.manager()

    bpy.ops.wm.read_homefile()  # File > New: Blender's view of the job is emptied
    assert (bpy.data.filepath, view().job_id) == ("", "")
    assert addon.submit.running_jobs() == []  # the new file has no job of its own
    # The job renders on meanwhile, and what it says is kept for its file.
    kept = addon.job_view.job_state(job_id)
    harness.drain_until(lambda: kept.frames_done >= 1 or kept.state in FINAL_STAGE_IDS, 240)
    assert kept.state not in FINAL_STAGE_IDS, kept.message

    bpy.ops.wm.open_mainfile(filepath=str(path))  # Open Recent
    assert manager.is_running(job_id)
    assert view().job_id == job_id
    assert view().state == kept.state and view().frames_total == 6 and view().frames_done >= 1
    labels, operators = draw(harness.addon().panels.render_panel.CLOUDRENDER_PT_job)
    assert "cloud_render.cancel" in operators and any(text.startswith("Elapsed ") for text in labels)

    # Render in Cloud again: the confirmation names the running job; without it, no second job.
    jobs = {record.job_id for record in manager.store.all()}
    asked = addon.submit.running_job_text()
    assert f"Job {job_id} is still rendering this file" in asked and "another job" in asked
    with pytest.raises(RuntimeError, match=job_id):
        bpy.ops.cloud_render.render("EXEC_DEFAULT")
    assert {record.job_id for record in manager.store.all()} == jobs

    assert bpy.ops.cloud_render.cancel(job_id=view().job_id) == {"FINISHED"}
    wait_final(120)
    assert view().state == "cancelled" and manager.store.load(job_id).stage == "cancelled"
    assert addon.submit.running_job_text() == ""


def test_a_job_that_ended_while_blender_was_closed_shows_its_cost(cloud, tmp_path):
    """The job ended while Blender was closed: opened again, the panel said "cost $0.00" (no cost
    update comes from machines already gone) although the job's record holds its cost."""
    path, job_id = cpu_job_started(tmp_path / "project" / "away.blend", frames=2, size=32, samples=4)
    module = harness.addon()
    manager = module.addon.pump.manager()
    # The machine is started and billing: the job's record holds what it cost so far ...
    harness.drain_until(lambda: manager.store.load(job_id).cost_so_far > 0, 120)
    closed_with = manager.store.load(job_id)
    # ... then Blender is closed; the machine renders every frame and ends on its own.
    manager.stop_all()
    # Its thread ends with Blender, leaving the record as it was (on a busy computer a poll can
    # outlast stop_all's join, and see the machine's end itself: a thread Blender's exit kills).
    harness.drain_until(lambda: not manager.is_running(job_id), 60)
    manager.store.save(closed_with)
    module.addon.pump._manager = None
    module.addon.job_view.forget()
    s3 = client(cloud.settings, "s3")
    done = out_prefix(job_id) + "done.json"
    harness.drain_until(lambda: s3.list_objects_v2(Bucket=cloud.bucket, Prefix=done)["KeyCount"], 240)

    bpy.ops.wm.open_mainfile(filepath=str(path))
    assert view().job_id == job_id
    wait_final()
    assert view().state == "done", view().message
    cost = manager.store.load(job_id).cost_so_far
    assert cost > 0 and view().cost_so_far == pytest.approx(cost)
    labels, _operators = draw(module.panels.render_panel.CLOUDRENDER_PT_job)
    said = module.panels.render_panel._cost(cost)
    assert any(text.endswith(f"cost {said}") for text in labels), labels


def test_closed_mid_job_and_opened_again_every_frame_arrives_once(cloud, tmp_path):
    """Issue 24, item 3: the panel says Blender may be closed once the machine runs; Blender is
    closed mid-job and the file opened again: the job is followed from where it was, every frame
    arrives, none is fetched again or rendered twice, and no second machine is started.

    Blender's quit is what it does to the add-on: the job's thread stops following and nothing
    the add-on held in Python is kept (this process stays, as a second Blender would start)."""
    path, job_id = cpu_job_started(tmp_path / "project" / "overnight.blend", frames=6, size=200, samples=400)
    module = harness.addon()
    manager = module.addon.pump.manager()
    harness.drain_until(lambda: view().frames_done >= 1 or view().state in FINAL_STAGE_IDS, 240)
    assert view().state not in FINAL_STAGE_IDS, view().message
    labels, _operators = draw(module.panels.render_panel.CLOUDRENDER_PT_job)
    assert "You may close Blender and this computer: the machine renders on" in " ".join(labels)

    manager.stop_all()  # Blender is closed
    harness.drain_until(lambda: not manager.is_running(job_id), 60)
    fetched = {
        frame: Path(file).stat().st_mtime_ns for frame, file in manager.store.load(job_id).frame_paths.items()
    }
    assert fetched  # what landed before Blender was closed
    module.addon.pump._manager = None
    module.addon.job_view.forget()
    bpy.ops.wm.read_homefile()  # Blender started again, with its empty file

    bpy.ops.wm.open_mainfile(filepath=str(path))
    assert view().job_id == job_id
    reopened_while = view().state
    wait_final()
    assert view().state == "done", view().message
    record = module.addon.pump.manager().store.load(job_id)
    assert sorted(int(frame) for frame in record.frame_paths) == [1, 2, 3, 4, 5, 6]
    assert all(Path(file).is_file() for file in record.frame_paths.values())
    for frame, mtime in fetched.items():  # fetched before the close: not fetched again
        assert Path(record.frame_paths[frame]).stat().st_mtime_ns == mtime, frame
    # The machine's own log: each frame rendered and uploaded once, by the one machine launched.
    s3 = client(cloud.settings, "s3")
    chunks = s3.list_objects_v2(Bucket=cloud.bucket, Prefix=logs_prefix(job_id))["Contents"]
    log = "".join(s3.get_object(Bucket=cloud.bucket, Key=c["Key"])["Body"].read().decode() for c in chunks)
    uploads = Counter(int(n) for n in re.findall(r"frame (\d+) uploaded", log))
    assert uploads == Counter({frame: 1 for frame in range(1, 7)}), (reopened_while, uploads)
    assert len(instance_states(cloud)) == 1
    # The job log is whole again, the lines written before Blender was closed too.
    followed = "\n".join(module.addon.job_view.log_lines(job_id))
    assert all(f"frame {frame} uploaded" in followed for frame in range(1, 7)), followed[-2000:]
