"""cloud.preflight: each finding, its severity, one-line message and fix.

Facts here are SceneFacts built from plain values, as scene_facts.collect_scene_facts() fills them (the add-on
tests build the same facts from real bpy scenes); pack results come from packing real files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.pack.packer import pack
from cloud.pack.preflight import Finding, blocks, run_preflight
from cloud.pack.scene_facts import SceneFacts

CLEAN = {
    "blender_version": "5.0.1",
    "blend_path": "/projects/shot/shot.blend",
    "is_saved": True,
    "scene": "Scene",
    "render_engine": "CYCLES",
    "cycles_device": "GPU",
    "output_path": "//render/",
    "file_format": "PNG",
    "is_movie": False,
    "frame_start": 1,
    "frame_end": 24,
    "frame_step": 1,
    "resolution_x": 1920,
    "resolution_y": 1080,
    "resolution_percentage": 100,
    "addons_used": [{"module": "cycles", "used_by": 'Scene "Scene" (property cycles)'}],
    "auto_run_needed": [],
    "auto_run_enabled": False,
    "ocio_env": None,
    "missing_files": [],
}


def findings(gpu: bool = True, memory: float | None = 24.0, pack_result=None, **changes) -> list[Finding]:
    return run_preflight(SceneFacts(**{**CLEAN, **changes}), pack_result, gpu, memory)


def only(found: list[Finding]) -> Finding:
    assert len(found) == 1, found
    return found[0]


def one_line(finding: Finding) -> None:
    assert finding.severity in {"block", "warn"}
    for text in (finding.message, finding.fix):
        assert text and "\n" not in text and text.endswith(".")


def test_clean_scene_has_no_findings():
    assert findings() == []
    assert findings(gpu=False, memory=None, cycles_device="CPU") == []


@pytest.mark.parametrize("engine", ["BLENDER_EEVEE", "BLENDER_EEVEE_NEXT", "BLENDER_WORKBENCH"])
def test_eevee_and_workbench_render_on_a_gpu_machine_and_are_refused_on_a_cpu_one(engine):
    assert findings(render_engine=engine, cycles_device=None) == []
    found = only(findings(gpu=False, memory=None, render_engine=engine, cycles_device=None))
    one_line(found)
    assert (found.severity, found.code) == ("block", "engine_needs_gpu")
    assert "software" in found.message and ("EEVEE" in found.message or "Workbench" in found.message)
    assert "GPU machine" in found.fix
    assert blocks([found])


def test_an_engine_the_machine_lacks_blocks():
    found = only(findings(render_engine="LUXCORE", cycles_device=None))
    one_line(found)
    assert (found.severity, found.code) == ("block", "engine_unknown")
    assert "LUXCORE" in found.message


def test_absolute_output_path_warns():
    found = only(findings(output_path="/home/artist/renders/shot_"))
    one_line(found)
    assert (found.severity, found.code) == ("warn", "output_absolute")
    assert "/home/artist/renders/shot_" in found.message
    assert found.fix == "Set Output Properties > Output to a relative path such as //render/."


def test_video_output_is_no_problem():
    """The machine renders the frames as images and encodes the movie once all are in."""
    assert findings(file_format="FFMPEG", is_movie=True) == []


def test_empty_and_huge_frame_ranges():
    empty = only(findings(frame_start=10, frame_end=5))
    one_line(empty)
    assert (empty.severity, empty.code, empty.message) == (
        "block",
        "frames_empty",
        "The frame range 10-5 holds no frame.",
    )
    huge = only(findings(frame_start=1, frame_end=50_000))
    one_line(huge)
    assert (huge.severity, huge.code) == ("warn", "frames_huge")
    assert "50000 frames" in huge.message
    assert findings(frame_start=1, frame_end=50_000, frame_step=10) == []


def test_resolution_against_gpu_memory():
    assert findings(resolution_x=3840, resolution_y=2160, memory=24.0) == []
    warn = only(findings(resolution_x=16384, resolution_y=8192, resolution_percentage=100, memory=48.0))
    one_line(warn)
    assert (warn.severity, warn.code) == ("warn", "resolution_huge")
    assert "16384x8192" in warn.message and "48 GB" in warn.message
    block = only(findings(resolution_x=16384, resolution_y=16384, memory=24.0))
    assert block.severity == "block"
    assert findings(resolution_x=16384, resolution_y=16384, resolution_percentage=25, memory=24.0) == []
    assert findings(resolution_x=16384, resolution_y=16384, gpu=False, memory=None, cycles_device="CPU") == []


def test_addons_the_instance_lacks():
    used = [
        {"module": "cycles", "used_by": 'Scene "Scene" (property cycles)'},
        {"module": "flip_fluids", "used_by": 'Object "Domain" (property flip_fluid)'},
        {"module": "flip_fluids", "used_by": 'Object "Inflow" (property flip_fluid)'},
    ]
    found = only(findings(addons_used=used))
    one_line(found)
    assert (found.severity, found.code) == ("warn", "addon_missing_on_instance")
    assert 'flip_fluids is used by Object "Domain" (property flip_fluid), Object "Inflow"' in found.message


def test_data_of_an_add_on_not_enabled_here():
    used = [{"module": "", "used_by": 'Object "Domain" (property flip_fluid)'}]
    found = only(findings(addons_used=used))
    one_line(found)
    assert (found.severity, found.code) == ("warn", "addon_data_unknown")
    assert found.message.startswith('Object "Domain" (property flip_fluid) holds data of an add-on')
    two = only(
        findings(addons_used=[*used, {"module": "", "used_by": 'Object "Inflow" (property flip_fluid)'}])
    )
    assert ', Object "Inflow" (property flip_fluid) hold data of an add-on' in two.message


def test_custom_ocio_config():
    found = only(findings(ocio_env="/studio/aces/config.ocio"))
    one_line(found)
    assert (found.severity, found.code) == ("warn", "custom_ocio")
    assert "/studio/aces/config.ocio" in found.message


def test_drivers_and_scripts_needing_auto_run():
    needed = [
        {"kind": "driver", "name": 'Object "Cube" location: my_func(frame)'},
        {"kind": "text", "name": 'Text "rig_ui.py" (Register)'},
    ]
    found = only(findings(auto_run_needed=needed))
    one_line(found)
    assert (found.severity, found.code) == ("warn", "needs_auto_run")
    assert "my_func(frame)" in found.message and "rig_ui.py" in found.message
    assert "Auto Run Python Scripts" in found.message


def test_cpu_scene_on_gpu_machine_and_the_reverse():
    cpu = only(findings(cycles_device="CPU", gpu=True))
    one_line(cpu)
    assert (cpu.severity, cpu.code) == ("warn", "scene_cpu_on_gpu_instance")
    assert cpu.fix == "Set Render Properties > Device to GPU Compute, or choose a cheaper CPU machine."
    gpu = only(findings(cycles_device="GPU", gpu=False, memory=None))
    one_line(gpu)
    assert (gpu.severity, gpu.code) == ("warn", "scene_gpu_on_cpu_instance")


def test_missing_files_from_the_facts_name_the_data_block():
    missing = [
        {"path": "//tex/wood.png", "used_by": 'Image "wood"', "looked_in": "/projects/shot/tex/wood.png"}
    ]
    found = only(findings(missing_files=missing))
    one_line(found)
    assert (found.severity, found.code) == ("warn", "missing_file")
    assert found.message == (
        'Image "wood" uses //tex/wood.png, which was not found at /projects/shot/tex/wood.png; it will render as missing.'
    )


def test_missing_and_outside_files_from_a_real_pack(testdata: Path, tmp_path: Path):
    result = pack(testdata / "missing_textures.blend", tmp_path / "pack")
    found = findings(pack_result=result)
    assert [f.code for f in found] == ["missing_file", "missing_file"]
    assert any('Image "marble_decoration-color" in missing_textures.blend' in f.message for f in found)
    assert all("marble" in f.message or "Golden Palace" in f.message for f in found)


def test_absolute_paths_outside_the_project_are_listed(tmp_path: Path):
    from cloud.pack.packer import ExternalFile, PackManifest, PackResult

    outside = [
        ExternalFile(f"/mnt/library/tex{i}.png", f'Image "tex{i}"', f"_external/x/tex{i}.png")
        for i in range(7)
    ]
    result = PackResult(tmp_path, PackManifest("scene.blend"), [], outside)
    found = only(findings(pack_result=result))
    one_line(found)
    assert (found.severity, found.code) == ("warn", "absolute_outside_project")
    assert (
        "7 file(s)" in found.message
        and "/mnt/library/tex0.png" in found.message
        and "and 2 more" in found.message
    )


def test_blocking_findings_come_first():
    found = findings(output_path="/abs/", render_engine="LUXCORE", cycles_device=None, frame_end=0)
    assert [f.severity for f in found] == ["block", "block", "warn"]
    assert blocks(found)
    assert not blocks(findings(output_path="/abs/"))


def test_unreadable_library_from_a_pack(tmp_path: Path):
    from cloud.pack.packer import PackManifest, PackResult, UnreadableFile

    result = PackResult(
        tmp_path, PackManifest("scene.blend"), unreadable=[UnreadableFile("/p/lib.blend", "BlendFileError")]
    )
    found = only(findings(pack_result=result))
    one_line(found)
    assert (found.severity, found.code) == ("warn", "unreadable_library")
    assert "/p/lib.blend" in found.message
