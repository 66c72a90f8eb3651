"""The price estimate from a real test render of the scene, in a separate Blender process."""

from __future__ import annotations

import os

import bpy

from . import harness


def test_estimate_renders_a_tile_and_prices_every_machine(installed, tmp_path, aws):
    path = harness.make_scene(tmp_path / "estimate.blend", frames=10, size=128, samples=32)
    before = path.read_bytes()
    harness.connect(aws.url)
    try:
        settings = bpy.context.scene.cloud_render
        settings.instance_type = "g4dn.xlarge"
        view = harness.addon().addon.job_view.view()
        view.estimate = ""
        assert bpy.ops.cloud_render.estimate() == {"FINISHED"}
        harness.drain_until(lambda: view.estimate and not view.estimate.startswith("Rendering"), 120)
        lines = view.estimate.splitlines()
        assert lines[0].startswith("g4dn.xlarge: ~") and "[chosen" in lines[0], lines
        assert any("cheapest" in line for line in lines) and any("fastest" in line for line in lines)
        assert "$" in lines[0] and "s/frame" in lines[0]
        text = harness.addon().addon.submit.confirmation_text(bpy.context)
        assert "Estimate from a test render: g4dn.xlarge" in text
        assert path.read_bytes() == before  # the artist's file was not touched
        # The scene copy the probe rendered is gone; the folder copies go to is the user's alone.
        submit_root = harness.addon().addon.pump.user_dir("submit")
        assert list(submit_root.glob("probe-*")) == []
        if os.name == "posix":
            assert submit_root.stat().st_mode & 0o777 == 0o700
    finally:
        harness.disconnect()
