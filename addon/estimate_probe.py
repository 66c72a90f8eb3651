"""The local probe behind the price estimate: a test tile rendered in a separate Blender process.

The tile is planned by cloud/cost/estimate.py; the render runs on a saved copy of the scene in its
own process (Blender's binary, or the bpy module through the launcher), so the artist's
Blender stays responsive and their scene is never changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import bpy

from ..cloud.cost.estimate import Probe, local_cpu_speed, plan_probe
from ..cloud.errors import CloudError, ErrorCode
from ..cloud.machine.assemble_movie import egl_environment
from .local_blender import blender_command
from .submit import discard_copy

PROBE_SCRIPT = Path(__file__).resolve().parent / "probe_render.py"


def plan_for(scene: bpy.types.Scene, fixed_samples: bool = False) -> dict[str, Any]:
    """What to render and what it stands for, read on the main thread (cheap). `fixed_samples`:
    Cycles' adaptive sampling off, as a still split by samples renders (so the estimate counts
    every sample the machines will render)."""
    render = scene.render
    scale = render.resolution_percentage / 100
    width, height = int(render.resolution_x * scale), int(render.resolution_y * scale)
    if render.engine.startswith("BLENDER_EEVEE"):
        samples = scene.cloud_render.samples or scene.eevee.taa_render_samples
    elif render.engine == "BLENDER_WORKBENCH":
        samples = 1
    else:
        samples = scene.cloud_render.samples or scene.cycles.samples
    plan = plan_probe(width, height, samples)
    return {
        "frame": scene.frame_current,
        "border": [plan.border_min_x, plan.border_max_x, plan.border_min_y, plan.border_max_y],
        "samples": plan.samples,
        "pixels": plan.pixels,
        "frame_pixels": width * height,
        "frame_samples": samples,
        "fixed_samples": fixed_samples,
    }


def run_probe(blend_copy: Path, plan: dict[str, Any], timeout_s: float = 300) -> Probe:
    """Render the tile in a background Blender (call from a worker thread).

    A copy made by `submit.save_copy` for the probe is removed afterwards, however it went.
    """
    try:
        return _probe(blend_copy, plan, timeout_s)
    finally:
        discard_copy(blend_copy)


def _probe(blend_copy: Path, plan: dict[str, Any], timeout_s: float) -> Probe:
    args = json.dumps({k: plan.get(k) for k in ("frame", "border", "samples", "fixed_samples")})
    command = [*blender_command(), "-b", str(blend_copy), "--python", str(PROBE_SCRIPT), "--", args]
    try:
        env = dict(os.environ)
        if sys.platform.startswith("linux") and not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
            env.update(egl_environment(env)[0])  # EEVEE in a background Blender without a display
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise CloudError(
            "The test render for the estimate did not finish.",
            "Check that the scene renders locally, then press Estimate again.",
            code=ErrorCode.PROBE_FAILED,
            detail=str(error),
        ) from error
    for line in done.stdout.splitlines():
        if line.startswith("CLOUDRENDER_PROBE "):
            measured = json.loads(line.split(" ", 1)[1])
            return Probe(
                seconds=float(measured["seconds"]),
                pixels=int(plan["pixels"]),
                samples=int(plan["samples"]),
                frame_pixels=int(plan["frame_pixels"]),
                frame_samples=int(plan["frame_samples"]),
                local_speed=local_cpu_speed(int(measured.get("threads") or os.cpu_count() or 1)),
                sync_seconds=float(measured.get("sync_seconds") or 0.0),
            )
    raise CloudError(
        "The test render for the estimate failed.",
        "Check that the scene renders locally, then press Estimate again.",
        code=ErrorCode.PROBE_FAILED,
        detail=(done.stderr or done.stdout)[-2000:],
    )
