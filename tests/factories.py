"""Plain builders for what many tests set up: one place knows every field a job record needs,
so that a test names only the fields its check is about."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cloud.job.records import JobRecord, engine_name_for, new_job_id


def job_fields(output_dir: Path | str, **changes: Any) -> dict[str, Any]:
    """A one-frame job on a CPU machine, well under its caps, as keyword arguments: for the
    installed add-on's own JobRecord class (`records.JobRecord(**job_fields(...))`), which is
    not the one this checkout's cloud/ defines."""
    return {
        "job_id": new_job_id(),
        "blend_name": "/p/shot.blend",
        "scene_name": "Scene",
        "region": "us-east-1",
        "instance_type": "c5.2xlarge",
        "spot": False,
        "frames": [1],
        "output_dir": str(output_dir),
        "price_per_hour": 0.34,
        "max_cost": 5.0,
        "max_hours": 2.0,
        # where its machines run, as a submit chooses it for that many machines
        "cloud_engine": engine_name_for(int(changes.get("machines", 1))).value,
        **changes,
    }


def job_record(output_dir: Path | str, **changes: Any) -> JobRecord:
    """`job_fields` as a record of this checkout's cloud/."""
    return JobRecord(**job_fields(output_dir, **changes))


# The start of a scene script run in a fresh Blender (`python -c SCRIPT args...`): an empty file,
# and write_png(path, rgba), a 4x4 PNG of one colour written with Blender's own image API.
SCENE_SCRIPT_START = r"""
import sys
from pathlib import Path
import bpy

bpy.ops.wm.read_factory_settings(use_empty=True)

def write_png(path, color):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = bpy.data.images.new(path.stem, 4, 4)
    img.pixels[:] = list(color) * 16
    img.filepath_raw = str(path)
    img.file_format = "PNG"
    img.save()
    bpy.data.images.remove(img)
"""


# For a scene script: checker_texture(folder), a 16x16 colour grid saved as
# folder/textures/checker.png and referenced relative to a .blend saved in folder.
CHECKER_TEXTURE = r"""
import os
import bpy

def checker_texture(folder):
    os.makedirs(os.path.join(folder, "textures"), exist_ok=True)
    image = bpy.data.images.new("checker", 16, 16)
    image.generated_type = "COLOR_GRID"
    image.filepath_raw = os.path.join(folder, "textures", "checker.png")
    image.file_format = "PNG"
    image.save()
    image.filepath = "//textures/checker.png"
    return image
"""
