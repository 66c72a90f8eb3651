"""scene_facts.collect_scene_facts on real bpy scenes, judged by cloud.preflight.

Each test starts from an empty factory scene, changes one thing the way an artist would, and
checks both the collected fact and the finding the preflight makes of it.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import bpy
import pytest

from cloud.pack.preflight import run_preflight
from dev import addon_harness as harness


class _InstalledSceneFacts:
    """addon/scene_facts.py as the installed extension has it (it imports its package)."""

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(importlib.import_module(harness.MODULE + ".addon.scene_facts"), name)


scene_facts = _InstalledSceneFacts()

FAKE_ADDON = """
import bpy

class CrFakeSettings(bpy.types.PropertyGroup):
    strength: bpy.props.FloatProperty(default=1.0)

def register():
    bpy.utils.register_class(CrFakeSettings)
    bpy.types.Object.cr_fake_settings = bpy.props.PointerProperty(type=CrFakeSettings)

def unregister():
    del bpy.types.Object.cr_fake_settings
    bpy.utils.unregister_class(CrFakeSettings)
"""


@pytest.fixture
def scene(installed):
    """A fresh Cycles GPU scene with a relative PNG output: no finding on a GPU machine."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield clean_cycles_scene()
    bpy.ops.wm.read_factory_settings(use_empty=True)


def clean_cycles_scene():
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "GPU"
    scene.render.filepath = "//render/"
    scene.frame_start, scene.frame_end = 1, 24
    scene.render.resolution_x, scene.render.resolution_y = 640, 360
    return scene


def codes(scene, gpu: bool = True, memory: float | None = 24.0) -> list[str]:
    return [f.code for f in run_preflight(scene_facts.collect_scene_facts(scene), None, gpu, memory)]


def test_clean_scene(scene):
    facts = scene_facts.collect_scene_facts(scene)
    assert facts.render_engine == "CYCLES" and facts.cycles_device == "GPU"
    assert (facts.frame_start, facts.frame_end, facts.frame_step) == (1, 24, 1)
    assert (facts.resolution_x, facts.resolution_y, facts.resolution_percentage) == (640, 360, 100)
    assert facts.is_movie is False and facts.missing_files == [] and facts.auto_run_needed == []
    assert codes(scene) == []


def test_eevee(scene):
    scene.render.engine = "BLENDER_EEVEE_NEXT" if bpy.app.version < (4, 3, 0) else "BLENDER_EEVEE"
    facts = scene_facts.collect_scene_facts(scene)
    assert facts.render_engine.startswith("BLENDER_EEVEE") and facts.cycles_device is None
    assert codes(scene) == []  # EEVEE renders on a GPU machine
    assert codes(scene, gpu=False, memory=None) == ["engine_needs_gpu"]


def test_video_output_and_absolute_path(scene, tmp_path):
    if hasattr(scene.render.image_settings, "media_type"):  # Blender 5.0+; 4.2 LTS picks FFMPEG directly
        scene.render.image_settings.media_type = "VIDEO"
    scene.render.image_settings.file_format = "FFMPEG"
    scene.render.filepath = str(tmp_path / "renders" / "shot_")
    facts = scene_facts.collect_scene_facts(scene)
    assert facts.is_movie is True and facts.file_format == "FFMPEG"
    assert codes(scene) == ["output_absolute"]  # the movie is encoded from the frames


def test_huge_range_and_resolution(scene):
    scene.frame_end = 20_000
    scene.render.resolution_x = scene.render.resolution_y = 16384
    assert codes(scene, memory=24.0) == ["resolution_huge", "frames_huge"]
    scene.render.resolution_percentage = 25
    assert codes(scene, memory=24.0) == ["frames_huge"]


def test_cpu_device_on_gpu_machine_and_the_reverse(scene):
    scene.cycles.device = "CPU"
    assert codes(scene, gpu=True) == ["scene_cpu_on_gpu_instance"]
    assert codes(scene, gpu=False, memory=None) == []
    scene.cycles.device = "GPU"
    assert codes(scene, gpu=False, memory=None) == ["scene_gpu_on_cpu_instance"]


def test_python_driver_and_registered_text_need_auto_run(scene):
    obj = bpy.data.objects.new("Cube", bpy.data.meshes.new("Cube"))
    scene.collection.objects.link(obj)
    simple = obj.driver_add("location", 0).driver
    simple.expression = "frame * 0.1"
    custom = obj.driver_add("location", 1).driver
    custom.expression = "my_func(frame)"
    bpy.data.texts.new("rig_ui.py").use_module = True
    facts = scene_facts.collect_scene_facts(scene)
    assert [item["name"] for item in facts.auto_run_needed] == [
        'Object "Cube" location: my_func(frame)',
        'Text "rig_ui.py" (Register)',
    ]
    assert codes(scene) == ["needs_auto_run"]


def test_custom_ocio(scene, monkeypatch):
    monkeypatch.setenv("OCIO", "/studio/aces/config.ocio")
    assert scene_facts.collect_scene_facts(scene).ocio_env == "/studio/aces/config.ocio"
    assert codes(scene) == ["custom_ocio"]


def test_addon_data_in_the_file(scene, tmp_path, monkeypatch):
    import addon_utils  # Blender's own module, importable once bpy is

    (tmp_path / "cr_fake_addon.py").write_text(FAKE_ADDON)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert addon_utils.enable("cr_fake_addon", default_set=True) is not None
    try:
        obj = bpy.data.objects.new("Domain", bpy.data.meshes.new("Domain"))
        bpy.data.objects.new("Untouched", obj.data)
        obj.cr_fake_settings.strength = 3.0
        facts = scene_facts.collect_scene_facts(scene)
        assert {
            "module": "cr_fake_addon",
            "used_by": 'Object "Domain" (property cr_fake_settings)',
        } in facts.addons_used
        assert not any("Untouched" in item["used_by"] for item in facts.addons_used)
        assert codes(scene) == []  # a pure Python add-on travels with the job
        bpy.context.scene.collection.objects.link(obj)
        obj["artist_note"] = "plain custom property, not add-on data"
        bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "with_addon.blend"))
    finally:
        addon_utils.disable("cr_fake_addon", default_set=True)
        sys.modules.pop("cr_fake_addon", None)
    # Opened where the add-on is off: its data is still in the file, under no module.
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "with_addon.blend"))
    facts = scene_facts.collect_scene_facts(bpy.context.scene)
    assert [item for item in facts.addons_used if item["module"] != "cycles"] == [
        {"module": "", "used_by": 'Object "Domain" (property cr_fake_settings)'}
    ]
    assert "addon_data_unknown" in codes(bpy.context.scene)


def test_missing_images_and_libraries_name_their_data_block(scene, tmp_path):
    lib_path = tmp_path / "lib.blend"
    bpy.data.objects.new("Prop", bpy.data.meshes.new("Prop")).use_fake_user = True
    bpy.ops.wm.save_as_mainfile(filepath=str(lib_path))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    clean_cycles_scene()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    with bpy.data.libraries.load(str(lib_path), link=True, relative=True) as (_, linked):
        linked.objects = ["Prop"]
    lib_path.unlink()  # linked, then the library went away (a moved asset folder)
    gone = bpy.data.images.new("wood", 4, 4)
    gone.source = "FILE"
    gone.filepath = "//tex/wood.png"
    gone.use_fake_user = True
    present = bpy.data.images.new("stone", 4, 4)
    present.filepath_raw = str(tmp_path / "stone.png")
    present.file_format = "PNG"
    present.save()
    present.use_fake_user = True
    packed = bpy.data.images.new("embedded", 4, 4)
    packed.pack()
    packed.use_fake_user = True
    facts = scene_facts.collect_scene_facts(bpy.context.scene)
    assert facts.missing_files == [
        {
            "path": "//tex/wood.png",
            "used_by": 'Image "wood"',
            "looked_in": str(tmp_path / "tex" / "wood.png"),
        },
        {"path": "//lib.blend", "used_by": 'Library "lib.blend"', "looked_in": str(lib_path)},
    ]
    assert codes(bpy.context.scene) == ["missing_file", "missing_file"]


def test_udim_tiles_on_disk_are_not_missing(scene, tmp_path):
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    tile = bpy.data.images.new("wood.1001", 4, 4)
    tile.filepath_raw = str(tmp_path / "wood.1001.png")
    tile.file_format = "PNG"
    tile.save()
    udim = bpy.data.images.load(str(tmp_path / "wood.1001.png"))
    udim.source = "TILED"
    udim.filepath = "//wood.<UDIM>.png"
    udim.use_fake_user = True
    lost = bpy.data.images.load(str(tmp_path / "wood.1001.png"))
    lost.source = "TILED"
    lost.filepath = "//lost.<UDIM>.png"
    facts = scene_facts.collect_scene_facts(bpy.context.scene)
    assert [m["path"] for m in facts.missing_files] == ["//lost.<UDIM>.png"]


def test_facts_are_plain_values(scene):
    facts = scene_facts.collect_scene_facts(scene)
    allowed = (str, int, float, bool, type(None), list, dict)
    assert all(isinstance(value, allowed) for value in vars(facts).values())  # no bpy object kept
    assert Path(scene_facts.__file__).name == "scene_facts.py"


def _addon_findings(module, context) -> list[str]:  # type: ignore[no-untyped-def]
    """What Check Scene and a submit's job log say about add-ons, from the installed extension."""
    return [
        f"{f.code}: {f.message}" for f in module.addon.submit.preflight(context) if f.code.startswith("addon")
    ]


def test_own_settings_and_cycles_camera_data_are_no_missing_add_on(installed, tmp_path):
    """A plain Cycles scene with the add-on's own settings: no add-on warning (`make demo` had two)."""
    path = harness.make_scene(tmp_path / "plain.blend")
    settings = bpy.context.scene.cloud_render
    settings.instance_type = "c5.2xlarge"  # set, so scene.cloud_render holds values in the file
    settings.max_cost = 3.0
    bpy.ops.wm.save_mainfile()
    bpy.ops.wm.open_mainfile(filepath=str(path))  # as the artist opens it again
    module = harness.addon()
    installed_facts = importlib.import_module(harness.MODULE + ".addon.scene_facts")
    facts = installed_facts.collect_scene_facts(bpy.context.scene)
    # The factory camera still carries the group Cycles once registered as Camera.cycles.
    assert {"module": "cycles", "used_by": 'Camera "Camera" (property cycles)'} in facts.addons_used
    assert {item["module"] for item in facts.addons_used} == {"cycles"}
    assert _addon_findings(module, bpy.context) == []

    # Data of an add-on that is genuinely not here still warns, naming the data-block.
    cube = bpy.data.objects["Cube"]
    getter = getattr(cube, "bl_system_properties_get", None)
    (getter(do_create=True) if getter else cube)["flip_fluid"] = {"domain_type": 1}
    assert _addon_findings(module, bpy.context) == [
        'addon_data_unknown: Object "Cube" (property flip_fluid) holds data of an add-on that is not '
        "enabled here; the cloud machine will not have it either."
    ]
