"""The environment fingerprint: what makes the same .blend give other pixels on another Blender.

Both sides take one: the add-on in the artist's Blender (with the job) and the machine's
Blender after the scene opens (`prepare_blender.py`); the machine compares them before any
frame is rendered. `collect` is handed the `bpy` module instead of importing it, so this file
stays standard library only and imports the same way on both sides. Every difference is
either "stop" (the pixels change: another Blender series, an add-on the scene uses missing,
another colour configuration or engine) or "note" (worth a line in the log: another patch
release or build, another add-on version, another device).

Python 3.9 syntax; standard library only.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any

STOP = "stop"
NOTE = "note"
# Blender's own colour configuration, when no OCIO variable points elsewhere.
BUILTIN_OCIO = "builtin"


def _series(version: str) -> str:
    return ".".join(version.split(" ")[0].split(".")[:2])


def ocio_config() -> str:
    """ "builtin", or the custom OCIO config's file name and the start of its sha256."""
    path = os.environ.get("OCIO", "")
    if not path:
        return BUILTIN_OCIO
    name = os.path.basename(path)
    try:
        with open(path, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()[:12]
    except OSError:
        return f"{name} (unreadable)"
    return f"{name} ({digest})"


def addon_versions(bpy: Any, addon_utils: Any) -> dict[str, str]:
    """Enabled add-on (short name: the last part of the module) -> version, "" where none is said."""
    found: dict[str, str] = {}
    for addon in bpy.context.preferences.addons:
        short = addon.module.rsplit(".", 1)[-1]
        version = ""
        module = sys.modules.get(addon.module)
        if module is not None:
            try:
                info = addon_utils.module_bl_info(module)
                version = ".".join(str(p) for p in info.get("version", ()) or ())
            except Exception:  # a broken add-on must not stop the fingerprint
                version = ""
        found[short] = version
    return found


def collect(bpy: Any, addon_utils: Any, scene: Any, addons_used: list[str] | None = None) -> dict[str, Any]:
    """The fingerprint of this Blender with `scene` open, as plain JSON values."""
    view = scene.view_settings
    cycles = getattr(scene, "cycles", None)
    engine = scene.render.engine
    return {
        "blender_version": bpy.app.version_string,
        "build_hash": bpy.app.build_hash.decode(errors="replace"),
        "addons": addon_versions(bpy, addon_utils),
        "addons_used": sorted(set(addons_used or [])),
        "ocio_config": ocio_config(),
        "display_device": scene.display_settings.display_device,
        "view_transform": view.view_transform,
        "look": view.look,
        "exposure": round(float(view.exposure), 4),
        "gamma": round(float(view.gamma), 4),
        "engine": engine,
        "device": cycles.device if cycles is not None and engine == "CYCLES" else "",
    }


def _diff(level: str, what: str, artist: Any, machine: Any, words: str) -> dict[str, str]:
    return {"level": level, "what": what, "artist": str(artist), "machine": str(machine), "message": words}


def compare(artist: dict[str, Any], machine: dict[str, Any]) -> list[dict[str, str]]:
    """Every difference between the artist's fingerprint and the machine's, "stop" ones first."""
    out: list[dict[str, str]] = []
    a_ver, m_ver = str(artist.get("blender_version", "")), str(machine.get("blender_version", ""))
    if _series(a_ver) != _series(m_ver):
        out.append(
            _diff(STOP, "blender_version", a_ver, m_ver, f"Blender {m_ver} on the machine, {a_ver} here.")
        )
    elif a_ver != m_ver:
        out.append(
            _diff(NOTE, "blender_version", a_ver, m_ver, f"Blender {m_ver} on the machine, {a_ver} here.")
        )
    elif artist.get("build_hash") != machine.get("build_hash"):
        out.append(
            _diff(
                NOTE,
                "build_hash",
                artist.get("build_hash"),
                machine.get("build_hash"),
                "Another build of the same release.",
            )
        )
    used = set(artist.get("addons_used") or [])
    theirs: dict[str, str] = machine.get("addons") or {}
    for name, version in sorted((artist.get("addons") or {}).items()):
        if name not in theirs:
            if name in used:
                out.append(
                    _diff(
                        STOP,
                        "addon",
                        version or "enabled",
                        "missing",
                        f"The add-on {name}, which the scene uses, is not on the machine.",
                    )
                )
        elif version and theirs[name] and version != theirs[name]:
            out.append(
                _diff(
                    NOTE,
                    "addon",
                    version,
                    theirs[name],
                    f"The add-on {name} is version {theirs[name]} on the machine.",
                )
            )
    for key, label in (
        ("ocio_config", "OCIO colour config"),
        ("display_device", "display device"),
        ("view_transform", "view transform"),
        ("look", "look"),
        ("exposure", "exposure"),
        ("gamma", "gamma"),
        ("engine", "render engine"),
    ):
        if key in artist and artist.get(key) != machine.get(key):
            words = f"The {label} is {machine.get(key)!s} on the machine, {artist.get(key)!s} here."
            out.append(_diff(STOP, key, artist.get(key), machine.get(key), words))
    if artist.get("device") and machine.get("device") and artist.get("device") != machine.get("device"):
        out.append(
            _diff(
                NOTE,
                "device",
                artist["device"],
                machine["device"],
                f"Renders on {machine['device']} on the machine.",
            )
        )
    return sorted(out, key=lambda d: d["level"] != STOP)


def stops(differences: list[dict[str, str]]) -> list[dict[str, str]]:
    return [d for d in differences if d.get("level") == STOP]
