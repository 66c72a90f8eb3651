"""Runs inside Blender on the artist's machine, in its own process, on the job's saved copy:
renders some of the shot's frames very small and short and prints how long each took, so that
a first submission on many machines hands out its longest frames first (cloud/cost/cost_map.py).

`blender -b COPY.blend --python cost_map_render.py -- '{"frames": [1, 24, 12], "long_side": 128, "samples": 16}'`
prints, per frame as it ends, `CLOUDRENDER_COSTMAP {"frame": 1, "seconds": 0.41}`, then
`CLOUDRENDER_COSTMAP {"done": true}`; or `{"error": "..."}` when the scene is not Cycles.
A frame's time is the CPU time of its evaluation (frame_set: animation, modifiers, simulations)
and its render (sync, BVH, sampling), as on the machine; the first frame is rendered once untimed, so
kernel loading and shader compilation, paid once per job, are not counted against it. A frame
that renders in under REPEAT_UNDER_S is rendered again and the shorter time kept: at a few
hundredths of a second a cache or scheduler hiccup would otherwise outweigh the frame's own cost.
Only the copy's settings in memory change; nothing is saved or written.
"""

from __future__ import annotations

import json
import sys
import time

import bpy

MARK = "CLOUDRENDER_COSTMAP "
REPEAT_UNDER_S = 0.5


def say(**data: object) -> None:
    print(MARK + json.dumps(data), flush=True)


def timed(scene: bpy.types.Scene, frame: int) -> float:
    """CPU seconds (all of Blender's threads) to evaluate the frame and render it, nothing written.

    CPU time, not the clock: the artist's computer is busy with other work while the map renders
    (the upload, the artist's own programs), and the clock would count their share against
    whichever frame it fell on; the CPU time a frame takes is its own work."""
    started = time.process_time()
    scene.frame_set(frame)
    bpy.ops.render.render(write_still=False)
    return time.process_time() - started


def main() -> None:
    args = json.loads(sys.argv[sys.argv.index("--") + 1])
    scene = bpy.context.scene
    render = scene.render
    if render.engine != "CYCLES":
        say(error=f"the cost map renders Cycles scenes only, not {render.engine}")
        return
    # Small and short, with the shot's own geometry, shaders, lights and light paths: what makes
    # one frame cost more than another stays in; what costs the same on every frame goes.
    scale = render.resolution_percentage / 100
    width, height = render.resolution_x * scale, render.resolution_y * scale
    shrink = min(1.0, float(args["long_side"]) / max(width, height, 1))
    render.resolution_x = max(4, round(width * shrink))
    render.resolution_y = max(4, round(height * shrink))
    render.resolution_percentage = 100
    render.use_compositing = False
    render.use_sequencer = False
    render.use_persistent_data = False
    cycles = scene.cycles
    cycles.device = "CPU"
    cycles.samples = max(1, min(int(cycles.samples), int(args["samples"])))
    cycles.use_adaptive_sampling = False
    cycles.use_denoising = False
    cycles.time_limit = 0.0
    frames = [int(frame) for frame in args["frames"]]
    if not frames:
        say(done=True)
        return
    scene.frame_set(frames[0])
    bpy.ops.render.render(write_still=False)  # kernels and shaders: paid once, not per frame
    for frame in frames:
        seconds = timed(scene, frame)
        if seconds < REPEAT_UNDER_S:
            seconds = min(seconds, timed(scene, frame))
        say(frame=frame, seconds=round(seconds, 4))
    say(done=True)


main()
