"""Open packed .blend files in a fresh bpy process and report every external path and whether it resolves.

Usage: python pack_check.py OUT.json BLEND [BLEND ...]

Run with the working directory somewhere unrelated to the packs, so a relative path that only
works from the original folder shows up as unresolved. Each file is opened with
`load_ui=False`; the process never simulates (no frame change), which keeps fluid caches from
running their solver. One JSON object per blend: {"paths": [{"path", "abs", "exists"}], "error"}.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import bpy


def check(blend: str) -> dict:
    bpy.ops.wm.open_mainfile(filepath=blend, load_ui=False)
    found = []
    # Blender's own bundled assets (brushes) are not the scene's dependencies.
    install = str(Path(bpy.utils.system_resource("DATAFILES")).parent)
    # Paths of linked data-blocks are relative to their library, not to the opened file.
    owners = {
        block.filepath: block.library
        for coll in (
            bpy.data.images,
            bpy.data.movieclips,
            bpy.data.sounds,
            bpy.data.fonts,
            bpy.data.cache_files,
        )
        for block in coll
        if block.library is not None
    }
    for path in sorted(bpy.utils.blend_paths(absolute=False, packed=False, local=False)):
        absolute = bpy.path.abspath(path, library=owners.get(path))
        if absolute.startswith(install):
            continue
        if any(token in absolute for token in ("<UDIM>", "<UVTILE>", "*")):
            exists = any(
                Path(absolute).parent.glob(
                    Path(absolute).name.replace("<UDIM>", "*").replace("<UVTILE>", "*")
                )
            )
        else:
            exists = Path(absolute).exists()
        found.append({"path": path, "abs": absolute, "exists": exists})
    libraries = [
        {
            "path": lib.filepath,
            "abs": bpy.path.abspath(lib.filepath),
            "exists": Path(bpy.path.abspath(lib.filepath)).exists(),
        }
        for lib in bpy.data.libraries
        if not bpy.path.abspath(lib.filepath).startswith(install)
    ]
    packed = sorted(img.name for img in bpy.data.images if img.packed_file)
    return {"paths": found, "libraries": libraries, "packed": packed}


def main() -> None:
    out, blends = sys.argv[1], sys.argv[2:]
    report: dict[str, dict] = {}
    for blend in blends:
        try:
            report[blend] = check(blend)
        except Exception as exc:
            report[blend] = {"error": f"{type(exc).__name__}: {exc}"}
        Path(out).write_text(json.dumps(report, indent=1))
    # Skip Blender's teardown: freeing some fluid domains aborts the process after the work is done.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
