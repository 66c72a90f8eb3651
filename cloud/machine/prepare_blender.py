"""Runs inside Blender before `render_frames.py`: make the machine's Blender the artist's, then check it.

`blender -b FILE --python prepare_blender.py --python render_frames.py -- CONFIG.json`. The
supervisor points `BLENDER_USER_RESOURCES` at the add-ons that travelled with the job
(`<job>/_cloud_render_user/`: `scripts/addons/<module>/`, `extensions/<repo>/<id>/`). This
script mirrors the artist's Auto Run setting, enables those add-ons with the preferences the
artist had, then opens the scene again so that their drivers, properties and load handlers
take hold as they do locally. It then takes the machine's environment fingerprint, compares
it with the artist's and prints the differences; differences that change pixels stop here,
before any frame is paid for, unless the artist chose to go on.

Python 3.9 syntax; standard library plus bpy.
"""

from __future__ import annotations

import importlib.util
import json
import os
import runpy
import sys
import traceback
from typing import Any

import bpy

HERE = os.path.dirname(os.path.abspath(__file__))
# Blender runs this file by path (`--python`): no package around it, and the folder it lies in
# is not searched by imports. The stdout protocol, shared with the supervisor that reads it, is
# blender_logs.py beside this file, loaded by path (the import path is left as Blender set it).
_PROTOCOL = runpy.run_path(os.path.join(HERE, "blender_logs.py"))
emit, fail = _PROTOCOL["emit"], _PROTOCOL["fail"]


def load_fingerprint() -> Any:
    """fingerprint.py beside this script (scripts run by path here, not as a package)."""
    spec = importlib.util.spec_from_file_location(
        "cloud_render_fingerprint", os.path.join(HERE, "fingerprint.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def set_preferences(target: Any, values: dict[str, Any]) -> list[str]:
    """Plain values (numbers, text, booleans, enums) onto an add-on's preferences; names it could not set."""
    refused = []
    for name, value in values.items():
        try:
            setattr(target, name, tuple(value) if isinstance(value, list) else value)
        except (AttributeError, TypeError, ValueError):
            refused.append(name)
    return refused


def enable_addons(addons: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(installed lines for the log, add-ons that failed to enable)."""
    import addon_utils  # Blender's own module, importable once bpy is

    utils: Any = addon_utils
    installed: list[str] = []
    failed: list[str] = []
    for item in addons:
        module = str(item.get("module", ""))
        try:
            loaded = utils.enable(module, default_set=True, handle_error=lambda exc: traceback.print_exc())
        except Exception:  # an add-on's own register() may raise anything
            traceback.print_exc()
            loaded = None
        if loaded is None:
            failed.append(module)
            continue
        refused: list[str] = []
        preferences: Any = bpy.context.preferences
        addon = preferences.addons.get(module)
        if item.get("preferences") and addon is not None and addon.preferences is not None:
            refused = set_preferences(addon.preferences, dict(item["preferences"]))
        line = f"{module} {item.get('version') or ''}".strip()
        if refused:
            line += f" (preferences not set: {', '.join(refused)})"
        installed.append(line)
    return installed, failed


def main() -> None:
    cfg = json.load(open(sys.argv[sys.argv.index("--") + 1]))  # noqa: SIM115
    addons = list(cfg.get("addons") or [])
    preferences: Any = bpy.context.preferences
    if cfg.get("auto_run"):  # as the artist's Blender has it: their drivers and scripts run
        preferences.filepaths.use_scripts_auto_execute = True
    installed, failed = enable_addons(addons)
    if addons or cfg.get("auto_run"):
        # Again, now that the add-ons are registered: drivers and load handlers see them.
        bpy.ops.wm.open_mainfile(filepath=bpy.data.filepath, use_scripts=bool(cfg.get("auto_run")))
    import addon_utils

    fingerprint = load_fingerprint()
    mine = fingerprint.collect(bpy, addon_utils, bpy.context.scene)
    artist = cfg.get("fingerprint") or {}
    differences = fingerprint.compare(artist, mine) if artist else []
    emit("environment", installed=installed, failed=failed, fingerprint=mine, differences=differences)
    if failed:
        fail(
            "environment",
            f"The add-on {', '.join(failed)} that travelled with the job did not enable on the machine's Blender.",
        )
    blocking = fingerprint.stops(differences)
    if blocking and not cfg.get("accept_differences"):
        fail(
            "environment",
            "The machine's Blender would render differently: " + " ".join(d["message"] for d in blocking),
        )


main()
