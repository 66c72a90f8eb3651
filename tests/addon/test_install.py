"""The built zips validate, and install and enable like an artist's "Install from Disk".

Runs in fresh interpreters: bpy 5.0.1 (the suite's), bpy 4.2 LTS (Python 3.11) and the newest
bpy for Python 3.13, so a version mismatch shows up here rather than on an artist's machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dev.build import build, zip_for_this_platform

ROOT = Path(__file__).resolve().parents[2]
CHECK = Path(__file__).with_name("install_check.py")
INTERPRETERS = {
    "bpy-5.0": Path(sys.executable),
    "bpy-4.2-lts": ROOT / ".venv-bpy42" / "bin" / "python",
    "bpy-5.x-py3.13": ROOT / ".venv-bpy5x" / "bin" / "python",
}


@pytest.fixture(scope="module")
def built_zips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return build(tmp_path_factory.mktemp("dist"))


def test_one_validated_zip_per_platform(built_zips):
    names = sorted(p.name for p in built_zips)
    assert names == [
        "cloud_render-0.1.0-linux_x64.zip",
        "cloud_render-0.1.0-macos_arm64.zip",
        "cloud_render-0.1.0-macos_x64.zip",
        "cloud_render-0.1.0-windows_x64.zip",
    ]
    for path in built_zips:
        members = zipfile.ZipFile(path).namelist()
        assert "blender_manifest.toml" in members
        assert not any(m.startswith(("tests/", "dev/", "bench/", ".")) for m in members), path.name
        cffi = [m for m in members if m.startswith("vendor/cffi-")]
        assert any("-cp311-" in m for m in cffi) and any("-cp313-" in m for m in cffi), path.name
        assert any(m.startswith("vendor/cryptography-") for m in members)


@pytest.mark.parametrize("version", list(INTERPRETERS))
def test_install_enable_disable(version, built_zips, tmp_path):
    python = INTERPRETERS[version]
    assert python.exists(), f"{python} missing: run 'make venv-compat' (make test does)"
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "user")}
    proc = subprocess.run(
        [str(python), str(CHECK), str(zip_for_this_platform(built_zips))],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["install_result"] == ["FINISHED"]
    assert report["enabled"], report
    assert report["registered_after_enable"] == report["classes"]
    assert any(name.startswith("CLOUDRENDER_PT_") for name in report["classes"])
    assert report["scene_prop"] and report["wm_prop"] and report["timer_after_enable"]
    assert report["prefs_found"]
    assert report["scene_setting"] == 7
    # The first Render in Cloud finds the job side imported: a worker did it after enabling.
    assert report["job_side_imported_ahead"] and not report["manager_created"]
    # The bundled wheels were installed into the user's extension site-packages and import.
    # (The suite's own venv has boto3 etc. already, so only the bare compat venvs prove it.)
    for name, where in report["imports"].items():
        assert isinstance(where, str) and where.endswith(".py"), (name, where)
        if version != "bpy-5.0" and name != "requests":  # Blender ships requests itself
            assert where.startswith(str(tmp_path / "user")), (name, where)
    # Disabling leaves nothing behind.
    assert report["registered_after_disable"] == []
    assert not report["scene_prop_after_disable"] and not report["wm_prop_after_disable"]
    assert not report["timer_after_disable"]
    assert report["leftover_types"] == []
    assert report["handlers_changed"] == {}
