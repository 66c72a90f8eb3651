"""The price estimate from a real test render of the scene, in a separate Blender process."""

from __future__ import annotations

import importlib
import json
import os
import subprocess

import bpy

from cloud.machine.assemble_movie import egl_environment
from dev import addon_harness as harness


def test_estimate_renders_a_tile_and_prices_every_machine(installed, tmp_path, aws):
    path = harness.make_scene(tmp_path / "estimate.blend", frames=10, size=128, samples=32)
    before = path.read_bytes()
    harness.connect(aws.url)
    try:
        settings = bpy.context.scene.cloud_render
        settings.instance_type = "g4dn.xlarge"
        results = harness.addon().addon.panel_results
        results.forget()
        assert bpy.ops.cloud_render.estimate() == {"FINISHED"}
        shown = results.results()
        harness.drain_until(lambda: shown.estimate or (shown.estimate_note and not shown.estimating), 120)
        lines = [row.text for row in shown.estimate] or [shown.estimate_note]
        # price and time first, then the machine (machine_facts.estimate_lines)
        assert lines[0].startswith("$") and "g4dn.xlarge [chosen" in lines[0], lines
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


def test_an_eevee_scene_is_probed_with_eevee(installed, tmp_path, aws):
    """The probe renders EEVEE scenes with EEVEE (shaders compiled first, counted as set-up)."""
    path = harness.make_scene(tmp_path / "eevee.blend", frames=4, size=32, samples=4)
    eevee = "BLENDER_EEVEE_NEXT" if bpy.app.version < (4, 3, 0) else "BLENDER_EEVEE"  # 4.2 LTS's name
    bpy.context.scene.render.engine = eevee
    bpy.context.scene.eevee.taa_render_samples = 4
    bpy.ops.wm.save_mainfile()
    probe = importlib.import_module(harness.addon().__name__ + ".addon.estimate_probe")
    plan = probe.plan_for(bpy.context.scene)
    assert plan["samples"] == 4  # EEVEE's own samples, not Cycles'
    args = json.dumps({k: plan[k] for k in ("frame", "border", "samples")})
    env = dict(os.environ, **egl_environment(dict(os.environ))[0])
    command = [*probe.blender_command(), "-b", str(path), "--python", str(probe.PROBE_SCRIPT), "--", args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, check=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("CLOUDRENDER_PROBE "))
    measured = json.loads(line.split(" ", 1)[1])
    assert measured["engine"] == eevee
    assert measured["seconds"] > 0 and measured["sync_seconds"] > 0
    harness.connect(aws.url)
    try:
        bpy.context.scene.cloud_render.instance_type = "g4dn.xlarge"
        results = harness.addon().addon.panel_results
        results.forget()
        assert bpy.ops.cloud_render.estimate() == {"FINISHED"}
        shown = results.results()
        harness.drain_until(lambda: shown.estimate or (shown.estimate_note and not shown.estimating), 180)
        first = shown.estimate[0].text if shown.estimate else shown.estimate_note
        assert "g4dn.xlarge" in first and "s/frame" in first, shown
    finally:
        harness.disconnect()
