"""Which of the artist's add-ons travel with a job, and where their files go in the pack.

The add-on side (`addon/scene_facts.py`) describes every enabled add-on as plain values; this
module decides, without Blender, which of those the scene uses and can travel: pure Python
ones do; one with compiled parts for another platform, or one bringing wheels, stays home with
a plain reason the preflight shows. This extension itself never travels (the machine has its
own worker). Files travel content-addressed like every other input, under
`contract.ADDONS_DIR` laid out as Blender's user resources, so that the machine's Blender
finds them through `BLENDER_USER_RESOURCES`. Extensions go into the `user_default` repository
there, whatever repository they came from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..machine.contract import ADDONS_DIR, ContractError, clean_text, safe_relative_path

COMPILED_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
# Compiled parts the Linux x86-64 machine can load (with Blender's Python 3.11 or 3.13).
MACHINE_TAGS = ("x86_64-linux-gnu", "abi3")
SKIPPED_DIRS = {"__pycache__", ".git", ".svn", ".hg"}
MAX_ADDON_BYTES = 200 * 1024 * 1024
MACHINE_REPO = "user_default"


@dataclass(frozen=True)
class EnabledAddon:
    """One enabled add-on as the add-on side sees it (plain values, no bpy)."""

    module: str  # "my_addon" or "bl_ext.<repo>.<id>"
    path: str  # its package folder, or its single .py file
    version: str = ""
    preferences: dict[str, Any] = field(default_factory=dict)
    wheels: list[str] = field(default_factory=list)  # an extension's manifest wheels

    @property
    def short(self) -> str:
        return self.module.rsplit(".", 1)[-1]

    @property
    def is_extension(self) -> bool:
        return self.module.startswith("bl_ext.")


@dataclass(frozen=True)
class TravellingAddon:
    module: str  # the module name on the machine
    version: str
    preferences: dict[str, Any]
    files: dict[str, Path]  # job-relative path -> local file

    def spec_entry(self) -> dict[str, Any]:
        return {"module": self.module, "version": self.version, "preferences": dict(self.preferences)}


@dataclass
class AddonPlan:
    travel: list[TravellingAddon] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # module -> why it cannot travel

    @property
    def files(self) -> dict[str, Path]:
        return {rel: local for addon in self.travel for rel, local in addon.files.items()}

    @property
    def travelling_modules(self) -> set[str]:
        return {a.module.rsplit(".", 1)[-1] for a in self.travel}


def _files_of(addon: EnabledAddon) -> dict[str, Path]:
    """Relative path inside the add-on -> local file, without caches and version control."""
    root = Path(addon.path)
    if root.is_file():
        return {root.name: root}
    found = {}
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if path.is_file() and not SKIPPED_DIRS & set(parts):
            found["/".join(parts)] = path
    return found


def machine_loads(name: str) -> bool:
    """A compiled file the Linux x86-64 machine's Python can import."""
    return name.endswith(".so") and any(tag in name for tag in MACHINE_TAGS)


def _leaves_folder(root: Path, path: Path) -> bool:
    """Whether `path` (a file found under `root`) is, or reaches through, a link out of `root`."""
    try:
        return not path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a link loop
        return True


def unsafe_file(addon: EnabledAddon, files: dict[str, Path]) -> str:
    """Why one of the add-on's files must not travel, naming it, or "": a link that leads out
    of the add-on's folder (a linked ~/.aws/credentials would be uploaded as the link's name),
    or a name the machine would refuse after the upload (a backslash, a control character)."""
    root = Path(addon.path)
    for rel, path in files.items():
        try:
            safe_relative_path(rel)
        except ContractError:
            return (
                f"its file {clean_text(rel, 200)} has a name the render machine cannot use (a backslash or a "
                "control character); rename it."
            )
        if root.is_dir() and _leaves_folder(root, path):
            return (
                f"its file {rel} is a link to a file outside the add-on's folder, which is not sent; "
                "copy the file into the add-on's folder instead of linking it."
            )
    return ""


def why_not(addon: EnabledAddon, files: dict[str, Path]) -> str:
    """Why this add-on cannot travel, in one sentence, or ""."""
    unsafe = unsafe_file(addon, files)
    if unsafe:
        return unsafe
    if addon.wheels:
        return (
            f"it brings Python wheels ({', '.join(addon.wheels[:3])}), which are not sent to the machine yet."
        )
    foreign = [rel for rel in files if rel.endswith(COMPILED_SUFFIXES) and not machine_loads(rel)]
    if foreign:
        return (
            f"it has compiled parts built for another system ({', '.join(foreign[:3])}); "
            "the Linux render machine cannot load them."
        )
    size = sum(path.stat().st_size for path in files.values())
    if size > MAX_ADDON_BYTES:
        return f"it is {size / 1e6:.0f} MB, over the {MAX_ADDON_BYTES / 1e6:.0f} MB an add-on may bring."
    if not files:
        return "its files were not found on this computer."
    return ""


def plan_addons(enabled: list[EnabledAddon], used: set[str], own_package: str) -> AddonPlan:
    """The add-ons of `enabled` that the scene `used` (module names) and that can travel.

    Blender's bundled add-ons (Cycles, the importers) are on the machine already: only those
    installed by the artist (their path is not under Blender's own scripts) are considered,
    which the caller ensures by passing only user add-ons.
    """
    plan = AddonPlan()
    for addon in enabled:
        if addon.module == own_package or addon.module not in used:
            continue
        files = _files_of(addon)
        reason = why_not(addon, files)
        if reason:
            plan.refused[addon.module] = reason
            continue
        if addon.is_extension:
            base = f"{ADDONS_DIR}/extensions/{MACHINE_REPO}/{addon.short}"
            module = f"bl_ext.{MACHINE_REPO}.{addon.short}"
        elif Path(addon.path).is_file():
            base, module = f"{ADDONS_DIR}/scripts/addons", addon.module
        else:
            base, module = f"{ADDONS_DIR}/scripts/addons/{addon.module}", addon.module
        plan.travel.append(
            TravellingAddon(
                module=module,
                version=addon.version,
                preferences=dict(addon.preferences),
                files={f"{base}/{rel}": path for rel, path in files.items()},
            )
        )
    return plan
