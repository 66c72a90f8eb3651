"""Benchmark: cloud.packing.pack (BAT trace + pack + hash) against Blender's "Pack Resources" + save.

For every .blend of the shared corpus, and a generated scene with 500 textures (about 1 GB;
`--small` makes it about 10 MB), prints the seconds each approach takes, the ratio
(Pack Resources time / our time; above 1 means we are faster) and how many dependencies each
carried: files in our pack besides the .blend, against data-blocks Pack Resources embedded
(it never carries libraries, caches, image sequences or movie clips). Also: the bytes our pack
writes to disk (only the .blend files it rewrites: every other file is linked, not copied), and
the generated scene packed again with the local hash cache (nothing re-read). Ends with a
`RESULT` line (ratio = Blender's time / ours; written_share = bytes written / bytes packed).

Blender's side runs in fresh bpy processes (one for the safe files, one per file that can
crash Blender 5.0 when opened), timing only pack_all + save, not the file open.

    .venv/bin/python bench/pack.py [--small] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a script, not add-on code: make cloud/ importable

from cloud.errors import CloudError  # noqa: E402
from cloud.pack.hash_cache import HashCache  # noqa: E402
from cloud.pack.packer import pack  # noqa: E402

CORPUS = ROOT.parent / "shared" / "testdata" / "blendfiles"
RISKY = ("smoke_cache",)
TEXTURES = 500

BLENDER_SIDE = r"""
import json, sys, time
from pathlib import Path
import bpy

out, workdir, blends = sys.argv[-1], Path(sys.argv[-2]), sys.argv[1:-2]
results = {}
for i, blend in enumerate(blends):
    bpy.ops.wm.open_mainfile(filepath=blend, load_ui=False)
    # The save our flow needs before packing (a copy of the open scene), timed on its own.
    start = time.perf_counter()
    copy = workdir / f"{i:03d}-copy-{Path(blend).name}"
    bpy.ops.wm.save_as_mainfile(filepath=str(copy), copy=True)
    save_copy = time.perf_counter() - start
    copy.unlink()
    start = time.perf_counter()
    try:
        bpy.ops.file.pack_all()
    except RuntimeError:
        pass  # reports missing files as errors, packs the rest
    target = workdir / f"{i:03d}-{Path(blend).name}"
    bpy.ops.wm.save_as_mainfile(filepath=str(target), copy=True, compress=False)
    seconds = time.perf_counter() - start
    carried = sum(
        1
        for coll in (bpy.data.images, bpy.data.sounds, bpy.data.fonts, bpy.data.volumes)
        for block in coll
        if getattr(block, "packed_file", None) or any(getattr(t, "packed_file", None) for t in getattr(block, "packed_files", []))
    )
    results[blend] = {"seconds": seconds, "carried": carried, "bytes": target.stat().st_size, "save_copy": save_copy}
    target.unlink()
    Path(out).write_text(json.dumps(results))
sys.stdout.flush()
import os
os._exit(0)  # skip teardown: freeing old fluid domains can abort Blender 5.0
"""

MAKE_SCENE = r"""
import sys
from pathlib import Path
import bpy

folder = Path(sys.argv[-1])
bpy.ops.wm.read_factory_settings(use_empty=True)
for path in sorted((folder / "textures").iterdir()):
    img = bpy.data.images.load(str(path), check_existing=False)
    img.use_fake_user = True
bpy.ops.wm.save_as_mainfile(filepath=str(folder / "textures500.blend"), relative_remap=True, compress=False)
"""


def write_bmp(path: Path, side: int) -> None:
    """An uncompressed 32-bit BMP of random pixels: a texture-sized file that costs no encoding time."""
    pixels = side * side * 4
    header = struct.pack("<2sIHHI", b"BM", 54 + pixels, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 32, 0, pixels, 2835, 2835, 0, 0)
    path.write_bytes(header + info + os.urandom(pixels))


def generated_scene(folder: Path, small: bool) -> Path:
    side = 64 if small else 724  # 16 KB or 2 MB per texture
    (folder / "textures").mkdir(parents=True)
    for i in range(TEXTURES):
        write_bmp(folder / "textures" / f"tex_{i:03d}.bmp", side)
    subprocess.run([sys.executable, "-c", MAKE_SCENE, str(folder)], check=True, capture_output=True)
    return folder / "textures500.blend"


def blender_side(blends: list[Path], workdir: Path) -> dict[str, dict]:
    safe = [b for b in blends if not b.name.startswith(RISKY)]
    groups = [safe] + [[b] for b in blends if b.name.startswith(RISKY)]
    results: dict[str, dict] = {}
    for i, group in enumerate(g for g in groups if g):
        out = workdir / f"bl-{i}.json"
        subprocess.run(
            [sys.executable, "-c", BLENDER_SIDE, *map(str, group), str(workdir), str(out)],
            capture_output=True,
            cwd=workdir,
        )
        results.update(json.loads(out.read_text()) if out.exists() else {})
    return results


def written(folder: Path) -> int:
    """Bytes the pack really wrote to disk: its files that are not links to the artist's."""
    total = 0
    for path in folder.rglob("*"):
        st = path.lstat()
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            total += st.st_size
    return total


def ours(blends: list[Path], workdir: Path, hashes: HashCache | None = None) -> dict[str, dict]:
    results: dict[str, dict] = {}
    for i, blend in enumerate(blends):
        start = time.perf_counter()
        try:
            result = pack(blend, workdir / f"pack-{i:03d}", hashes=hashes)
        except CloudError as error:
            results[str(blend)] = {"error": error.message}
            continue
        results[str(blend)] = {
            "seconds": time.perf_counter() - start,
            "carried": len(result.manifest.files) - 1,
            "bytes": result.manifest.total_bytes,
            "missing": len(result.missing),
            "written": written(result.out_dir),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="500 small textures (~10 MB) instead of ~1 GB")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pack-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        scene = generated_scene(work / "generated", args.small)
        print(f"generated {TEXTURES} textures in {time.perf_counter() - t0:.1f}s", flush=True)
        old = time.time() - 60  # saved a minute ago, as an artist's textures are
        for texture in (work / "generated").rglob("*"):
            os.utime(texture, (old, old))
        blends = [*sorted(CORPUS.rglob("*.blend")), scene]
        (work / "ours").mkdir()
        (work / "ours-again").mkdir()
        (work / "blender").mkdir()
        cache = HashCache(work / "hashes.sqlite")
        mine = ours(blends, work / "ours", cache)  # a first submit: the cache is empty
        again = ours([scene], work / "ours-again", cache)[str(scene)]  # a resubmit, nothing changed
        theirs = blender_side(blends, work / "blender")
        print("ours = save a copy + pack(); ratio = (pack_all + save) / ours, above 1 means ours is faster")
        print(
            f"{'file':44} {'copy s':>7} {'pack s':>7} {'deps':>5} {'pack_all s':>10} {'deps':>5} {'ratio':>7}"
        )
        total_ours = total_theirs = 0.0
        deps_ours = deps_theirs = 0
        for blend in blends:
            name = str(blend.relative_to(CORPUS)) if blend.is_relative_to(CORPUS) else blend.name
            a, b = mine.get(str(blend), {}), theirs.get(str(blend), {})
            if "seconds" not in a or "seconds" not in b:
                print(
                    f"{name:44} {a.get('error', '') or b.get('error', '') or 'no result (Blender crashed?)'}"
                )
                continue
            mine_s = a["seconds"] + b["save_copy"]
            total_ours += mine_s
            total_theirs += b["seconds"]
            deps_ours += a["carried"]
            deps_theirs += b["carried"]
            print(
                f"{name:44} {b['save_copy']:7.3f} {a['seconds']:7.3f} {a['carried']:5d} "
                f"{b['seconds']:10.3f} {b['carried']:5d} {b['seconds'] / mine_s:6.2f}x"
            )
        print(
            f"{'total':44} {'':7} {total_ours:7.3f} {deps_ours:5d} {total_theirs:10.3f} {deps_theirs:5d} "
            f"{total_theirs / total_ours:6.2f}x"
        )
        gen_a, gen_b = mine[str(scene)], theirs.get(str(scene), {})
        print(
            f"generated scene: pack() {gen_a['bytes'] / 1e6:.0f} MB in {gen_a['seconds']:.2f}s "
            f"({gen_a['bytes'] / 1e6 / gen_a['seconds']:.0f} MB/s hashed, {gen_a['written'] / 1e6:.2f} MB "
            f"written to disk); pack_all+save {gen_b.get('bytes', 0) / 1e6:.0f} MB in "
            f"{gen_b.get('seconds', 0):.2f}s"
        )
        print(
            f"generated scene packed again, nothing changed: {again['seconds']:.2f}s "
            f"(the hash cache re-reads no texture), {again['written'] / 1e6:.2f} MB written"
        )
        gen_theirs = gen_b.get("seconds", 0.0)
        figures = {
            "ratio": total_theirs / total_ours if total_ours else 0.0,
            "generated_ratio": gen_theirs / (gen_a["seconds"] + gen_b.get("save_copy", 0.0)),
            "generated_again_ratio": gen_theirs / (again["seconds"] + gen_b.get("save_copy", 0.0)),
            "written_mb": gen_a["written"] / 1e6,
            "written_share": gen_a["written"] / max(gen_a["bytes"], 1),
        }
        print("RESULT " + " ".join(f"{key}={value:.3g}" for key, value in figures.items()))


if __name__ == "__main__":
    main()
