"""Farm equals local: the artist's add-on travels, the machine checks its Blender, proof frames compare.

A small test add-on (written here) registers a driver function at register (and again after
each file load, as such add-ons do: Blender empties the driver namespace when a file opens); the scene's
emission colour is driven by it, so with the add-on the cube renders white and without it
red (a driver that fails gives 0). The frame rendered on the simulated machine is compared with a local render in a
background Blender with the add-on enabled, as the artist's Blender would have it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cloud.job import proof_frame
from cloud.machine import fingerprint
from cloud.machine.contract import parse_environment, parse_error
from cloud.pack.addons import EnabledAddon, plan_addons
from dev.simulator import InstanceSimulator
from tests.e2e.test_worker import Staged, run_job, stage
from tests.factories import CHECKER_TEXTURE

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FRAME = "render/shot_0001.png"
SCALE = 0.05  # the artist's preference of the test add-on

ADDON = """
bl_info = {"name": "CR Tint", "version": (1, 2, 0), "blender": (4, 2, 0), "category": "Render"}
import bpy
from bpy.app.handlers import persistent


class CrTintPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__ or __name__
    scale: bpy.props.FloatProperty(name="Scale", default=0.25)


def cr_tint(value):
    addon = bpy.context.preferences.addons.get(CrTintPreferences.bl_idname)
    return (addon.preferences.scale if addon is not None else 0.25) * value


@persistent
def install(*_args):
    bpy.app.driver_namespace["cr_tint"] = cr_tint


def register():
    bpy.utils.register_class(CrTintPreferences)
    install()
    bpy.app.handlers.load_pre.append(install)
    bpy.app.handlers.load_post.append(install)


def unregister():
    bpy.utils.unregister_class(CrTintPreferences)
    bpy.app.driver_namespace.pop("cr_tint", None)
    bpy.app.handlers.load_pre.remove(install)
    bpy.app.handlers.load_post.remove(install)
"""

SCENE = (
    CHECKER_TEXTURE
    + r"""
import os, sys
import bpy
out, texture = sys.argv[-2], sys.argv[-1] == "texture"
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
bpy.ops.mesh.primitive_cube_add()
cube = bpy.context.active_object
mat = bpy.data.materials.new("glow")
mat.use_nodes = True
nodes = mat.node_tree.nodes
nodes.remove(nodes["Principled BSDF"])
emit = nodes.new("ShaderNodeEmission")
mat.node_tree.links.new(emit.outputs[0], nodes["Material Output"].inputs["Surface"])
if texture:  # a checker texture beside the file
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = checker_texture(out)
    mat.node_tree.links.new(tex.outputs["Color"], emit.inputs["Color"])
else:  # green and blue from the test add-on's function: white with it, red where it is missing
    emit.inputs["Color"].default_value = (1, 1, 1, 1)
    driver = emit.inputs["Color"].driver_add("default_value", 1).driver
    driver.type = "SCRIPTED"
    driver.expression = "cr_tint(4.0)"
    driver = emit.inputs["Color"].driver_add("default_value", 2).driver
    driver.type = "SCRIPTED"
    driver.expression = "cr_tint(4.0)"
cube.data.materials.append(mat)
cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
scene.collection.objects.link(cam)
cam.location = (4, -4, 3)
cam.rotation_euler = (1.1, 0, 0.78)
scene.camera = cam
scene.world = bpy.data.worlds.new("black")
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 4
scene.cycles.use_denoising = False
scene.render.resolution_x = scene.render.resolution_y = 32
scene.render.resolution_percentage = 100
scene.render.image_settings.file_format = "PNG"
scene.frame_start = scene.frame_end = 1
scene.render.filepath = "//render/shot_"
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(out, "scene.blend"), relative_remap=True)
bpy.app.driver_namespace.clear()  # see EXIT below
"""
)

# EXIT: the bpy module of Blender 4.2 crashes (SIGSEGV) at interpreter exit once a Python
# driver has been evaluated, unless the driver namespace is emptied first (bpy 5.0 exits
# cleanly): the scripts here that evaluate drivers end by emptying it.

# The artist's Blender: the add-on enabled, Auto Run on; render frame 1 and print the fingerprint.
LOCAL = r"""
import json, sys
import bpy
import addon_utils
from cloud.machine import fingerprint
blend, out, addon, seed, scale = sys.argv[-5], sys.argv[-4], sys.argv[-3], int(sys.argv[-2]), sys.argv[-1]
bpy.context.preferences.filepaths.use_scripts_auto_execute = True
if addon:
    addon_utils.enable(addon, default_set=True)
    if scale:  # the artist's preference for the add-on
        bpy.context.preferences.addons[addon].preferences.scale = float(scale)
bpy.ops.wm.open_mainfile(filepath=blend, use_scripts=True)
scene = bpy.context.scene
scene.cycles.seed = seed
scene.render.filepath = out
bpy.ops.render.render(write_still=True)
print("FINGERPRINT " + json.dumps(fingerprint.collect(bpy, addon_utils, scene, [addon] if addon else [])))
bpy.app.driver_namespace.clear()  # see EXIT above
"""


def make_scene(dest: Path, texture: bool = False) -> dict[str, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    kind = "texture" if texture else "driver"
    subprocess.run([sys.executable, "-c", SCENE, str(dest), kind], check=True, capture_output=True)
    files = {"scene.blend": dest / "scene.blend"}
    if texture:
        files["textures/checker.png"] = dest / "textures" / "checker.png"
    return files


def render_locally(
    blend: Path, out: Path, user: Path, addon: str = "", seed: int = 0, scale: str = ""
) -> dict:
    """One frame in a background Blender as the artist's (its user resources at `user`)."""
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(user))
    done = subprocess.run(
        [sys.executable, "-c", LOCAL, str(blend), str(out), addon, str(seed), scale],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    line = next(t for t in done.stdout.splitlines() if t.startswith("FINGERPRINT "))
    return json.loads(line[len("FINGERPRINT ") :])


def write_addon(user: Path, compiled: str = "") -> Path:
    """The test add-on as the artist installed it (in their user resources)."""
    folder = user / "scripts" / "addons" / "cr_tint"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").write_text(ADDON)
    if compiled:
        (folder / compiled).write_bytes(b"\xcf\xfa\xed\xfe not for linux")
    return folder


def image(data: bytes | None) -> proof_frame.Image:
    assert data is not None, "no frame"
    return proof_frame.read_png(data)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The driver scene, the artist's add-on, and the local render with its fingerprint."""
    root = tmp_path_factory.mktemp("local")
    user = root / "user"
    folder = write_addon(user)
    scene = make_scene(root / "project")
    # The artist set the add-on's Scale preference to 0.05: cr_tint(4.0) gives 0.2, not 1.0.
    print_ = render_locally(scene["scene.blend"], root / "local.png", user, "cr_tint", scale=str(SCALE))
    render_locally(scene["scene.blend"], root / "without.png", root / "bare")
    render_locally(scene["scene.blend"], root / "default_scale.png", root / "user", "cr_tint")
    return {
        "scene": scene,
        "folder": folder,
        "png": root / "local.png",
        "fingerprint": print_,
        "without": root / "without.png",
        "default_scale": root / "default_scale.png",
    }


def one_frame_job(aws, files: dict[str, Path], blender, tmp_path: Path, **spec) -> Staged:  # type: ignore[no-untyped-def]
    """Frame 1 of `files` staged (with `blender`, the tarball fixture) and rendered on a
    simulated machine, to the machine's end."""
    job = stage(aws, files, blender, frames=[1], **spec)
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim") as sim:
        run_job(sim, job)
    return job


def rendered_with_addons(aws, local, plan, blender, tmp_path: Path) -> Staged:  # type: ignore[no-untyped-def]
    """The local scene with the plan's add-ons travelling, the artist's fingerprint and scripts
    allowed to run: rendered without an error."""
    job = one_frame_job(
        aws,
        {**local["scene"], **plan.files},
        blender,
        tmp_path,
        addons=[a.spec_entry() for a in plan.travel],
        auto_run=True,
        fingerprint=local["fingerprint"],
    )
    assert job.get("error.json") is None, job.log_text()[-3000:]
    return job


def test_addon_travels_and_the_frame_equals_the_local_one(aws, local, tarball, tmp_path):
    plan = plan_addons(
        [EnabledAddon("cr_tint", str(local["folder"]), "1.2.0", {"scale": SCALE})],
        {"cr_tint"},
        "bl_ext.user_default.cloud_render",
    )
    assert plan.refused == {} and [a.module for a in plan.travel] == ["cr_tint"]
    job = rendered_with_addons(aws, local, plan, tarball, tmp_path)
    assert job.frames(), job.log_text()[-4000:]
    cloud = image(job.get("frames/" + FRAME))
    mine = proof_frame.read_png(local["png"].read_bytes())
    result = proof_frame.compare(mine, cloud)
    assert result.match, result.words()
    # Without its add-on, or with its preference left at the default, the same file renders
    # otherwise, and the comparison sees it: the add-on ran there with the artist's preference.
    for other in ("without", "default_scale"):
        assert not proof_frame.compare(proof_frame.read_png(local[other].read_bytes()), cloud).match, other
    log = job.log_text()
    assert "add-on installed and enabled: cr_tint 1.2.0" in log
    report = parse_environment(job.get_json("environment.json") or {})
    assert report.installed == ["cr_tint 1.2.0"] and report.failed == []
    assert not fingerprint.stops(report.differences), report.differences


def test_addon_that_cannot_travel_stops_before_any_frame(aws, local, tarball, tmp_path):
    root = tmp_path / "artist"
    folder = write_addon(root, compiled="_native.cpython-311-darwin.so")
    plan = plan_addons([EnabledAddon("cr_tint", str(folder), "1.2.0")], {"cr_tint"}, "")
    assert plan.travel == [] and "another system" in plan.refused["cr_tint"]
    job = one_frame_job(
        aws, local["scene"], tarball, tmp_path, auto_run=True, fingerprint=local["fingerprint"]
    )
    error = parse_error(job.get_json("error.json") or {}, [1])
    assert error.kind == "environment", (error, job.keys(""), job.log_text()[-4000:])
    assert "The add-on cr_tint, which the scene uses, is not on the machine." in error.cause
    assert job.frames() == {}
    report = parse_environment(job.get_json("environment.json") or {})
    assert [d["what"] for d in fingerprint.stops(report.differences)] == ["addon"]


def test_colour_management_difference_is_reported_and_stops(aws, local, tarball, tmp_path):
    """The artist's Blender reads a studio OCIO config; the machine has Blender's own."""
    artist = dict(local["fingerprint"], ocio_config="studio.ocio (0123456789ab)", addons_used=[], addons={})
    job = one_frame_job(aws, local["scene"], tarball, tmp_path, fingerprint=artist)
    error = parse_error(job.get_json("error.json") or {}, [1])
    assert error.kind == "environment" and "OCIO colour config is builtin on the machine" in error.cause
    report = parse_environment(job.get_json("environment.json") or {})
    assert report.ocio_config == "builtin" and report.view_transform == local["fingerprint"]["view_transform"]
    assert "environment difference (stop): The OCIO colour config" in job.log_text()
    assert job.frames() == {}


def test_proof_frame_matches_through_noise_and_not_without_a_texture(tmp_path):
    scene = make_scene(tmp_path / "project", texture=True)
    user = tmp_path / "user"
    render_locally(scene["scene.blend"], tmp_path / "a.png", user, seed=0)
    render_locally(scene["scene.blend"], tmp_path / "b.png", user, seed=11)
    scene["textures/checker.png"].unlink()  # deliberately missing: Blender renders it magenta
    render_locally(scene["scene.blend"], tmp_path / "c.png", user, seed=0)
    a, b, c = (proof_frame.read_png((tmp_path / n).read_bytes()) for n in ("a.png", "b.png", "c.png"))
    assert a.pixels != b.pixels, "different seeds should give different noise"
    same = proof_frame.compare(a, b)
    assert same.match, same.words()
    missing = proof_frame.compare(a, c)
    assert not missing.match and missing.metric > 3 * same.metric, (same, missing)


def test_render_despite_differences_renders_and_reports_them(aws, local, tarball, tmp_path):
    """The artist chose to go on: the difference is in environment.json and the log, frames render."""
    artist = dict(local["fingerprint"], look="AgX - Punchy", addons_used=[], addons={})
    job = one_frame_job(aws, local["scene"], tarball, tmp_path, fingerprint=artist, accept_differences=True)
    assert job.get("error.json") is None, job.log_text()[-3000:]
    assert sorted(job.frames()) == [FRAME]
    report = parse_environment(job.get_json("environment.json") or {})
    assert [(d["level"], d["what"], d["artist"], d["machine"]) for d in report.differences] == [
        ("stop", "look", "AgX - Punchy", "None")
    ]
    assert (
        "environment difference (stop): The look is None on the machine, AgX - Punchy here." in job.log_text()
    )


MANIFEST = """schema_version = "1.0.0"
id = "cr_tint"
version = "1.2.0"
name = "CR Tint"
tagline = "The test add-on as an extension"
maintainer = "Cloud Render tests"
type = "add-on"
blender_version_min = "4.2.0"
license = ["SPDX:GPL-3.0-or-later"]
"""


def test_an_extension_travels_into_the_machines_user_repository(aws, local, tarball, tmp_path):
    """The same add-on installed as an extension from another repository here (blender_org)."""
    folder = tmp_path / "extensions" / "blender_org" / "cr_tint"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(ADDON)
    (folder / "blender_manifest.toml").write_text(MANIFEST)
    enabled = EnabledAddon("bl_ext.blender_org.cr_tint", str(folder), "1.2.0", {"scale": SCALE})
    plan = plan_addons([enabled], {"bl_ext.blender_org.cr_tint"}, "")
    assert [a.module for a in plan.travel] == ["bl_ext.user_default.cr_tint"]
    job = rendered_with_addons(aws, local, plan, tarball, tmp_path)
    result = proof_frame.compare(
        proof_frame.read_png(local["png"].read_bytes()), image(job.get("frames/" + FRAME))
    )
    assert result.match, result.words()
    assert "add-on installed and enabled: bl_ext.user_default.cr_tint 1.2.0" in job.log_text()
