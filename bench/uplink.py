"""Benchmark: one realistic project over a home-sized uplink (issue 25, "Fewer bytes on the
artist's uplink"): ours against `aws s3 cp --recursive` and AWS Deadline Cloud's job attachments.

The project is made here with the bpy module it runs under: a mesh-heavy .blend saved without
Compress (12 sculpt-like meshes: Suzannes and ico spheres, subdivided, displaced by a clouds
texture, applied), textures (PNGs of noise: incompressible, as photographs nearly are) and a
particle system's point cache baked to disk (.bphys, Blender's own files). About 200 MB in all;
`--small` makes about 35 MB (its .blend, 24 MB, under the 32 MiB at which a .blend is chunked).

Each tool sends the whole project to an empty bucket of the emulated S3 (moto server) through
the TCP relay of dev/relay.py, its `SlowLink` pacing the bytes towards the account at
`--mbit` (50 Mbit/s, 6.25 MB/s: a home fibre or good cable uplink), shared by every connection;
replies come back at full speed. Then again straight to the emulator (unpaced: this computer's
loopback, where CPU, not the link, is the limit).

- ours: the product's path: each file hashed (the .blend, 32 MiB or more, cut into its
  content-defined chunks as the packer does), then cloud.aws.uploads.upload_files, which judges
  each file and chunk, compresses what pays and sends;
- the AWS CLI: `aws s3 cp --recursive` of the folder (the dev venv's CLI);
- Deadline Cloud's job attachments: hash into its cache, upload (bench/vs_deadline/, in the
  bench-only venv bench/upload.py makes; `--no-deadline` leaves it out).

The RESULT line: `uplink_vs_cli` (ours' time / the CLI's, paced; the goal is 0.5 or less),
`uplink_vs_deadline` (ours / Deadline's, paced), `bytes_sent_ratio` (bytes ours put on the paced
link, request headers and HEADs included / the project's bytes), and the same two time ratios
unpaced (`unpaced_vs_cli`, `unpaced_vs_deadline`).

    .venv/bin/python bench/uplink.py [--small] [--mbit 50] [--no-deadline] [--no-unpaced]
"""

from __future__ import annotations

import argparse
import random
import shutil
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a script, not add-on code: make cloud/, dev/ and bench/ importable

from bench import upload as upload_bench  # noqa: E402
from cloud.aws.session import AwsSettings  # noqa: E402
from cloud.aws.uploads import ChunkSource, LinkMeter, UploadResult, hash_file, upload_files  # noqa: E402
from cloud.pack.chunking import ChunkPolicy, chunk_file  # noqa: E402
from dev.aws_emulator import moto_server  # noqa: E402
from dev.relay import SlowLink  # noqa: E402

MB = 1_000_000
KEY_ID, SECRET = upload_bench.KEY_ID, upload_bench.SECRET


# --- the project -----------------------------------------------------------------------------
# Subdivision levels of the 12 meshes (6 Suzannes, 6 ico spheres of `ico_base` subdivisions);
# textures (count, side in pixels, RGBA); the point cache (particles, frames).
SIZES = {
    "full": {"monkey": 4, "ico": 3, "ico_base": 4, "textures": (5, 1448), "cache": (40_000, 90)},
    "small": {"monkey": 3, "ico": 2, "ico_base": 3, "textures": (3, 640), "cache": (10_000, 60)},
}


def make_project(root: Path, size: str) -> None:
    """scene.blend (uncompressed), textures/*.png, blendcache_scene/*.bphys under `root`."""
    import bpy

    spec = SIZES[size]
    root.mkdir(parents=True, exist_ok=True)
    blend = root / "scene.blend"
    bpy.ops.wm.read_factory_settings(use_empty=True)
    detail = bpy.data.textures.new("detail", "CLOUDS")
    detail.noise_scale = 0.3
    for index in range(12):
        if index % 2 == 0:
            bpy.ops.mesh.primitive_monkey_add()
            level = spec["monkey"]
        else:
            bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=spec["ico_base"])
            level = spec["ico"]
        obj = bpy.context.active_object
        obj.name = f"sculpt_{index:02d}"
        obj.location = (index * 3.0, 0.0, 0.0)
        subsurf = obj.modifiers.new("subdivide", "SUBSURF")
        subsurf.levels = subsurf.render_levels = level
        displace = obj.modifiers.new("detail", "DISPLACE")
        displace.texture = detail
        displace.strength = 0.03 + 0.01 * index  # no two meshes alike
        depsgraph = bpy.context.evaluated_depsgraph_get()
        mesh = bpy.data.meshes.new_from_object(obj.evaluated_get(depsgraph))
        old = obj.data
        obj.modifiers.clear()
        obj.data = mesh
        bpy.data.meshes.remove(old)
    # A particle spray baked to disk: the .blend must be saved first (the cache lies beside it).
    bpy.ops.mesh.primitive_plane_add(size=4, location=(0.0, -6.0, 0.0))
    emitter = bpy.context.active_object
    emitter.name = "spray"
    particles = emitter.modifiers.new("spray", "PARTICLE_SYSTEM").particle_system
    count, frames = spec["cache"]
    settings = particles.settings
    settings.count = count
    settings.frame_start, settings.frame_end = 1, frames * 2 // 3
    settings.lifetime = frames * 2
    settings.normal_factor = 2.0
    settings.factor_random = 0.5
    settings.use_rotations = True
    settings.angular_velocity_mode = "RAND"
    bpy.context.scene.frame_start, bpy.context.scene.frame_end = 1, frames
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), compress=False)
    cache = particles.point_cache
    cache.use_disk_cache = True
    with bpy.context.temp_override(scene=bpy.context.scene, point_cache=cache):
        bpy.ops.ptcache.bake(bake=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), compress=False)
    bpy.ops.wm.read_factory_settings(use_empty=True)  # let the meshes' memory go
    blend.with_suffix(".blend1").unlink(missing_ok=True)  # the second save's backup: never packed
    rng = random.Random(5)
    textures, side = spec["textures"]
    for index in range(textures):
        write_noise_png(root / "textures" / f"texture_{index:02d}.png", side + 16 * index, rng)


def write_noise_png(path: Path, side: int, rng: random.Random) -> None:
    """An RGBA PNG of noise (its pixel rows stored, not deflated: noise does not deflate)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + rng.randbytes(side * 4) for _ in range(side))
    header = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 0))
        + chunk(b"IEND", b"")
    )


def project_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# --- the three senders ---------------------------------------------------------------------
hash_seconds: list[float] = []  # ours' hashing (and chunking) time, each run
link_rates: list[float | None] = []  # the link as ours measured it, each run


def ours(settings: AwsSettings, bucket: str, root: Path) -> UploadResult:
    """Hash (the .blend into its chunks, as the packer does), then the product's upload."""
    start = time.perf_counter()
    policy = ChunkPolicy()
    triples: list[tuple[Path | str, str, int]] = []
    pieces: list[ChunkSource] = []
    for path in project_files(root):
        size = path.stat().st_size
        if path.suffix == ".blend" and size >= policy.threshold:
            found = chunk_file(path, policy)
            if found.chunks:
                offset = 0
                for piece in found.chunks:
                    pieces.append(ChunkSource(path, offset, piece.size, piece.sha256))
                    offset += piece.size
                continue
        triples.append((path, hash_file(path), size))
    hash_seconds.append(time.perf_counter() - start)
    meter = LinkMeter()
    result = upload_files(settings, bucket, triples, chunks=pieces, link=meter)
    link_rates.append(meter.rate())
    return result


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def run_all(
    label: str,
    url: str,
    moto_url: str,
    settings: AwsSettings,
    root: Path,
    work: Path,
    count: Callable[[], int],
) -> dict[str, tuple[float, int]]:
    """Each tool once, to an empty bucket through `url`: {tool: (seconds, bytes on the link)}."""
    size = sum(p.stat().st_size for p in project_files(root))
    files = len(project_files(root))
    via = replace(settings, endpoint_url=url)
    times: dict[str, tuple[float, int]] = {}

    bucket = upload_bench.fresh_bucket(settings, moto_url)
    before = count()
    seconds, result = timed(lambda: ours(via, bucket, root))
    assert isinstance(result, UploadResult)
    times["ours"] = (seconds, count() - before)
    print(
        f"{label} ours (hash, judge, compress, send): {seconds:6.2f} s  {size / MB / seconds:6.1f} MB/s "
        f"(file bytes on the wire {result.wire_bytes / MB:.1f} MB of {size / MB:.1f}; "
        f"{len(result.encodings)} objects compressed, "
        + ", ".join(
            f"{n} at level {lv}" for lv, n in sorted(Counter(getattr(result, "levels", {}).values()).items())
        )
        + f"; {len(result.chunks_uploaded)} chunks; hashing and chunking {hash_seconds[-1]:.2f} s; "
        + (f"link measured at {link_rates[-1] / MB:.1f} MB/s)" if link_rates[-1] else "link not measured)"),
        flush=True,
    )

    bucket = upload_bench.fresh_bucket(settings, moto_url)
    before = count()
    seconds, sent = upload_bench.cli(["s3", "cp", "--recursive", str(root), f"s3://{bucket}/job/"], url, work)
    assert sent == files, (sent, files)
    times["cli"] = (seconds, count() - before)
    print(
        f"{label} aws s3 cp --recursive:              {seconds:6.2f} s  {size / MB / seconds:6.1f} MB/s",
        flush=True,
    )

    if upload_bench.with_deadline:
        bucket = upload_bench.fresh_bucket(settings, moto_url)
        cache = Path(tempfile.mkdtemp(prefix="deadline-cache-", dir=work))
        before = count()
        run = upload_bench.deadline_submit(root, bucket, url, cache)
        assert run["uploaded_files"] == files, run
        times["deadline"] = (float(run["seconds"]), count() - before)
        print(
            f"{label} Deadline Cloud job attachments:         {run['seconds']:6.2f} s  "
            f"{size / MB / run['seconds']:6.1f} MB/s (hashing {run['hash_seconds']:.2f} s)",
            flush=True,
        )
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", action="store_true", help="about 35 MB instead of 200 MB")
    parser.add_argument("--mbit", type=float, default=50.0, help="the paced uplink, Mbit/s (50)")
    parser.add_argument(
        "--no-deadline", action="store_true", help="leave out Deadline Cloud's job attachments"
    )
    parser.add_argument("--no-unpaced", action="store_true", help="leave out the unpaced run")
    args = parser.parse_args()
    upload_bench.with_deadline = not args.no_deadline
    if upload_bench.with_deadline:
        upload_bench.deadline_python()  # made (once) before anything is timed
    work = Path(tempfile.mkdtemp(prefix="cloud-render-bench-uplink-"))
    figures: dict[str, float] = {}
    try:
        root = work / "project"
        start = time.perf_counter()
        make_project(root, "small" if args.small else "full")
        files = project_files(root)
        size = sum(p.stat().st_size for p in files)
        by_kind: dict[str, int] = {}
        for path in files:
            by_kind[path.suffix] = by_kind.get(path.suffix, 0) + path.stat().st_size
        print(
            f"project: {len(files)} files, {size / MB:.1f} MB ("
            + ", ".join(f"{ext} {n / MB:.1f} MB" for ext, n in sorted(by_kind.items()))
            + f"), made in {time.perf_counter() - start:.0f} s",
            flush=True,
        )
        rate = args.mbit * 1e6 / 8
        with moto_server(work / "moto.log") as url:
            settings = AwsSettings(access_key_id=KEY_ID, secret_access_key=SECRET, endpoint_url=url)
            with SlowLink(url, rate) as link:
                print(f"paced at {args.mbit:g} Mbit/s ({rate / MB:.2f} MB/s); plain send {size / rate:.1f} s")
                paced = run_all("paced  ", link.url, url, settings, root, work, lambda: link.sent)
            figures["uplink_vs_cli"] = paced["ours"][0] / paced["cli"][0]
            if "deadline" in paced:
                figures["uplink_vs_deadline"] = paced["ours"][0] / paced["deadline"][0]
            figures["bytes_sent_ratio"] = paced["ours"][1] / size
            print(
                "paced bytes on the link: "
                + ", ".join(f"{tool} {sent / MB:.1f} MB" for tool, (_s, sent) in paced.items())
            )
            if not args.no_unpaced:
                unpaced = run_all("unpaced", url, url, settings, root, work, lambda: 0)
                figures["unpaced_vs_cli"] = unpaced["ours"][0] / unpaced["cli"][0]
                if "deadline" in unpaced:
                    figures["unpaced_vs_deadline"] = unpaced["ours"][0] / unpaced["deadline"][0]
                print(
                    "UNPACED "
                    + " ".join(
                        f"{key}={value:.2f}" for key, value in figures.items() if key.startswith("unpaced")
                    )
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("RESULT " + " ".join(f"{key}={value:.2f}" for key, value in figures.items()))


if __name__ == "__main__":
    main()
