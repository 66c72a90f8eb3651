"""The facts about the artist's scene and file that the preflight judges, as one typed object.

The add-on (`addon/scene_facts.py`, which imports bpy) fills it from the open scene; this side
never sees bpy, so every check is tested without Blender. The lists hold small plain records
(what a property, a driver or a missing file was found on), as read, for the panel's words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict


class AddonUse(TypedDict):
    """An add-on the file needs: its module ("" when not known) and where it is used."""

    module: str
    used_by: str


class ScriptNeed(TypedDict):
    """A Python driver or registered text block, which only runs with Auto Run on."""

    kind: str  # "driver" or "text"
    name: str


class MissingFile(TypedDict):
    path: str
    used_by: str
    looked_in: str


@dataclass
class SceneFacts:
    """One scene and its file as the preflight sees them (defaults: what an unknown fact reads as)."""

    blender_version: str = ""
    blend_path: str = ""
    is_saved: bool = False
    scene: str = ""
    render_engine: str = ""
    cycles_device: str | None = None  # Cycles' device, when Cycles renders
    output_path: str = ""
    file_format: str = ""
    is_movie: bool = False
    frame_start: int = 1
    frame_end: int = 0
    frame_step: int = 1
    resolution_x: int = 0
    resolution_y: int = 0
    resolution_percentage: int = 100
    addons_used: list[AddonUse] = field(default_factory=list)
    addons_enabled: list[dict[str, Any]] = field(default_factory=list)  # addon/farm_facts.enabled_user_addons
    simulations: list[dict[str, Any]] = field(default_factory=list)  # addon/farm_facts.simulations
    fingerprint: dict[str, Any] = field(default_factory=dict)  # cloud/machine/fingerprint.collect
    auto_run_needed: list[ScriptNeed] = field(default_factory=list)
    auto_run_enabled: bool = False
    ocio_env: str | None = None  # $OCIO, when a custom colour config is set
    missing_files: list[MissingFile] = field(default_factory=list)
