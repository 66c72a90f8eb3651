"""Farm equals local, the pure parts: which add-ons travel, fingerprint differences, the
environment report read through the contract, the preflight's add-on and simulation findings."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest

from cloud.job import proof_frame
from cloud.machine import fingerprint
from cloud.machine.contract import (
    ADDONS_DIR,
    CONTRACT_VERSION,
    ContractError,
    load_document,
    parse_environment,
)
from cloud.pack.addons import EnabledAddon, plan_addons
from cloud.pack.bakes import disk_bake_inputs
from cloud.pack.preflight import BLOCK, addon_plan, run_preflight
from cloud.pack.scene_facts import SceneFacts

ARTIST = {
    "blender_version": "5.0.1",
    "build_hash": "a3db93c5b259",
    "addons": {"cycles": "", "cr_tint": "1.2.0", "unused_tool": "3.0"},
    "addons_used": ["cr_tint"],
    "ocio_config": "builtin",
    "display_device": "sRGB",
    "view_transform": "AgX",
    "look": "None",
    "exposure": 0.0,
    "gamma": 1.0,
    "engine": "CYCLES",
    "device": "GPU",
}


def addon_folder(root: Path, name: str, *extra: str) -> Path:
    folder = root / name
    (folder / "__pycache__").mkdir(parents=True)
    (folder / "__init__.py").write_text("bl_info = {}\n")
    (folder / "__pycache__" / "x.pyc").write_bytes(b"")
    for item in extra:
        (folder / item).write_bytes(b"\x7fELF")
    return folder


def test_only_used_pure_python_addons_travel_never_this_one(tmp_path):
    own = "bl_ext.user_default.cloud_render"
    enabled = [
        EnabledAddon(
            "cr_tint", str(addon_folder(tmp_path, "cr_tint", "fast.cpython-311-x86_64-linux-gnu.so"))
        ),
        EnabledAddon("unused_tool", str(addon_folder(tmp_path, "unused_tool"))),
        EnabledAddon(own, str(addon_folder(tmp_path, "cloud_render"))),
        EnabledAddon(
            "bl_ext.blender_org.rig_kit", str(addon_folder(tmp_path, "rig_kit")), "2.1.0", {"scale": 2.0}
        ),
        EnabledAddon("mac_only", str(addon_folder(tmp_path, "mac_only", "core.cpython-311-darwin.so"))),
        EnabledAddon("win_only", str(addon_folder(tmp_path, "win_only", "core.pyd"))),
        EnabledAddon("wheely", str(addon_folder(tmp_path, "wheely")), wheels=["./wheels/numpy-2.0.whl"]),
    ]
    single = tmp_path / "one_file.py"
    single.write_text("bl_info = {}\n")
    enabled.append(EnabledAddon("one_file", str(single)))
    used = {"cr_tint", own, "bl_ext.blender_org.rig_kit", "mac_only", "win_only", "wheely", "one_file"}
    plan = plan_addons(enabled, used, own)
    assert [a.module for a in plan.travel] == ["cr_tint", "bl_ext.user_default.rig_kit", "one_file"]
    assert sorted(plan.files) == [
        f"{ADDONS_DIR}/extensions/user_default/rig_kit/__init__.py",
        f"{ADDONS_DIR}/scripts/addons/cr_tint/__init__.py",
        f"{ADDONS_DIR}/scripts/addons/cr_tint/fast.cpython-311-x86_64-linux-gnu.so",
        f"{ADDONS_DIR}/scripts/addons/one_file.py",
    ]
    assert plan.travel[1].spec_entry() == {
        "module": "bl_ext.user_default.rig_kit",
        "version": "2.1.0",
        "preferences": {"scale": 2.0},
    }
    assert set(plan.refused) == {"mac_only", "win_only", "wheely"}
    assert (
        "core.cpython-311-darwin.so" in plan.refused["mac_only"] and "cannot load" in plan.refused["mac_only"]
    )
    assert "wheels" in plan.refused["wheely"]


def test_fingerprint_differences_that_change_pixels_stop():
    assert fingerprint.compare(ARTIST, dict(ARTIST)) == []
    machine = dict(ARTIST, blender_version="5.0.0", addons={"cycles": "", "cr_tint": "1.1.0"}, device="CPU")
    notes = fingerprint.compare(ARTIST, machine)
    assert [d["what"] for d in notes] == ["blender_version", "addon", "device"]
    assert fingerprint.stops(notes) == []  # a patch release, an add-on version, the device: noted only
    machine = dict(
        ARTIST, blender_version="4.2.3", addons={"cycles": ""}, ocio_config="builtin", look="Punchy"
    )
    artist = dict(ARTIST, ocio_config="studio.ocio (0123456789ab)")
    stops = fingerprint.stops(fingerprint.compare(artist, machine))
    assert [d["what"] for d in stops] == ["blender_version", "addon", "ocio_config", "look"]
    assert stops[1]["message"] == "The add-on cr_tint, which the scene uses, is not on the machine."
    # An add-on enabled here but not used by the scene is no difference worth stopping for.
    assert "unused_tool" not in json.dumps(stops)


def test_environment_report_is_validated_on_read():
    body = json.dumps(
        {
            "contract": CONTRACT_VERSION,
            "installed": ["cr_tint 1.2.0"],
            "failed": [],
            "differences": [{"level": "bogus", "what": "look", "message": "\x1b[31mred\x1b[0m" + "x" * 900}],
            "fingerprint": {"blender_version": "5.0.1", "view_transform": "AgX", "ocio_config": "builtin"},
        }
    ).encode()
    report = parse_environment(load_document(body, "environment.json"))
    assert report.installed == ["cr_tint 1.2.0"] and report.view_transform == "AgX"
    assert report.differences[0]["level"] == "note" and "\x1b" not in report.differences[0]["message"]
    assert len(report.differences[0]["message"]) <= 400
    with pytest.raises(ContractError):
        parse_environment({"installed": [], "differences": [{}] * 1000})
    with pytest.raises(ContractError):
        parse_environment({"installed": "cr_tint", "differences": []})
    with pytest.raises(ContractError):
        parse_environment({"differences": ["not an object"]})


def facts(**extra):
    base = {
        "render_engine": "CYCLES",
        "cycles_device": "GPU",
        "frame_start": 1,
        "frame_end": 10,
        "frame_step": 1,
        "resolution_x": 64,
        "resolution_y": 64,
        "resolution_percentage": 100,
        "output_path": "//render/",
    }
    return SceneFacts(**{**base, **extra})


def codes(f):
    return [(x.severity, x.code) for x in run_preflight(f, None, True, 24.0)]


def test_preflight_quiet_about_addons_that_travel_loud_about_those_that_cannot(tmp_path):
    used = [
        {"module": "cr_tint", "used_by": 'Driver on "glow"'},
        {"module": "mac_only", "used_by": 'Object "A"'},
    ]
    enabled = [
        {"module": "cr_tint", "path": str(addon_folder(tmp_path, "cr_tint"))},
        {"module": "mac_only", "path": str(addon_folder(tmp_path, "mac_only", "core.cpython-311-darwin.so"))},
    ]
    findings = run_preflight(facts(addons_used=used, addons_enabled=enabled), None, True, 24.0)
    assert [f.code for f in findings] == ["addon_cannot_travel"]
    assert "mac_only" in findings[0].message and "another system" in findings[0].message


def test_an_addon_file_linked_out_of_its_folder_or_named_with_a_backslash_stays_home(tmp_path):
    """Before, a linked ~/.aws/credentials travelled as the add-on's notes.txt, and a backslash in
    a name was refused by the machine after the upload. Now the preflight names the file, and the
    add-on does not travel; a link inside the add-on's own folder still does."""
    secret = tmp_path / "home" / ".aws" / "credentials"
    secret.parent.mkdir(parents=True)
    secret.write_text("[default]\naws_secret_access_key = not-for-the-machine\n")
    leaky = addon_folder(tmp_path, "leaky")
    (leaky / "notes.txt").symlink_to(secret)
    slashed = addon_folder(tmp_path, "slashed")
    (slashed / "presets\\warm.py").write_text("x = 1\n")
    linked_inside = addon_folder(tmp_path, "tidy")
    (linked_inside / "readme.txt").write_text("hello\n")
    (linked_inside / "README").symlink_to(linked_inside / "readme.txt")
    used = [{"module": m, "used_by": f'Object "{m}"'} for m in ("leaky", "slashed", "tidy")]
    enabled = [{"module": m, "path": str(tmp_path / m)} for m in ("leaky", "slashed", "tidy")]
    scene = facts(addons_used=used, addons_enabled=enabled)
    findings = {f.message.split()[2]: f for f in run_preflight(scene, None, True, 24.0)}
    assert sorted(findings) == ["leaky", "slashed"]
    assert all(f.code == "addon_cannot_travel" for f in findings.values())
    assert "its file notes.txt is a link to a file outside the add-on's folder" in findings["leaky"].message
    assert "its file presets\\warm.py has a name the render machine cannot use" in findings["slashed"].message
    plan = addon_plan(scene)
    assert [a.module for a in plan.travel] == ["tidy"]
    assert sorted(plan.files) == [
        f"{ADDONS_DIR}/scripts/addons/tidy/README",
        f"{ADDONS_DIR}/scripts/addons/tidy/__init__.py",
        f"{ADDONS_DIR}/scripts/addons/tidy/readme.txt",
    ]
    assert secret not in {path.resolve() for path in plan.files.values()}


def test_unbaked_simulations_stop_the_submit_naming_the_object():
    sims = [
        {"object": "Flag", "modifier": "Cloth", "kind": "cloth", "baked": False, "folder": ""},
        {"object": "Smoke", "modifier": "GeoSim", "kind": "Geometry Nodes", "baked": False, "folder": ""},
        {
            "object": "Rock",
            "modifier": "GN",
            "kind": "Geometry Nodes",
            "baked": True,
            "folder": "/tmp/x/1",
            "relative": "",
        },
        {
            "object": "Ball",
            "modifier": "GN",
            "kind": "Geometry Nodes",
            "baked": True,
            "folder": "/p/b/2",
            "relative": "b/2",
        },
    ]
    findings = run_preflight(facts(simulations=sims), None, True, 24.0)
    assert [(f.severity, f.code) for f in findings] == [
        (BLOCK, "simulation_not_baked"),
        (BLOCK, "simulation_not_baked"),
        ("warn", "cache_outside_project"),
    ]
    assert (
        'object "Flag" (modifier "Cloth")' in findings[0].message and "Physics Properties" in findings[0].fix
    )
    assert 'object "Smoke"' in findings[1].message and "Bake button" in findings[1].fix


def test_disk_bakes_inside_the_project_go_into_the_pack(tmp_path):
    folder = tmp_path / "bakes" / "77"
    (folder / "meta").mkdir(parents=True)
    (folder / "meta" / "00001_00000.json").write_text("{}")
    (folder / "blobs").mkdir()
    (folder / "blobs" / "00001_00000.blob").write_bytes(b"\0")
    sims = [
        {"folder": str(folder), "relative": "bakes/77"},
        {"folder": str(tmp_path / "never"), "relative": "never"},
        {"folder": "/elsewhere/3", "relative": ""},
    ]
    assert disk_bake_inputs(sims, "shots") == {
        "shots/bakes/77/blobs/00001_00000.blob": folder / "blobs" / "00001_00000.blob",
        "shots/bakes/77/meta/00001_00000.json": folder / "meta" / "00001_00000.json",
    }


def png(width: int, height: int, rows: list[bytes], filters: list[int]) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    raw = b"".join(bytes([f]) + r for f, r in zip(filters, rows, strict=True))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_proof_frame_reads_png_filters_and_compares():
    # Row 2 with the "up" filter (a zero difference repeats row 1); row 1 with "sub".
    data = png(2, 2, [bytes([10, 20, 30, 5, 5, 5]), bytes(6)], [1, 2])
    image = proof_frame.read_png(data)
    assert [round(v * 255) for v in image.pixels] == [10, 20, 30, 15, 25, 35, 10, 20, 30, 15, 25, 35]
    assert proof_frame.compare(image, image).match
    other = proof_frame.read_png(png(2, 2, [bytes([200] * 6), bytes(6)], [0, 2]))
    result = proof_frame.compare(image, other)
    assert not result.match and "does not match" in result.words()
    assert proof_frame.compare(image, proof_frame.read_png(png(1, 1, [bytes(3)], [0]))).metric == 1.0
    cause = proof_frame.likely_cause([{"what": "ocio_config", "message": "The OCIO colour config ..."}], [])
    assert cause.startswith("The OCIO")
    assert "textures" in proof_frame.likely_cause([], [])


def test_packed_bakes_read_from_every_shared_blend_file(testdata):
    """Files from Blender 2.79 to 3.2 (no bakes array yet) are read without error and hold none."""
    from cloud.pack.bakes import packed_bakes

    blends = sorted(testdata.rglob("*.blend"))
    assert len(blends) > 20
    for blend in blends:
        assert packed_bakes(blend) == {}, blend
