"""The Machines and Finish Within settings: what the artist reads before launch, what is sent."""

from __future__ import annotations

import bpy

from dev import addon_harness as harness

from .test_panels_draw import estimated


def test_machines_show_the_tradeoff_and_finish_within_proposes_how_many(installed, tmp_path):
    module = harness.addon()
    submit = module.addon.submit
    snapshot = module.addon.settings.snapshot
    harness.make_scene(tmp_path / "shot.blend", frames=250, size=16, samples=1)
    settings = bpy.context.scene.cloud_render
    settings.instance_type = "g4dn.xlarge"
    estimated(module, "g4dn.xlarge", ("g4dn.xlarge", 58.0, 2.1, 14500))
    try:
        settings.machines = 1
        text = submit.confirmation_text(bpy.context)
        assert "AWS Batch" not in text and "for all machines together" not in text

        settings.machines = 8
        text = submit.confirmation_text(bpy.context)
        assert "250 frames on 8 machines (AWS Batch)" in text
        assert "8 machines set. 1 machine: 4 h" in text and " \u00b7 4: " in text
        assert text.endswith("whichever comes first stops every machine.")

        settings.finish_within_minutes = 60
        fleet_plan = module.cloud.cost.fleet_plan
        wanted = fleet_plan.machines_to_finish_within(250, 58.0, 60, 256)
        assert (
            submit.machines_for(snapshot(bpy.context.scene), 250) == wanted == 5
        )  # 242 min of frames / 5 + boots
        assert f"{wanted} machines to finish within 60 min." in submit.fleet_line(
            snapshot(bpy.context.scene), 250, 0.526
        )
        # Before an estimate there is nothing to propose from: Machines as set.
        module.addon.panel_results.forget()
        assert submit.machines_for(snapshot(bpy.context.scene), 250) == 8
        assert submit.fleet_line(snapshot(bpy.context.scene), 250, 0.526) == ""
    finally:
        module.addon.panel_results.forget()
        settings.machines = 1
        settings.finish_within_minutes = 0


def test_at_most_is_the_whole_jobs_worst_case_on_one_and_on_four_machines(installed, tmp_path):
    """The dialog's "At most" and caps, and the panel's line under Hard Caps, say what the caps
    enforce: min(Max Cost, N x price x Max Hours); Max Cost for all machines together."""
    from .test_panels_draw import all_drawn

    module = harness.addon()
    submit = module.addon.submit
    usd = module.cloud.cost.machine_facts.usd
    harness.make_scene(tmp_path / "caps.blend", frames=12, size=16, samples=1)
    settings = bpy.context.scene.cloud_render
    settings.instance_type, settings.use_spot = "g4dn.xlarge", False
    settings.max_cost, settings.max_hours = 10.0, 2.0
    price = module.addon.prices.hourly(settings.region, "g4dn.xlarge", False).usd
    try:
        settings.machines = 1
        text = submit.confirmation_text(bpy.context)
        one = f"At most ${price * 2:.2f} (on-demand {usd(price)}/h x 2 h time cap), for 12 frames."
        assert one in text
        assert text.endswith("Hard cap: $10.00 or 2 h, whichever comes first.")

        settings.machines = 4
        text = submit.confirmation_text(bpy.context)
        four = f"At most ${4 * price * 2:.2f} (4 machines x on-demand {usd(price)}/h x 2 h time cap), for 12 frames."
        assert four in text and one not in text
        assert text.endswith(
            "Hard caps: $10.00 for all 4 machines together (each stops itself at $2.50 if Blender is "
            "closed), and 2 h from launch on each machine; whichever comes first stops every machine."
        )
        labels, _ = all_drawn(module)
        assert four in " ".join(labels)  # the panel shows the same bound (wrapped at spaces)

        # A cost cap under four machines' time cap is the bound: for all of them together.
        settings.max_cost = 3.0
        assert 4 * price * 2 > 3.0
        text = submit.confirmation_text(bpy.context)
        assert "At most $3.00 (the cost cap, for all 4 machines together), for 12 frames." in text
        assert "each stops itself at $0.75 if Blender is closed" in text
        settings.machines = 1  # one machine's time cap stays under it
        assert one in submit.confirmation_text(bpy.context)
        settings.max_cost = 0.5  # and a cost cap under one machine's time cap
        assert "At most $0.50 (the cost cap), for 12 frames." in submit.confirmation_text(bpy.context)

        # A test render's estimate is one machine's; the trade-off line gives N's.
        settings.max_cost, settings.machines = 10.0, 4
        estimated(module, "g4dn.xlarge", ("g4dn.xlarge", 58.0, 0.11, 720))
        text = submit.confirmation_text(bpy.context)
        assert "Estimate from a test render: g4dn.xlarge [chosen], ~58 s/frame ($0.06-$0.17): " in text
        assert "$0.11, 12 min for the job on one machine" in text
        assert "4 machines set. 1 machine: " in text
    finally:
        module.addon.panel_results.forget()
        settings.machines = 1
        settings.max_cost, settings.max_hours = 5.0, 2.0  # the defaults


def test_the_current_job_shows_one_row_per_machine_and_the_time_left(installed, tmp_path, aws):
    from .test_panels_draw import all_drawn

    module = harness.addon()
    harness.make_scene(tmp_path / "rows.blend")
    harness.connect(aws.url)
    view = module.addon.job_view.view()
    try:
        view.job_id, view.state, view.message = "20261201-000000-abcdef", "rendering", "working"
        view.frames_total, view.frames_done = 12, 5
        rows = (
            "Machine 0: rendering, frame 9, 58.0 s/frame (spot)",
            "Machine 1: rendering, frame 10, 61.0 s/frame (spot)",
            "Machine 2: done (spot)",
        )
        events = module.cloud.job.events
        module.addon.job_view.apply_event(events.MachinesUpdate(view.job_id, rows, 600.0))
        labels, _ = all_drawn(module)
        # Each row wraps at the panel's width: its lines, read together, give the row whole.
        drawn = " ".join(labels)
        assert all(row in drawn for row in rows), labels
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


def test_the_request_says_engine_samples_pixels_and_cost_drivers_as_rendered(installed, tmp_path):
    """What the next job's frame times are matched and scaled by (cloud/job/frame_history.py):
    the engine, and samples and pixels with the Cloud Render overrides applied; and the settings
    that must match for them to carry at all (issue 26, item 4)."""
    submit = harness.addon().addon.submit
    harness.make_scene(tmp_path / "shot.blend", frames=2, size=16, samples=1)
    scene = bpy.context.scene
    settings = scene.cloud_render
    scene.render.engine = "CYCLES"
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 32, 100
    scene.cycles.samples = 8
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = True
    scene.cycles.denoiser = "OPENIMAGEDENOISE"
    try:
        settings.samples, settings.resolution_percentage = 0, 0
        load = submit.render_load(scene)
        drivers = load.pop("render_drivers")
        assert load == {"engine": "CYCLES", "render_samples": 8, "render_pixels": 64 * 32}
        settings.samples, settings.resolution_percentage = 24, 50
        load = submit.render_load(scene)
        assert load.pop("render_drivers") == drivers  # overrides scale; they are no driver
        assert load == {"engine": "CYCLES", "render_samples": 24, "render_pixels": 32 * 16}
        seen = {drivers}
        for change in (
            lambda: setattr(scene.cycles, "use_adaptive_sampling", True),
            lambda: setattr(scene.cycles, "adaptive_threshold", 0.05),
            lambda: setattr(scene.cycles, "use_denoising", False),
            lambda: setattr(scene.cycles, "max_bounces", 3),
            lambda: setattr(scene.cycles, "time_limit", 20.0),
        ):
            change()
            now = submit.render_load(scene)["render_drivers"]
            assert now not in seen, now
            seen.add(now)
    finally:
        settings.samples, settings.resolution_percentage = 0, 0


def test_the_request_says_what_each_frame_file_must_be(installed, tmp_path):
    """The format and size each frame is checked against before Blender here decodes it
    (cloud/job/image_header.py): Blender's own sizing, the overrides applied, a movie's frames
    as rendered before the encode, and a bound where a border crop or stereo views change it."""
    submit = harness.addon().addon.submit
    harness.make_scene(tmp_path / "shot.blend", frames=2, size=16, samples=1)
    scene = bpy.context.scene
    settings = scene.cloud_render
    render = scene.render
    render.resolution_x, render.resolution_y, render.resolution_percentage = 1921, 1081, 33
    render.image_settings.file_format = "PNG"
    try:
        assert submit.frame_shape(scene) == {
            "frame_format": "PNG",
            "frame_width": 1921 * 33 // 100,  # 633, as Blender rounds (down, in integers)
            "frame_height": 1081 * 33 // 100,
            "frame_size_at_most": False,
        }
        settings.file_format, settings.resolution_percentage = "OPEN_EXR", 50
        assert submit.frame_shape(scene)["frame_format"] == "OPEN_EXR"
        assert submit.frame_shape(scene)["frame_width"] == 960
        render.use_border = render.use_crop_to_border = True
        assert submit.frame_shape(scene)["frame_size_at_most"] is True
    finally:
        settings.file_format, settings.resolution_percentage = "SCENE", 0
        render.use_border = render.use_crop_to_border = False


def test_a_cycles_submission_carries_the_cost_map_command_and_eevee_none(installed, tmp_path):
    """The request tells the job thread how to start the cost map's Blender on the job's copy
    (cloud/cost/cost_map.py appends the plan after `--`); only Cycles shots are mapped."""
    from pathlib import Path

    module = harness.addon()
    submit = module.addon.submit
    harness.make_scene(tmp_path / "mapped.blend", frames=12, size=16, samples=1)
    copy = tmp_path / "copy.blend"
    request = submit.build_request(bpy.context, "job-map", copy, list(range(1, 13)))
    command = request.cost_map_command
    assert command[-1] == "--" and command[command.index("-b") + 1] == str(copy)
    script = Path(command[command.index("--python") + 1])
    assert script.name == "cost_map_render.py" and script.is_file()
    bpy.context.scene.render.engine = "BLENDER_WORKBENCH"
    try:
        assert submit.build_request(bpy.context, "job-map", copy, [1, 2]).cost_map_command == []
    finally:
        bpy.context.scene.render.engine = "CYCLES"
