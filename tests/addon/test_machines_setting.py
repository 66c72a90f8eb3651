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


def test_the_current_job_shows_one_row_per_machine_and_the_time_left(installed, tmp_path, aws):
    from .test_panels_draw import all_drawn

    module = harness.addon()
    harness.make_scene(tmp_path / "rows.blend")
    harness.connect(aws.url)
    view = module.addon.job_view.view()
    try:
        view.job_id, view.state, view.message = "20261201-000000-abcdef", "Rendering", "working"
        view.frames_total, view.frames_done = 12, 5
        rows = (
            "Machine 0: rendering, frame 9, 58.0 s/frame (spot)",
            "Machine 1: rendering, frame 10, 61.0 s/frame (spot)",
            "Machine 2: done (spot)",
        )
        events = module.cloud.job.events
        module.addon.job_view.apply_event(events.MachinesUpdate(view.job_id, rows, 600.0))
        labels, _ = all_drawn(module)
        assert all(row in labels for row in rows)
        assert "About 10 min left" in labels
        # Each machine's full log opens as its own Text block, its lines only.
        log = (
            "[cloud-render] Machine 2 ended: done.",
            "[machine 1] claimed frame 10",
            "[machine 2] frame 5 uploaded",
        )
        module.addon.job_view.apply_event(events.LogLines(view.job_id, log))
        assert bpy.ops.cloud_render.open_log(job_id=view.job_id, machine=2) == {"FINISHED"}
        text = bpy.data.texts[module.addon.job_view.image_name(view.job_id) + " machine 2"]
        assert text.as_string().strip() == "frame 5 uploaded"
    finally:
        view.job_id = view.state = view.message = view.machines_text = ""
        view.eta_s = 0.0
        harness.disconnect()
