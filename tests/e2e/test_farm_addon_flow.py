"""Farm equals local through the add-on: Render in Cloud with an add-on the scene's drivers call.

The add-on is enabled in this Blender (the artist's), the cube's emission is driven by its
function; the extension packs it with the job, the simulated machine installs and enables it
before the scene opens again, and the frame that comes back has the colour of a local render.
"""

from __future__ import annotations

import sys
from pathlib import Path

import bpy
import numpy as np
import pytest

from dev import addon_harness as harness
from tests.e2e.test_addon_flow import (  # noqa: F401 (cloud is a fixture)
    CPU_TYPE,
    cloud,
    mean_colour,
    measured_and_went_on,
    render_to_the_end,
    textured_scene,
    view,
    wait_final,
)
from tests.e2e.test_farm_equals_local import ADDON

pytestmark = pytest.mark.slow


def driven_scene(tmp_path):  # type: ignore[no-untyped-def]
    """harness' cube with an emission whose green and blue come from the add-on's cr_tint()."""
    path = harness.make_scene(tmp_path / "project" / "shot.blend", frames=1, size=32, samples=2)
    material = bpy.data.materials.new("Driven")
    material.use_nodes = True
    nodes = material.node_tree.nodes
    emission = nodes.new("ShaderNodeEmission")
    emission.inputs["Color"].default_value = (1, 0, 0, 1)
    for channel in (1, 2):
        emission.inputs["Color"].driver_add("default_value", channel).driver.expression = "cr_tint(4.0)"
    material.node_tree.links.new(emission.outputs[0], nodes["Material Output"].inputs["Surface"])
    cube = bpy.data.objects["Cube"]
    cube.data.materials.clear()
    cube.data.materials.append(material)
    bpy.context.scene.cloud_render.instance_type = CPU_TYPE
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path


def test_the_scenes_addon_travels_and_the_cloud_frame_matches(cloud, tmp_path, monkeypatch):  # noqa: F811
    import addon_utils

    (tmp_path / "addons" / "cr_tint").mkdir(parents=True)
    (tmp_path / "addons" / "cr_tint" / "__init__.py").write_text(ADDON)
    monkeypatch.syspath_prepend(str(tmp_path / "addons"))
    filepaths = bpy.context.preferences.filepaths
    auto_run = filepaths.use_scripts_auto_execute
    filepaths.use_scripts_auto_execute = True  # the artist runs the scene's Python drivers
    assert addon_utils.enable("cr_tint", default_set=True) is not None
    try:
        driven_scene(tmp_path)
        scene = bpy.context.scene
        assert bpy.ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
        job_id = view().job_id
        wait_final()
        log = harness.addon().addon.job_view.log_lines(job_id)
        assert view().state == "done", (view().message, log[-30:])
        assert any("add-on installed and enabled: cr_tint 1.2.0" in line for line in log)  # the machine's log
        # environment.json, read through the contract by the add-on and said in its job log
        assert "[cloud-render] Add-ons installed on the machine: cr_tint 1.2.0." in log
        record = harness.addon().addon.pump.manager().store.load(job_id)
        frames = sorted(Path(record.output_dir).rglob("*.png"))
        scene.render.filepath = str(tmp_path / "local" / "frame_0001")
        scene.frame_set(1)
        bpy.ops.render.render(write_still=True)
        local, remote = mean_colour(tmp_path / "local" / "frame_0001.png"), mean_colour(frames[0])
        assert np.allclose(local, remote, atol=0.02), (local, remote)
        assert remote[1] > 0.1  # green from the add-on's function, not the red of a failed driver
    finally:
        addon_utils.disable("cr_tint", default_set=True)
        sys.modules.pop("cr_tint", None)
        filepaths.use_scripts_auto_execute = auto_run


def proof_image(job_id: str) -> bpy.types.Image:
    found = [i for i in bpy.data.images if i.name.startswith(f"Proof {job_id} ")]
    assert len(found) == 1, [i.name for i in bpy.data.images]
    return found[0]


def test_proof_frame_matches_the_cloud_frame_and_not_without_its_texture(cloud, tmp_path):  # noqa: F811
    scene_path = textured_scene(tmp_path, frames=1, size=32)
    assert bpy.ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
    job_id = view().job_id
    wait_final()
    assert view().state == "done", view().message
    # The artist has an Image Editor open (the bpy module cannot open a new window for one).
    area = bpy.context.window_manager.windows[0].screen.areas[0]
    area.type = "IMAGE_EDITOR"
    bpy.ops.cloud_render.proof_frame(job_id=job_id)
    harness.drain_until(lambda: "match" in view().message, 120)
    assert view().message.startswith("The cloud frame matches the local one"), view().message
    image = proof_image(job_id)
    assert image["cloud_render_proof_match"] and tuple(image.size) == (64, 32)  # local | cloud
    assert area.spaces.active.image == image  # local and cloud side by side, the metric in its name

    # The texture deliberately missing here: the local proof renders it magenta and differs.
    (scene_path.parent / "textures" / "paint.png").unlink()
    view().message = ""
    bpy.ops.cloud_render.proof_frame(job_id=job_id)
    harness.drain_until(lambda: "match" in view().message, 120)
    assert view().message.startswith("The cloud frame does not match the local one"), view().message
    assert "Likely cause" in view().message
    assert not proof_image(job_id)["cloud_render_proof_match"]


def proof_first_scene(tmp_path: Path) -> Path:
    """Six frames (scouts 1, 4 and 6: first, middle, last), Proof Frame First ticked, saved."""
    scene_path = textured_scene(tmp_path, frames=6, size=32)
    settings = bpy.context.scene.cloud_render
    settings.proof_first = True
    settings.max_cost = 5.0
    bpy.ops.wm.save_mainfile()
    return scene_path


def test_proof_frame_first_goes_on_when_it_matches(cloud, tmp_path):  # noqa: F811
    proof_first_scene(tmp_path)
    job_id, record = render_to_the_end()
    assert record.stage == "done", record.message
    assert sorted(record.frames_done) == [1, 2, 3, 4, 5, 6]
    assert proof_image(job_id)["cloud_render_proof_match"]
    # The job thread left the answer to the proof, which said go once the frames matched.
    measured_and_went_on(job_id)


def test_proof_frame_first_stops_when_it_does_not_match(cloud, tmp_path):  # noqa: F811
    scene_path = proof_first_scene(tmp_path)
    # Once the scene is uploaded the texture goes missing here: the proof differs, the job waits.
    assert bpy.ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
    job_id = view().job_id
    harness.drain_until(lambda: view().state in {"starting", "installing", "rendering"}, 120)
    (scene_path.parent / "textures" / "paint.png").unlink()
    harness.drain_until(lambda: "does not match" in view().message, 240)
    assert view().state == "quoted" and "Likely cause" in view().message, view().message
    assert not proof_image(job_id)["cloud_render_proof_match"]
    assert bpy.ops.cloud_render.answer_quote(go=False, job_id=job_id) == {"FINISHED"}
    wait_final()
    record = harness.addon().addon.pump.manager().store.load(job_id)
    assert (record.stage, sorted(record.frames_done)) == ("cancelled", [1, 4, 6])  # the scouts are kept
