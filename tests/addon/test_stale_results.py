"""What Check Scene and Estimate found holds for the settings it was found with: once those
change, the panel says so (the old answer greyed under what changed) and the confirmation quotes
no old figure (issue 26, item 3)."""

from __future__ import annotations

import bpy
import pytest

from dev import addon_harness as harness

from .test_panels_draw import draw, estimated


@pytest.fixture
def module(installed, tmp_path, aws):  # type: ignore[no-untyped-def]
    harness.make_scene(tmp_path / "stale.blend", frames=12, size=16, samples=32)
    harness.connect(aws.url)
    yield harness.addon()
    harness.addon().addon.panel_results.forget()
    harness.disconnect()


def test_a_finding_made_for_a_gpu_machine_is_out_of_date_once_a_cpu_machine_is_chosen(module):
    settings = bpy.context.scene.cloud_render
    settings.instance_type = "g4dn.xlarge"  # the scene renders on the CPU: a finding
    assert bpy.ops.cloud_render.check_scene() == {"FINISHED"}
    results = module.addon.panel_results.results()
    assert any(f.code == "scene_cpu_on_gpu_instance" for f in results.findings)
    labels, _ = draw(module.panels.render_panel.CLOUDRENDER_PT_main)
    assert "press Check Scene again" not in " ".join(labels)

    settings.instance_type = "c5.2xlarge"
    labels, _ = draw(module.panels.render_panel.CLOUDRENDER_PT_main)
    text = " ".join(labels)
    assert "Check Scene made for g4dn.xlarge: press Check Scene again." in text
    settings.instance_type = "g4dn.xlarge"  # back as it was: the finding holds again
    assert "press Check Scene again" not in " ".join(draw(module.panels.render_panel.CLOUDRENDER_PT_main)[0])


def test_an_estimate_for_12_frames_at_32_samples_is_not_quoted_for_24_at_256(module):
    scene = bpy.context.scene
    settings = scene.cloud_render
    submit = module.addon.submit
    scene.frame_end, scene.cycles.samples = 12, 32
    settings.instance_type, settings.machines = "c5.2xlarge", 1
    results = module.addon.panel_results.results()
    estimated(module, "c5.2xlarge", ("c5.2xlarge", 3.0, 0.02, 240))
    results.estimate_made_from = module.addon.panel_results.made_from(scene)
    assert "$0.02, 4 min for the job" in submit.confirmation_text(bpy.context)

    scene.frame_end, scene.cycles.samples = 24, 256
    text = submit.confirmation_text(bpy.context)
    assert "$0.02, 4 min" not in text and "Estimate from a test render" not in text
    assert "Estimate made for 12 frames, 32 samples: press Estimate again." in text
    labels, _ = draw(module.panels.render_panel.CLOUDRENDER_PT_main)
    assert "Estimate made for 12 frames, 32 samples: press Estimate again." in " ".join(labels)
    assert submit.measured_seconds_per_frame(module.addon.settings.snapshot(scene)) is None

    # Another machine type is no reason to estimate again: every type was estimated.
    scene.frame_end, scene.cycles.samples = 12, 32
    assert results.estimate_for("c5.2xlarge") is not None


def test_three_machines_agree_with_the_estimates_one_and_say_when_one_is_better(module):
    """With Machines = 3 the trade-off's one machine is the estimate's own figure, and three
    machines that would be slower and dearer are not 'proposed'."""
    scene = bpy.context.scene
    settings = scene.cloud_render
    scene.frame_end = 12
    settings.instance_type, settings.machines, settings.finish_within_minutes = "c5.2xlarge", 3, 0
    results = module.addon.panel_results.results()
    estimated(module, "c5.2xlarge", ("c5.2xlarge", 3.0, 0.02, 240))
    results.estimate_made_from = module.addon.panel_results.made_from(scene)
    price = (
        results.estimate[0].estimate.price_per_hour
        or module.addon.prices.hourly(settings.region, "c5.2xlarge", settings.use_spot).usd
    )
    try:
        text = module.addon.submit.confirmation_text(bpy.context)
        assert "$0.02, 4 min for the job on one machine" in text
        assert "proposed" not in text
        assert "3 machines set. 1 machine: 4 min," in text
        assert f"1 machine: 4 min, ${240 * price / 3600:.2f}" in text
        assert "One machine is quicker and cheaper here" in text
        labels, _ = draw(module.panels.render_panel.CLOUDRENDER_PT_settings)
        assert "One machine is quicker and cheaper here" in " ".join(labels)
    finally:
        settings.machines = 1
