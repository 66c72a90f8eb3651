"""Benchmark: what a resubmit of a large .blend sends with content-defined chunks, against the whole file.

Makes a scene of embedded meshes (grids of different sizes with noisy heights, ~500 MB by
default) with the bpy it runs under, saves it, saves it again unchanged, moves one object and
saves it a third time (Blender 4.2 writes runtime addresses into every save, so even the
unchanged save differs byte for byte). Each save is chunked with cloud/pack/chunking.py; the
bytes a resubmit sends are those of the chunks the first save did not have. The baseline,
measured on the same files, is today's whole-file upload: a file whose hash changed is sent
whole. Also reports the chunker's speed (MB/s, hashing included) and the chunk count.

    .venv/bin/python bench/chunking.py [--size-mb 500] [--small] [--small-objects N]
    PYTHONPATH=$PWD/.venv-bpy42/lib/python3.11/site-packages .venv/bin/python bench/chunking.py

`--small` is `--size-mb 40`. `--small-objects N` adds N objects with meshes of their own, each
below the size at which a block gets a region of its own (the harder case: their headers and
data share chunks). Ends with one `RESULT` line; ratios are ours / whole file.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a script, not add-on code: make cloud/ importable

import bpy  # noqa: E402
import numpy as np  # noqa: E402

from cloud.pack.chunking import Chunked, ChunkPolicy, chunk_file  # noqa: E402

MB = 1_000_000
BYTES_PER_VERTEX = 110  # a grid's arrays in a .blend (positions, edges, corners, faces, UVs), measured


def build_scene(size_mb: float, seed: int = 3) -> list[str]:
    """Grids of different sizes (so no two meshes share arrays) until about `size_mb` of mesh data."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    rng = np.random.default_rng(seed)
    budget = size_mb * MB
    names = []
    index = 0
    while budget > 0:
        side = int(min(900 + 37 * index, (budget / BYTES_PER_VERTEX) ** 0.5))
        side = max(side, 16)
        bpy.ops.mesh.primitive_grid_add(x_subdivisions=side, y_subdivisions=side + 1, size=10)
        obj = bpy.context.active_object
        obj.name = f"grid_{index:02d}"
        obj.location = (index * 12.0, 0.0, 0.0)
        mesh = obj.data
        co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
        co[2::3] = rng.random(len(mesh.vertices), dtype=np.float32)
        mesh.vertices.foreach_set("co", co)
        mesh.update()
        names.append(obj.name)
        budget -= len(mesh.vertices) * BYTES_PER_VERTEX
        index += 1
    return names


def add_small_objects(count: int, seed: int = 1) -> None:
    """`count` objects, each with its own 642-vertex mesh (about 30 KB of arrays)."""
    if count <= 0:
        return
    rng = np.random.default_rng(seed)
    bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=3)
    base = bpy.context.active_object.data
    for index in range(count):
        mesh = base.copy()
        co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
        mesh.vertices.foreach_set("co", co + rng.random(co.shape[0], dtype=np.float32) * 0.01)
        obj = bpy.data.objects.new(f"small_{index:05d}", mesh)
        bpy.context.scene.collection.objects.link(obj)
        obj.location = (index % 50, index // 50, 5.0)


def save(path: Path) -> Path:
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True, compress=False)
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sent(before: Chunked, after: Chunked) -> int:
    """Bytes of `after`'s chunks that `before` did not have (each new chunk once)."""
    known = {chunk.sha256 for chunk in before.chunks}
    new: dict[str, int] = {}
    for chunk in after.chunks:
        if chunk.sha256 not in known:
            new[chunk.sha256] = chunk.size
    return sum(new.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--size-mb", type=float, default=500.0, help="mesh data in the scene (default 500)")
    parser.add_argument("--small", action="store_true", help="a 40 MB scene")
    parser.add_argument("--small-objects", type=int, default=0, help="add N small objects with own meshes")
    args = parser.parse_args()
    size_mb = 40.0 if args.small else args.size_mb
    policy = ChunkPolicy()
    version = bpy.app.version_string.split()[0]
    with tempfile.TemporaryDirectory(prefix="bench-chunking-") as folder:
        work = Path(folder)
        started = time.perf_counter()
        names = build_scene(size_mb)
        add_small_objects(args.small_objects)
        first = save(work / "first.blend")
        again = save(work / "again.blend")
        target = bpy.data.objects[names[len(names) // 2]]
        target.location.x += 1.5
        moved = save(work / "moved.blend")
        print(
            f"bpy {version}: {len(names)} meshes, {first.stat().st_size / MB:.1f} MB "
            f"(built and saved three times in {time.perf_counter() - started:.1f} s)"
        )

        chunked = {}
        seconds = 0.0
        for path in (first, again, moved):
            t0 = time.perf_counter()
            chunked[path.stem] = chunk_file(path, policy)
            seconds += time.perf_counter() - t0
        total_bytes = sum(p.stat().st_size for p in (first, again, moved))
        speed = total_bytes / MB / seconds
        for name, result in chunked.items():
            sizes = [c.size for c in result.chunks]
            print(
                f"  {name}: {len(sizes)} chunks, min {min(sizes)} avg {sum(sizes) // len(sizes)} max {max(sizes)} bytes"
            )

        # Baseline: a file whose hash changed is sent whole.
        same_unchanged = sha256(first) == sha256(again)
        whole_unchanged = 0 if same_unchanged else again.stat().st_size
        whole_moved = moved.stat().st_size
        ours_unchanged = sent(chunked["first"], chunked["again"])
        ours_moved = sent(chunked["first"], chunked["moved"])
        print(
            f"  unchanged resave: whole file {whole_unchanged / MB:.2f} MB, chunks {ours_unchanged / MB:.2f} MB"
        )
        print(f"  one object moved: whole file {whole_moved / MB:.2f} MB, chunks {ours_moved / MB:.2f} MB")
        print(f"  chunking: {speed:.0f} MB/s over {total_bytes / MB:.0f} MB (hashing included)")
        figures = {
            "bpy": version,
            "blend_mb": f"{whole_moved / MB:.1f}",
            "small_objects": args.small_objects,
            "chunks": len(chunked["moved"].chunks),
            "moved_whole_mb": f"{whole_moved / MB:.2f}",
            "moved_chunked_mb": f"{ours_moved / MB:.2f}",
            "moved_ratio": f"{ours_moved / whole_moved:.4f}",
            "resave_whole_mb": f"{whole_unchanged / MB:.2f}",
            "resave_chunked_mb": f"{ours_unchanged / MB:.2f}",
            "resave_ratio": f"{ours_unchanged / whole_unchanged:.4f}" if whole_unchanged else "n/a",
            "chunk_mb_s": f"{speed:.0f}",
        }
        print("RESULT " + " ".join(f"{key}={value}" for key, value in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
