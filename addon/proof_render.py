"""Runs inside Blender on the artist's machine, in its own process, on the artist's saved file:
renders one frame small for the proof beside the cloud's frame.

`blender -b FILE.blend --python proof_render.py -- '{"frame": 1, "percentage": 50, "samples": 8, "out": "/x.png"}'`
prints `CLOUDRENDER_PROOF {"path": ...}`. The scene's camera, colour management and add-ons
stay as the artist has them; only the size, samples and output change (never saved).
"""

from __future__ import annotations

import json
import sys

import bpy


def main() -> None:
    args = json.loads(sys.argv[sys.argv.index("--") + 1])
    scene = bpy.context.scene
    render = scene.render
    scene.frame_set(int(args["frame"]))
    render.resolution_percentage = max(1, int(args["percentage"]))
    if args.get("samples") and render.engine == "CYCLES":
        scene.cycles.samples = int(args["samples"])
    if render.engine == "CYCLES":
        scene.cycles.device = "CPU"
    render.image_settings.file_format = "PNG"
    render.filepath = args["out"]
    render.use_file_extension = False
    bpy.ops.render.render(write_still=True)
    print("CLOUDRENDER_PROOF " + json.dumps({"path": args["out"]}), flush=True)


main()
