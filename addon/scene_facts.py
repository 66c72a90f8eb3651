"""Collect what the preflight needs from the open scene, as plain values (add-on side, imports bpy).

`cloud/pack/preflight.py` never sees bpy: it judges the `SceneFacts` built here, so every check can be
tested without Blender and the UI thread only pays for a quick walk over the data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bpy

from ..cloud.pack import FRAMES_IMAGE_PREFIX
from ..cloud.pack.scene_facts import AddonUse, MissingFile, SceneFacts, ScriptNeed
from . import farm_facts

MOVIE_FORMATS = {"FFMPEG", "AVI_JPEG", "AVI_RAW"}
BUILTIN_TREES = {"ShaderNodeTree", "GeometryNodeTree", "CompositorNodeTree", "TextureNodeTree"}
# ID collections that carry add-on data (PropertyGroups, custom node trees, drivers).
ID_COLLECTIONS = (
    "scenes",
    "objects",
    "meshes",
    "materials",
    "worlds",
    "cameras",
    "lights",
    "node_groups",
    "collections",
    "images",
)
_ID_KIND = {
    "scenes": "Scene",
    "objects": "Object",
    "meshes": "Mesh",
    "materials": "Material",
    "worlds": "World",
    "cameras": "Camera",
    "lights": "Light",
    "node_groups": "Node group",
    "collections": "Collection",
    "images": "Image",
}


# This extension's package (`bl_ext.<repo>.cloud_render`): its scene settings only steer the
# submit, nothing renders from them, so they are no add-on data the machine lacks.
OWN_PACKAGE = (__package__ or "").rpartition(".")[0]


def _orphan_owner(key: str) -> str:
    """The add-on an unregistered property group belongs to, where it is known, else "".

    Cycles, which the machine has, registered `Camera.cycles`, `Object.cycles_visibility` and
    others in earlier versions; files (Blender's own startup file included) still carry them.
    """
    return "cycles" if key == "cycles" or key.startswith("cycles_") else ""


def _addon_of(cls: type) -> str | None:
    """The enabled add-on (top-level module) that defines `cls`, or None for Blender's own types."""
    module = getattr(cls, "__module__", "") or ""
    top = module.split(".")[0]
    if top in {"bpy", "bpy_types", "builtins", ""}:
        return None
    if module.startswith("bl_ext."):
        top = ".".join(module.split(".")[:3])
    prefs = bpy.context.preferences
    return top if prefs is not None and top in prefs.addons else None


def _addon_data(idblock: Any, kind: str) -> list[AddonUse]:
    """Add-ons whose properties hold values on this data-block.

    Registered ones are named by module. Data of an add-on that is not enabled here survives
    as unregistered property groups: Blender 5.0 keeps them apart from the artist's custom
    properties (`bl_system_properties_get`); before that, a group-valued custom property
    that no add-on registered is the best sign. Those get an empty module name.
    """
    found: list[AddonUse] = []
    rna = type(idblock).bl_rna.properties
    label = f'{kind} "{idblock.name}"'
    for prop in rna:
        # Registered from Python, and holding values in this file (set at least once).
        if not prop.is_runtime or prop.type != "POINTER" or not idblock.is_property_set(prop.identifier):
            continue
        addon = _addon_of(type(getattr(idblock, prop.identifier, None)))
        if addon and addon != OWN_PACKAGE:
            found.append({"module": addon, "used_by": f"{label} (property {prop.identifier})"})
    getter = getattr(idblock, "bl_system_properties_get", None)
    if getter is not None:
        system = getter()
        orphans = [key for key in (system.keys() if system is not None else ()) if key not in rna]
    else:
        orphans = [key for key in idblock.keys() if key not in rna and hasattr(idblock[key], "to_dict")]  # noqa: SIM118 (an ID, not a dict)
    found += [{"module": _orphan_owner(key), "used_by": f"{label} (property {key})"} for key in orphans]
    return found


def addons_used() -> list[AddonUse]:
    """Enabled add-ons the file refers to: their properties on data-blocks and their node trees."""
    found: list[AddonUse] = []
    for attr in ID_COLLECTIONS:
        for idblock in getattr(bpy.data, attr):
            found += _addon_data(idblock, _ID_KIND[attr])
    for tree in bpy.data.node_groups:
        if tree.bl_idname not in BUILTIN_TREES:
            addon = _addon_of(type(tree)) or tree.bl_idname
            found.append({"module": addon, "used_by": f'Node group "{tree.name}" ({tree.bl_idname})'})
    unique = {(f["module"], f["used_by"]): f for f in found}
    return sorted(unique.values(), key=lambda f: (f["module"], f["used_by"]))


def scripts_needing_auto_run() -> list[ScriptNeed]:
    """Python drivers and text blocks registered as modules: both only run with Auto Run on."""
    found: list[ScriptNeed] = []
    for attr in ID_COLLECTIONS:
        for idblock in getattr(bpy.data, attr):
            anim = getattr(idblock, "animation_data", None)
            for fcurve in anim.drivers if anim else ():
                driver = fcurve.driver
                if driver.type == "SCRIPTED" and not driver.is_simple_expression:
                    found.append(
                        {
                            "kind": "driver",
                            "name": f'{_ID_KIND[attr]} "{idblock.name}" {fcurve.data_path}: {driver.expression}',
                        }
                    )
    for text in bpy.data.texts:
        if text.use_module:
            found.append({"kind": "text", "name": f'Text "{text.name}" (Register)'})
    return found


def missing_files() -> list[MissingFile]:
    """Images, libraries, sounds, clips and fonts whose file is not on disk (packed ones excluded)."""
    found: list[MissingFile] = []
    groups = (
        ("images", "Image"),
        ("libraries", "Library"),
        ("sounds", "Sound"),
        ("movieclips", "Movie clip"),
        ("fonts", "Font"),
        ("cache_files", "Cache file"),
        ("volumes", "Volume"),
    )
    for attr, kind in groups:
        for block in getattr(bpy.data, attr):
            if getattr(block, "packed_file", None) or getattr(block, "library", None):
                continue
            if kind == "Image" and block.name.startswith(FRAMES_IMAGE_PREFIX):
                continue  # earlier jobs' frames, not needed to render
            path = block.filepath
            if not path or (kind == "Image" and block.source not in {"FILE", "SEQUENCE", "MOVIE", "TILED"}):
                continue
            if kind == "Font" and path == "<builtin>":
                continue
            absolute = bpy.path.abspath(path, library=None)
            if kind == "Image" and block.source == "TILED":
                pattern = Path(absolute).name.replace("<UDIM>", "*").replace("<UVTILE>", "*")
                exists = any(Path(absolute).parent.glob(pattern))
            else:
                exists = Path(absolute).exists()
            if not exists:
                found.append({"path": path, "used_by": f'{kind} "{block.name}"', "looked_in": absolute})
    return found


def collect_scene_facts(scene: Any) -> SceneFacts:
    """The facts about `scene` and its file that `cloud.pack.preflight.run_preflight` judges."""
    render = scene.render
    prefs = bpy.context.preferences
    cycles = getattr(scene, "cycles", None)
    image = render.image_settings
    used = addons_used()
    used += [u for u in farm_facts.driver_function_addons(_addon_of) if u["module"] != OWN_PACKAGE]
    return SceneFacts(
        blender_version=bpy.app.version_string,
        blend_path=bpy.data.filepath,
        is_saved=bool(bpy.data.filepath) and not bpy.data.is_dirty,
        scene=scene.name,
        render_engine=render.engine,
        cycles_device=cycles.device if cycles is not None and render.engine == "CYCLES" else None,
        output_path=render.filepath,
        file_format=image.file_format,
        is_movie=image.file_format in MOVIE_FORMATS or bool(getattr(render, "is_movie_format", False)),
        frame_start=scene.frame_start,
        frame_end=scene.frame_end,
        frame_step=scene.frame_step,
        resolution_x=render.resolution_x,
        resolution_y=render.resolution_y,
        resolution_percentage=render.resolution_percentage,
        addons_used=used,
        addons_enabled=farm_facts.enabled_user_addons(OWN_PACKAGE),
        simulations=farm_facts.simulations(),
        fingerprint=farm_facts.environment_fingerprint(scene, [u["module"] for u in used if u["module"]]),
        auto_run_needed=scripts_needing_auto_run(),
        auto_run_enabled=bool(prefs is not None and prefs.filepaths.use_scripts_auto_execute),
        ocio_env=os.environ.get("OCIO") or None,
        missing_files=missing_files(),
    )
