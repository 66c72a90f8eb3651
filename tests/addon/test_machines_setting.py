"""The Machines and Finish Within settings: what the artist reads before launch, what is sent."""

from __future__ import annotations

import bpy

from . import harness


def test_machines_show_the_tradeoff_and_finish_within_proposes_how_many(installed, tmp_path):
    module = harness.addon()
    submit = module.addon.submit
    harness.make_scene(tmp_path / "shot.blend", frames=250, size=16, samples=1)
    settings = bpy.context.scene.cloud_render
    settings.instance_type = "g4dn.xlarge"
    view = module.addon.job_view.view()
    view.estimate = "g4dn.xlarge: ~58 s/frame, $0.0085/frame [chosen]"
    try:
        settings.machines = 1
        text = submit.confirmation_text(bpy.context)
        assert "AWS Batch" not in text and "for all machines together" not in text

        settings.machines = 8
        text = submit.confirmation_text(bpy.context)
        assert "250 frames on 8 machines (AWS Batch)" in text
        assert "8 machines proposed. 1 machine: 4 h" in text and " \u00b7 4: " in text
        assert text.endswith("whichever comes first, for all machines together.")

        settings.finish_within_minutes = 60
        fleet_plan = module.cloud.cost.fleet_plan
        wanted = fleet_plan.machines_to_finish_within(250, 58.0, 60, 256)
        assert submit.machines_for(bpy.context, 250) == wanted == 5  # 242 min of frames / 5 + boots
        assert f"{wanted} machines proposed." in submit.fleet_line(bpy.context, 250, 0.526)
        # Before an estimate there is nothing to propose from: Machines as set.
        view.estimate = ""
        assert submit.machines_for(bpy.context, 250) == 8
        assert submit.fleet_line(bpy.context, 250, 0.526) == ""
    finally:
        view.estimate = ""
        settings.machines = 1
        settings.finish_within_minutes = 0
