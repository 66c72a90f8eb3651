"""What the add-on keeps on the artist's disk and carries to the cloud, end to end: the installed
extension, the emulated account, the instance simulator rendering for real."""

from __future__ import annotations

import bpy
import pytest

from cloud.aws.session import client
from dev import addon_harness as harness
from tests.e2e.test_addon_flow import cloud, textured_scene, view, wait_final

pytestmark = pytest.mark.slow
__all__ = ["cloud"]  # a fixture, shared with the main flow test


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
