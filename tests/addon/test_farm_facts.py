"""Farm equals local on real bpy scenes: simulations and bakes, driver functions of add-ons,
the artist's add-ons that travel, the fingerprint the job carries."""

from __future__ import annotations

import importlib
import shutil
import sys
import time

import bpy
import pytest

from cloud.pack.bakes import disk_bake_inputs
from cloud.pack.packer import pack
from cloud.pack.preflight import BLOCK, addon_plan, run_preflight
from dev import addon_harness as harness

# Packed Geometry Nodes bakes came after Blender 4.2 LTS; there every bake is on disk.
PACKED_BAKES = "bake_target" in bpy.types.NodesModifier.bl_rna.properties


def scene_facts():  # type: ignore[no-untyped-def]
    return importlib.import_module(harness.MODULE + ".addon.scene_facts")


@pytest.fixture
def scene(installed):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "GPU"
    scene.render.filepath = "//render/"
    scene.frame_start, scene.frame_end = 1, 3
    yield scene
    bpy.ops.wm.read_factory_settings(use_empty=True)


def module(name: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(f"{harness.MODULE}.addon.{name}")


def findings(scene):  # type: ignore[no-untyped-def]
    return run_preflight(scene_facts().collect_scene_facts(scene), None, True, 24.0)


def simulation_modifier(name: str, target: str = "PACKED") -> bpy.types.Object:
    """An object whose Geometry Nodes modifier holds a simulation zone."""
    mesh = bpy.data.meshes.new(name)
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    tree = bpy.data.node_groups.new(name + "Sim", "GeometryNodeTree")
    tree.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    group_in, group_out = tree.nodes.new("NodeGroupInput"), tree.nodes.new("NodeGroupOutput")
    sim_in, sim_out = (
        tree.nodes.new("GeometryNodeSimulationInput"),
        tree.nodes.new("GeometryNodeSimulationOutput"),
    )
    sim_in.pair_with_output(sim_out)
    tree.links.new(group_in.outputs[0], sim_in.inputs[0])
    tree.links.new(sim_in.outputs[1], sim_out.inputs[1])
    tree.links.new(sim_out.outputs[0], group_out.inputs[0])
    modifier = obj.modifiers.new("GeoSim", "NODES")
    modifier.node_group = tree
    if PACKED_BAKES:
        modifier.bake_target = target
    if target == "DISK":
        modifier.bake_directory = "//bakes/"
    bpy.context.view_layer.update()
    return obj


def bake(obj: bpy.types.Object) -> None:
    modifier = obj.modifiers["GeoSim"]
    with bpy.context.temp_override(object=obj, active_object=obj, selected_objects=[obj]):
        result = bpy.ops.object.geometry_node_bake_single(
            session_uid=obj.session_uid, modifier_name=modifier.name, bake_id=modifier.bakes[0].bake_id
        )
    assert result == {"FINISHED"}


def test_unbaked_cloth_and_simulation_zone_stop_the_submit_by_name(scene, tmp_path):
    bpy.ops.mesh.primitive_plane_add()
    flag = bpy.context.active_object
    flag.name = "Flag"
    flag.modifiers.new("Cloth", "CLOTH")
    simulation_modifier("Smoke")
    blocking = [f for f in findings(scene) if f.severity == BLOCK]
    assert [f.code for f in blocking] == ["simulation_not_baked", "simulation_not_baked"]
    assert 'cloth simulation on object "Flag" (modifier "Cloth")' in blocking[0].message
    assert 'Geometry Nodes simulation on object "Smoke"' in blocking[1].message


def test_baked_simulations_pass_packed_or_on_disk_and_disk_bakes_are_packed(scene, tmp_path):
    """On 4.2 (no packed bakes) the disk bake alone: the facts read it without a 4.3+ property."""
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    on_disk = simulation_modifier("OnDisk", target="DISK")
    bake(on_disk)
    if PACKED_BAKES:
        bake(simulation_modifier("Packed"))
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))  # packed bakes are read from the file
    facts = scene_facts().collect_scene_facts(scene)
    sims = {s["object"]: s for s in facts.simulations}
    assert sorted(sims) == (["OnDisk", "Packed"] if PACKED_BAKES else ["OnDisk"])
    assert all(s["baked"] for s in sims.values())
    assert sims["OnDisk"]["relative"] == f"bakes/{on_disk.modifiers['GeoSim'].bakes[0].bake_id}"
    assert not [
        f for f in run_preflight(facts, None, True, 24.0) if f.code.startswith(("simulation", "cache"))
    ]
    files = disk_bake_inputs(facts.simulations, "")
    assert files and all(p.startswith(sims["OnDisk"]["relative"] + "/") for p in files)
    assert any("/meta/" in p for p in files)  # an empty mesh writes no blobs
    # The pack carries the bake, and the packed .blend still points at it (the folder path is
    # a string BAT cannot rewrite: it must stay as it was).
    packed = pack(tmp_path / "shot.blend", tmp_path / "pack", original=tmp_path / "shot.blend")
    assert set(files) <= set(packed.manifest.files)
    bpy.ops.wm.open_mainfile(filepath=str(packed.blend_path))
    assert bpy.data.objects["OnDisk"].modifiers["GeoSim"].bake_directory == "//bakes/"


def test_the_saved_file_is_read_once_per_version_and_while_the_confirmation_is_open(scene, tmp_path):
    """BAT reads the saved .blend only where a bake is stored in it, once per saved version of
    the file (so a submit's two looks at the facts cost one read), and the confirmation starts
    that read in a worker thread so that the press finds it done."""
    saved, submit = module("saved_file_facts"), module("submit")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    bake(simulation_modifier("OnDisk", target="DISK"))
    bpy.ops.wm.save_mainfile()
    before = saved.reads
    submit.prefetch_facts()
    assert scene_facts().collect_scene_facts(scene).simulations[0]["baked"]
    assert saved.reads == before  # disk bakes only: nothing to read in the file
    if not PACKED_BAKES:  # Blender 4.2: every bake is on disk
        return
    packed = simulation_modifier("Packed")
    bake(packed)
    bpy.ops.wm.save_mainfile()
    for _ in range(2):
        sims = {s["object"]: s for s in scene_facts().collect_scene_facts(scene).simulations}
        assert sims["Packed"]["baked"]
    assert saved.reads == before + 1
    # The bake freed and the file saved again: a new version, read ahead by the confirmation.
    modifier = packed.modifiers["GeoSim"]
    with bpy.context.temp_override(object=packed, active_object=packed, selected_objects=[packed]):
        assert bpy.ops.object.geometry_node_bake_delete_single(
            session_uid=packed.session_uid, modifier_name=modifier.name, bake_id=modifier.bakes[0].bake_id
        ) == {"FINISHED"}
    bpy.ops.wm.save_mainfile()
    submit.prefetch_facts()
    deadline = time.monotonic() + 60
    while not saved.is_known(bpy.data.filepath):
        assert time.monotonic() < deadline, "the worker thread did not read the saved file"
        time.sleep(0.02)
    sims = {s["object"]: s for s in scene_facts().collect_scene_facts(scene).simulations}
    assert not sims["Packed"]["baked"] and saved.reads == before + 2


ADDON = """
bl_info = {"name": "CR Wave", "version": (0, 3, 0), "blender": (4, 2, 0), "category": "Animation"}
import bpy


def cr_wave(frame):
    return frame * 0.5


def register():
    bpy.app.driver_namespace["cr_wave"] = cr_wave


def unregister():
    bpy.app.driver_namespace.pop("cr_wave", None)
"""


def test_driver_function_of_an_addon_travels_with_the_job(scene, tmp_path, monkeypatch):
    import addon_utils

    (tmp_path / "cr_wave_addon").mkdir()
    (tmp_path / "cr_wave_addon" / "__init__.py").write_text(ADDON)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert addon_utils.enable("cr_wave_addon", default_set=True) is not None
    try:
        obj = bpy.data.objects.new("Bob", None)
        scene.collection.objects.link(obj)
        obj.driver_add("location", 2).driver.expression = "cr_wave(frame)"
        facts = scene_facts().collect_scene_facts(scene)
        assert {
            "module": "cr_wave_addon",
            "used_by": 'Driver on "Bob" location: cr_wave(frame)',
        } in facts.addons_used
        plan = addon_plan(facts)
        assert [(a.module, a.version) for a in plan.travel] == [("cr_wave_addon", "0.3.0")]
        assert not any(a["module"].endswith("cloud_render") for a in facts.addons_enabled)
        assert "cr_wave_addon" in facts.fingerprint["addons_used"]
        assert facts.fingerprint["view_transform"] == scene.view_settings.view_transform
        assert [f.code for f in run_preflight(facts, None, True, 24.0) if "addon" in f.code] == []
    finally:
        addon_utils.disable("cr_wave_addon", default_set=True)
        sys.modules.pop("cr_wave_addon", None)


def test_shared_particle_cache_on_disk_counts_as_baked_until_its_files_go(installed, testdata, tmp_path):
    project = tmp_path / "T55539-particles"
    shutil.copytree(testdata / "T55539-particles", project)
    bpy.ops.wm.open_mainfile(filepath=str(project / "particle.blend"))
    try:
        sims = scene_facts().collect_scene_facts(bpy.context.scene).simulations
        assert [(s["object"], s["kind"], s["baked"]) for s in sims] == [("Cube", "particles", True)]
        assert not [f for f in findings(bpy.context.scene) if f.code.startswith("simulation")]
        shutil.rmtree(project / "blendcache_particle")  # the .blend still says "baked"
        blocking = [f for f in findings(bpy.context.scene) if f.severity == BLOCK]
        assert [f.code for f in blocking] == ["simulation_cache_missing"]
        assert 'object "Cube"' in blocking[0].message and "blendcache_particle" in blocking[0].message
    finally:
        bpy.ops.wm.read_factory_settings(use_empty=True)
