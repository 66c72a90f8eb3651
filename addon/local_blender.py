"""How the add-on starts a background Blender on this computer, for the work it keeps out of the
artist's Blender: the estimate's probe, the proof frame, the cost map, a movie made here.

A separate process keeps the artist's Blender responsive and their open scene untouched.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import bpy

from ..cloud.machine import HERE as MACHINE_DIR

# The launcher the render machine uses (it runs a script the same way in the bpy module and in a
# real Blender).
LAUNCHER = Path(MACHINE_DIR) / "blender_launcher.py"
COST_MAP_SCRIPT = Path(__file__).resolve().parent / "cost_map_render.py"


def blender_command() -> list[str]:
    """How to start a background Blender like this one."""
    binary = bpy.app.binary_path
    if binary and os.path.basename(binary).lower().startswith("blender"):
        return [binary]
    # The bpy module (tests, the demo): the launcher accepts Blender's flags.
    return [sys.executable, str(LAUNCHER)]


def cost_map_command(blend_copy: Path, render_engine: str) -> list[str]:
    """How the job thread starts the cost map's Blender on the job's copy (cloud/cost/cost_map.py
    appends its plan after `--`): Cycles only, whose frames differ most; [] for other engines."""
    if render_engine != "CYCLES":
        return []
    return [*blender_command(), "-b", str(blend_copy), "--python", str(COST_MAP_SCRIPT), "--"]
