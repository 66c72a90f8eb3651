"""Runs inside Blender on the artist's machine, in its own process, on a saved copy of the
scene: renders one small centred tile at reduced samples and prints how long it took.

`blender -b COPY.blend --python probe.py -- '{"frame": 1, "border": [x0, x1, y0, y1], "samples": 16}'`
prints one line `CLOUDRENDER_PROBE {"seconds": ..., "sync_seconds": ..., "threads": ...}`.
A separate process keeps the artist's Blender responsive and their scene untouched.
"""

from __future__ import annotations

import json
import sys
import time

import bpy


def main() -> None:
    args = json.loads(sys.argv[sys.argv.index("--") + 1])
    scene = bpy.context.scene
    render = scene.render
    render.engine = "CYCLES"
    scene.frame_set(int(args["frame"]))
    render.use_border = True
    render.use_crop_to_border = True
    render.border_min_x, render.border_max_x, render.border_min_y, render.border_max_y = args["border"]
    scene.cycles.samples = int(args["samples"])
    scene.cycles.device = "CPU"  # the estimate scales from the artist's CPU
    first_sample: list[float] = []

    def on_stats(stats: str, *_rest: object) -> None:
        if not first_sample and "Sample" in str(stats):
            first_sample.append(time.perf_counter())

    bpy.app.handlers.render_stats.append(on_stats)
    started = time.perf_counter()
    bpy.ops.render.render(write_still=False)
    seconds = time.perf_counter() - started
    sync = (first_sample[0] - started) if first_sample else 0.0
    threads = render.threads if render.threads_mode == "FIXED" else 0
    print(
        "CLOUDRENDER_PROBE " + json.dumps({"seconds": seconds, "sync_seconds": sync, "threads": threads}),
        flush=True,
    )


main()
