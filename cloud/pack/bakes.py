"""Simulation and bake caches: which are baked, and which folders the pack must carry.

Blender's Python API says whether a point cache (cloth, soft body, particles, dynamic paint,
rigid bodies) or a fluid domain is baked, but not whether a Geometry Nodes bake packed into
the .blend holds data. The file does: each `NodesModifierBake` in it has a `packed` pointer,
set once the bake is packed, read here with BAT from the saved file. Bakes written to disk
lie in `<bake directory>/<bake id>/` (`meta/` and `blobs/`); BAT does not trace them, so the
folders that exist are added to the pack here, at the same place relative to the .blend.
"""

from __future__ import annotations

from pathlib import Path

from blender_asset_tracer import blendfile


def packed_bakes(blend: Path) -> dict[str, set[int]]:
    """Object name -> ids of its Geometry Nodes bakes that hold packed data, read from `blend`."""
    found: dict[str, set[int]] = {}
    bfile = blendfile.BlendFile(blend)
    try:
        for obj in bfile.find_blocks_from_code(b"OB"):
            name = (obj.id_name or b"")[2:].decode("utf-8", "replace")
            pointer = obj.get((b"modifiers", b"first"))
            while pointer:
                modifier = bfile.dereference_pointer(pointer)
                if modifier is None:
                    break
                if modifier.dna_type_name == "NodesModifierData":
                    count = int(modifier.get(b"bakes_num", default=0) or 0)  # none before Blender 4.1
                    array = bfile.dereference_pointer(modifier.get(b"bakes")) if count else None
                    for i in range(min(count, array.count) if array is not None else 0):
                        assert array is not None
                        if array.get(b"packed", array_index=i):
                            found.setdefault(name, set()).add(int(array.get(b"id", array_index=i)))
                pointer = modifier.get((b"modifier", b"next"))
    finally:
        bfile.close()
    return found


def bake_files(folder: Path) -> list[Path]:
    """The files of one bake folder (`<dir>/<bake id>/`), empty if it was never baked."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file())


def disk_bake_inputs(bakes: list[dict[str, str]], blend_dir_in_pack: str) -> dict[str, Path]:
    """Job-relative path -> local file for every disk bake inside the project.

    `bakes` are the scene facts' simulations with a "folder" (absolute) and "relative" (the
    folder relative to the .blend, "" when outside it); `blend_dir_in_pack` is where the .blend
    lies in the pack ("" at its root).
    """
    found: dict[str, Path] = {}
    prefix = blend_dir_in_pack.strip("/")
    for bake in bakes:
        relative = bake.get("relative", "")
        if not relative or not bake.get("folder"):
            continue
        root = Path(bake["folder"])
        for path in bake_files(root):
            rel = "/".join(
                [p for p in (prefix, relative.strip("/")) if p] + list(path.relative_to(root).parts)
            )
            found[rel] = path
    return found
