"""What makes the machine's frame equal the artist's: add-ons, simulations, the environment (imports bpy).

Collected beside `scene_facts.py` as plain values for `cloud/pack/preflight.py` and the job:
the artist's add-ons (where they lie, version, preferences) so the pack can carry those the
scene uses; add-ons whose driver functions the scene calls; every simulation and bake with
whether it is baked and where its cache is; the environment fingerprint the machine compares.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import bpy

from ..cloud.machine import fingerprint
from ..cloud.pack import bakes
from ..cloud.pack.scene_facts import AddonUse
from . import saved_file_facts

# Modifiers whose point cache holds a physics simulation.
POINT_CACHE_MODIFIERS = {"CLOTH": "cloth", "SOFT_BODY": "soft body"}
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _bundled_roots() -> list[str]:
    """Blender's own script folders: add-ons there are on the machine already."""
    roots = [bpy.utils.system_resource("SCRIPTS"), bpy.utils.resource_path("LOCAL")]
    return [os.path.realpath(r) for r in roots if r]


def _simple_preferences(prefs: Any) -> dict[str, Any]:
    """An add-on's preferences as plain values (numbers, text, booleans, enums, small vectors)."""
    if prefs is None:
        return {}
    values: dict[str, Any] = {}
    for prop in prefs.bl_rna.properties:
        if prop.identifier == "rna_type" or prop.type in {"POINTER", "COLLECTION"}:
            continue
        if prop.type == "STRING" and getattr(prop, "subtype", "") == "PASSWORD":
            continue  # secrets never travel
        value = getattr(prefs, prop.identifier, None)
        if isinstance(value, bool | int | float | str):
            values[prop.identifier] = value
        elif (
            value is not None
            and hasattr(value, "__len__")
            and len(value) <= 16
            and not isinstance(value, set)
        ):
            values[prop.identifier] = list(value)
        elif isinstance(value, set):
            values[prop.identifier] = sorted(value)
    return values


def enabled_user_addons(own_package: str) -> list[dict[str, Any]]:
    """Add-ons and extensions the artist installed and enabled (not Blender's bundled ones)."""
    import addon_utils  # Blender's own module, importable once bpy is

    utils: Any = addon_utils  # its stubs say module_bl_info returns nothing
    bundled = _bundled_roots()
    found = []
    for addon in bpy.context.preferences.addons:  # type: ignore[union-attr]
        module = sys.modules.get(addon.module)
        path = getattr(module, "__file__", None) if module is not None else None
        if addon.module == own_package or not path:
            continue
        real = os.path.realpath(path)
        if any(real.startswith(root + os.sep) for root in bundled):
            continue
        folder = os.path.dirname(real) if os.path.basename(real) == "__init__.py" else real
        info = utils.module_bl_info(module)
        wheels: list[str] = []
        manifest = Path(folder) / "blender_manifest.toml"
        if manifest.is_file():
            try:
                wheels = [str(w) for w in tomllib.loads(manifest.read_text()).get("wheels", [])]
            except (OSError, tomllib.TOMLDecodeError):
                wheels = []
        found.append(
            {
                "module": addon.module,
                "path": folder,
                "version": ".".join(str(p) for p in info.get("version", ()) or ()),
                "preferences": _simple_preferences(addon.preferences),
                "wheels": wheels,
            }
        )
    return found


def driver_function_addons(addon_of: Any) -> list[AddonUse]:
    """Add-ons whose functions (in Blender's driver namespace) the scene's drivers call."""
    namespace = bpy.app.driver_namespace
    found: list[AddonUse] = []
    for collection in (
        "objects",
        "materials",
        "node_groups",
        "meshes",
        "scenes",
        "worlds",
        "lights",
        "cameras",
    ):
        for idblock in getattr(bpy.data, collection):
            blocks = [idblock, getattr(idblock, "node_tree", None)]
            for block in blocks:
                anim = getattr(block, "animation_data", None) if block is not None else None
                for fcurve in anim.drivers if anim else ():
                    for name in set(NAME.findall(fcurve.driver.expression)):
                        func = namespace.get(name)
                        owner = addon_of(func) if callable(func) else None
                        if owner:
                            used_by = (
                                f'Driver on "{idblock.name}" {fcurve.data_path}: {fcurve.driver.expression}'
                            )
                            found.append({"module": owner, "used_by": used_by})
    return found


def _node_trees_of(tree: Any, seen: set[str]) -> list[Any]:
    if tree is None or tree.name in seen:
        return []
    seen.add(tree.name)
    trees = [tree]
    for node in tree.nodes:
        trees += _node_trees_of(getattr(node, "node_tree", None), seen)
    return trees


def _has_simulation(tree: Any) -> bool:
    kinds = {"GeometryNodeSimulationOutput", "GeometryNodeBake"}
    return any(node.bl_idname in kinds for t in _node_trees_of(tree, set()) for node in t.nodes)


def _relative_to_blend(folder: str) -> str:
    """The folder relative to the .blend's folder ("" when it lies outside it or nothing is saved)."""
    if not bpy.data.filepath:
        return ""
    try:
        return Path(folder).resolve().relative_to(Path(bpy.data.filepath).resolve().parent).as_posix()
    except ValueError:
        return ""


def disk_cache_folder(cache: Any) -> str:
    """Where a point cache baked to disk lies: its own path, or `//blendcache_<file name>/`."""
    if cache.use_external:
        return bpy.path.abspath(cache.filepath)
    blend = Path(bpy.data.filepath)
    return str(blend.parent / f"blendcache_{blend.stem}")


def bake_target(modifier: Any, bake: Any) -> str:
    """Where a Geometry Nodes bake is kept: "PACKED" in the .blend or "DISK".

    Packed bakes (`bake_target`) came after Blender 4.2 LTS: there every bake is on disk.
    """
    own = getattr(bake, "bake_target", "INHERIT")
    return str(own if own != "INHERIT" else getattr(modifier, "bake_target", "DISK"))


def bakes_in_file() -> bool:
    """Whether a Geometry Nodes simulation or bake of the scene is stored in the .blend (only
    the saved file tells whether it holds data: see saved_file_facts)."""
    for obj in bpy.data.objects:
        for mod in obj.modifiers:
            stored = mod.type == "NODES" and any(bake_target(mod, bake) != "DISK" for bake in mod.bakes)
            if stored and _has_simulation(mod.node_group):
                return True
    return False


def prefetch_saved_file() -> None:
    """Start reading the saved file's packed bakes in a worker thread, where the scene has any."""
    if bpy.data.filepath and bakes_in_file():
        saved_file_facts.prefetch(bpy.data.filepath)


def simulations() -> list[dict[str, Any]]:
    """Every physics cache and Geometry Nodes simulation or bake, with whether it is baked."""
    found: list[dict[str, Any]] = []

    def point_cache(obj: Any, what: str, modifier: str, cache: Any) -> None:
        entry = {
            "object": obj.name,
            "modifier": modifier,
            "kind": what,
            "baked": bool(cache.is_baked),
            "folder": "",
        }
        if cache.is_baked and cache.use_disk_cache:
            # Baked to disk: the .blend remembers it even when the files are gone (BAT packs them).
            folder = Path(disk_cache_folder(cache))
            if not folder.is_dir() or not any(folder.glob("*.bphys")):
                entry.update(baked=False, missing=str(folder))
        found.append(entry)

    for obj in bpy.data.objects:
        for mod in obj.modifiers:
            if mod.type in POINT_CACHE_MODIFIERS:
                point_cache(obj, POINT_CACHE_MODIFIERS[mod.type], mod.name, mod.point_cache)
            elif mod.type == "DYNAMIC_PAINT" and mod.canvas_settings is not None:
                for surface in mod.canvas_settings.canvas_surfaces:
                    point_cache(obj, "dynamic paint", mod.name, surface.point_cache)
            elif mod.type == "FLUID" and mod.fluid_type == "DOMAIN":
                domain = mod.domain_settings
                baked = domain.cache_type != "REPLAY" and bool(domain.has_cache_baked_any)
                folder = bpy.path.abspath(domain.cache_directory)
                found.append(
                    {
                        "object": obj.name,
                        "modifier": mod.name,
                        "kind": "fluid",
                        "baked": baked,
                        "folder": folder,
                        "relative": _relative_to_blend(folder),
                    }
                )
            elif mod.type == "NODES" and _has_simulation(mod.node_group):
                for bake in mod.bakes:
                    target = bake_target(mod, bake)
                    entry: dict[str, Any] = {
                        "object": obj.name,
                        "modifier": mod.name,
                        "kind": "Geometry Nodes",
                    }
                    if target == "DISK":
                        base = bake.directory if bake.use_custom_path else mod.bake_directory
                        folder = os.path.join(bpy.path.abspath(base or "//"), str(bake.bake_id))
                        entry.update(
                            baked=bool(bakes.bake_files(Path(folder))),
                            folder=folder,
                            relative=_relative_to_blend(folder),
                        )
                    else:  # only these need the saved file read (once per version of it)
                        packed = saved_file_facts.packed_bakes(bpy.data.filepath) if bpy.data.filepath else {}
                        entry.update(baked=bake.bake_id in packed.get(obj.name, set()), folder="")
                    found.append(entry)
        for system in obj.particle_systems:
            settings = system.settings
            dynamic = settings.type == "EMITTER" or getattr(settings, "use_hair_dynamics", False)
            if dynamic and settings.physics_type != "NO":
                point_cache(obj, "particles", system.name, system.point_cache)
    for scene in bpy.data.scenes:
        world = scene.rigidbody_world
        if world is not None and world.collection is not None and world.enabled:
            found.append(
                {
                    "object": f"{scene.name} (rigid body world)",
                    "modifier": "",
                    "kind": "rigid body",
                    "baked": bool(world.point_cache.is_baked),
                    "folder": "",
                }
            )
    return found


def environment_fingerprint(scene: Any, used: list[str]) -> dict[str, Any]:
    import addon_utils

    return fingerprint.collect(bpy, addon_utils, scene, [m.rsplit(".", 1)[-1] for m in used])
