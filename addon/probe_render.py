"""Runs inside Blender on the artist's machine, in its own process, on a saved copy of the
scene: renders one small centred tile at reduced samples and prints how long it took (with
Cycles on the CPU, or with the scene's own EEVEE or Workbench, shaders compiled first).

`blender -b COPY.blend --python probe_render.py -- '{"frame": 1, "border": [x0, x1, y0, y1], "samples": 16}'`
prints one line `CLOUDRENDER_PROBE {"seconds": ..., "sync_seconds": ..., "threads": ...}`.
A separate process keeps the artist's Blender responsive and their scene untouched.
"""

from __future__ import annotations

import json
import sys
import time

import bpy

OPENGL_ENGINES = ("BLENDER_EEVEE", "BLENDER_EEVEE_NEXT", "BLENDER_WORKBENCH")


def main() -> None:
    args = json.loads(sys.argv[sys.argv.index("--") + 1])
    scene = bpy.context.scene
    render = scene.render
    opengl = render.engine in OPENGL_ENGINES  # EEVEE and Workbench are measured as themselves
    if not opengl:
        render.engine = "CYCLES"
    scene.frame_set(int(args["frame"]))
    render.use_border = True
    render.use_crop_to_border = True
    render.border_min_x, render.border_max_x, render.border_min_y, render.border_max_y = args["border"]
    warm_up = 0.0
    if opengl:
        if render.engine != "BLENDER_WORKBENCH":
            scene.eevee.taa_render_samples = int(args["samples"])
        # Shader compilation happens once per scene, not per frame: a first render pays it,
        # and it is reported as the set-up time; the second render is the frame's own time.
        started = time.perf_counter()
        bpy.ops.render.render(write_still=False)
        warm_up = time.perf_counter() - started
    else:
        scene.cycles.samples = int(args["samples"])
        scene.cycles.device = "CPU"  # the estimate scales from the artist's CPU
        if args.get("fixed_samples"):  # a still split by samples renders every sample
            scene.cycles.use_adaptive_sampling = False
    first_sample: list[float] = []

    def on_stats(stats: str, *_rest: object) -> None:
        if not first_sample and "Sample" in str(stats):
            first_sample.append(time.perf_counter())

    bpy.app.handlers.render_stats.append(on_stats)
    started = time.perf_counter()
    bpy.ops.render.render(write_still=False)
    seconds = time.perf_counter() - started
    sync = warm_up if opengl else (first_sample[0] - started) if first_sample else 0.0
    threads = render.threads if render.threads_mode == "FIXED" else 0
    print(
        "CLOUDRENDER_PROBE "
        + json.dumps({"seconds": seconds, "sync_seconds": sync, "threads": threads, "engine": render.engine}),
        flush=True,
    )


main()
