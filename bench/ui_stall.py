"""Benchmark: Blender's main thread never stalls while a job uploads or frames come back.

The built extension is installed into the bpy module and driven like dev/demo.py does,
against the emulated account. Timers do not fire in the bpy module, so this script plays
Blender's event loop: it calls the add-on's timer callback (`runtime.drain_events`) every
16 ms (a 60 Hz UI) and times each call with time.perf_counter.

1. Upload: a scene whose Image data-blocks reference 20 random-content PNGs (1 GB in all;
   `--small`: 100 MB) is sent with "Render in Cloud". While the job's thread packs and
   uploads, the longest and 99th-percentile drain are reported. Baseline, same run: the
   same files uploaded ON the main thread with cloud.aws.uploads.upload_files (the freeze an
   add-on without threads would cause). stall ratio = longest drain / synchronous upload.
2. Frames: a 100-frame scene (16x16, 1 sample; `--small`: 20 frames) is rendered by the
   instance simulator (real bpy renders). A separate process lists the bucket every 50 ms and
   notes when each frame object first appears; the drain loop notes when the frame shows in
   the job's image sequence in bpy.data.images. Delay = the second minus the first (both on
   the system-wide monotonic clock; the bucket time is when a LIST first showed the key, so
   the delay is understated by at most one 50 ms listing). Baselines, same run: the frames downloaded ON the main
   thread (stall ratio), and the runner's poll interval (cloud.runner.POLL_SECONDS).

Both phases run with every core kept busy by a bounded CPU load (dev/cpu_load.py), as on an
artist's machine doing other work; `--quiet` runs without it.

Prints a table, ends with a `RESULT` line, and exits 1 if a target is missed: drains under 5 ms
at the 99th percentile and under 20 ms at worst in both phases, every frame in bpy.data.images
within 1 s of landing in the bucket (median under 0.5 s).

    .venv/bin/python bench/ui_stall.py [--small] [--keep] [--quiet]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a script, not add-on code: make cloud/, dev/ and tests/ importable

from cloud.job.records import FINAL_STAGE_IDS  # noqa: E402

MB = 1_000_000
TICK_S = 1 / 60  # Blender redrawing at 60 Hz
WATCH_S = 0.05  # how often the separate process lists the bucket
TEXTURES = 20
STALL_TARGET_S = 0.020  # the longest drain
P99_TARGET_S = 0.005  # the 99th-percentile drain
LANDING_TARGET_S = 1.0  # bucket -> bpy.data.images, the slowest frame
LANDING_MEDIAN_TARGET_S = 0.5
CPU_TYPE = "c5.2xlarge"  # the simulator renders on the CPU, so ask for a CPU machine
FINAL = FINAL_STAGE_IDS
PAST_UPLOAD = {"starting", "installing", "rendering", "downloading"} | FINAL


@dataclass(frozen=True)
class Size:
    texture_bytes: int
    frames: int


FULL = Size(texture_bytes=1000 * MB, frames=100)
SMALL = Size(texture_bytes=100 * MB, frames=20)


@dataclass
class Row:
    metric: str
    value: str
    target: str
    baseline: str
    ok: bool = True


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(self, metric: str, value: str, target: str = "", baseline: str = "", ok: bool = True) -> None:
        self.rows.append(Row(metric, value, target, baseline, ok))

    def print(self) -> None:
        heads = ("metric", "measured", "target", "baseline (same run) and ratio")
        cells = [heads] + [(r.metric, r.value, r.target, r.baseline) for r in self.rows]
        widths = [max(len(c[i]) for c in cells) for i in range(3)]
        for i, row in enumerate(cells):
            flag = "" if i == 0 else ("" if self.rows[i - 1].ok else "  <-- MISSED")
            print("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3] + flag)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)


# --------------------------------------------------------------------------- test data


def write_noise_png(path: Path, side: int, seed: int) -> None:
    """A valid RGBA PNG of random pixels, stored without compression (written in a blink).

    Random content makes every file unique to the content-addressed upload, as real textures are.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = np.zeros((side, 1 + side * 4), dtype=np.uint8)  # each row: filter byte 0, then pixels
    rows[:, 1:] = np.frombuffer(rng.bytes(side * side * 4), dtype=np.uint8).reshape(side, side * 4)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    body = zlib.compress(rows.tobytes(), level=0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


def make_textures(folder: Path, total_bytes: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    side = int((total_bytes / TEXTURES / 4) ** 0.5)
    paths = []
    for index in range(TEXTURES):
        path = folder / f"noise_{index:02d}.png"
        write_noise_png(path, side, seed=1000 + index)
        paths.append(path)
    return paths


def textured_scene(harness: ModuleType, path: Path, textures: list[Path]) -> Path:
    """A one-frame scene whose cube's material uses every texture (so each is saved and traced)."""
    import bpy

    harness.make_scene(path, frames=1, size=16, samples=1)
    material = bpy.data.materials.new("Heavy textures")
    material.use_nodes = True
    tree = material.node_tree
    emission = tree.nodes.new("ShaderNodeEmission")
    tree.links.new(emission.outputs["Emission"], tree.nodes["Material Output"].inputs["Surface"])
    for index, texture in enumerate(textures):
        node = tree.nodes.new("ShaderNodeTexImage")
        node.image = bpy.data.images.load(str(texture))
        if index == 0:  # the other nodes still use their images: saved with the file, traced by BAT
            tree.links.new(node.outputs["Color"], emission.inputs["Color"])
    cube = bpy.data.objects["Cube"]
    cube.data.materials.clear()
    cube.data.materials.append(material)
    configure_job(bpy.context.scene)
    bpy.ops.wm.save_mainfile()
    return path


def configure_job(scene: Any) -> None:
    scene.cloud_render.instance_type = CPU_TYPE
    scene.cloud_render.max_cost = 2.0
    scene.cloud_render.max_hours = 1.0


# --------------------------------------------------------------------------- the 60 Hz loop


@dataclass(frozen=True)
class Drain:
    """One timer call: wall time (what the artist feels), the main thread's CPU time in it (the
    add-on's own work; the rest is waiting for the GIL or a CPU), events applied, stage after."""

    wall: float
    cpu: float
    events: tuple[str, ...]  # kinds of the events applied
    stage: str


class Ui:
    """Blender's event loop, played by this script: the add-on's timer callback at 60 Hz."""

    def __init__(self, addon: ModuleType) -> None:
        self.addon = addon
        self.drains: list[Drain] = []
        self._applied: list[str] = []

    def state(self) -> str:
        return str(self.addon.addon.job_view.view().state)

    def _count(self, event: Any) -> None:
        self._applied.append(type(event).__name__)

    def run(
        self, done: Callable[[], bool], timeout: float, after: Callable[[], None] | None = None
    ) -> list[Drain]:
        """Drain every tick until `done()`; returns this run's drains."""
        first = len(self.drains)
        deadline = time.monotonic() + timeout
        next_tick = time.perf_counter()
        self.addon.addon.pump.add_listener(self._count)  # counts what each drain applied
        try:
            while True:
                self._applied = []
                cpu = time.thread_time()
                started = time.perf_counter()
                self.addon.addon.pump.drain_events()
                wall = time.perf_counter() - started
                self.drains.append(Drain(wall, time.thread_time() - cpu, tuple(self._applied), self.state()))
                if after is not None:
                    after()
                if done():
                    return self.drains[first:]
                if time.monotonic() > deadline:
                    raise TimeoutError(f"still '{self.state()}' after {timeout:.0f} s")
                next_tick += TICK_S
                wait = next_tick - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                else:
                    next_tick = time.perf_counter()  # a slow tick: Blender would skip, not catch up
        finally:
            self.addon.addon.pump.remove_listener(self._count)


def longest(drains: list[Drain]) -> Drain:
    return max(drains, key=lambda d: d.wall, default=Drain(0.0, 0.0, (), ""))


def describe(drain: Drain) -> str:
    kinds = ", ".join(f"{drain.events.count(k)} {k}" for k in sorted(set(drain.events))) or "no events"
    return f"{ms(drain.cpu)} of it CPU on the main thread; applied {kinds}"


def p99(drains: list[Drain]) -> float:
    import numpy as np

    return float(np.percentile([d.wall for d in drains], 99)) if drains else 0.0


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# --------------------------------------------------------------------------- phase 1: upload


def upload_phase(
    addon: ModuleType, harness: ModuleType, account: Any, work: Path, size: Size, report: Report
) -> bool:
    import bpy

    from cloud.aws.bucket_setup import new_bucket_name
    from cloud.aws.session import client
    from cloud.aws.uploads import hash_file, upload_files

    started = time.monotonic()
    textures = make_textures(work / "heavy" / "textures", size.texture_bytes)
    total = sum(p.stat().st_size for p in textures)
    print(
        f"[upload] {len(textures)} random PNGs, {total / MB:.0f} MB, written in {time.monotonic() - started:.1f} s"
    )

    # Baseline: the same files uploaded on the main thread, to a bucket of their own.
    s3 = client(account.settings, "s3")
    bucket = new_bucket_name()
    s3.create_bucket(Bucket=bucket)
    started = time.perf_counter()
    triples = [(p, hash_file(p), p.stat().st_size) for p in textures]
    hash_s = time.perf_counter() - started
    started = time.perf_counter()
    upload_files(account.settings, bucket, triples)
    sync_s = time.perf_counter() - started
    print(f"[upload] baseline on the main thread: hashing {hash_s:.1f} s, upload_files {sync_s:.1f} s")
    for _path, sha, _size in triples:  # free the emulator's storage again
        s3.delete_object(Bucket=bucket, Key=f"cas/{sha}")
    with contextlib.suppress(Exception):
        s3.delete_bucket(Bucket=bucket)

    textured_scene(harness, work / "heavy" / "heavy.blend", textures)
    ui = Ui(addon)
    started = time.perf_counter()
    assert bpy.ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
    operator_s = time.perf_counter() - started
    job_id = addon.addon.job_view.view().job_id
    print(f"[upload] Render in Cloud pressed: job {job_id} (operator returned in {ms(operator_s)})")
    started = time.monotonic()
    drains = ui.run(lambda: ui.state() in PAST_UPLOAD, timeout=600)
    job_s = time.monotonic() - started
    stage = ui.state()
    record = addon.addon.pump.manager().store.load(job_id)
    print(
        f"[upload] packed and uploaded in {job_s:.1f} s off the main thread ({len(drains)} drains); now '{stage}'"
    )
    packing = [d for d in drains if d.stage == "packing"]
    uploading = [d for d in drains if d.stage == "uploading"]
    if stage not in FINAL:  # the upload is what was measured: stop the job (terminates the machine)
        assert bpy.ops.cloud_render.cancel(job_id=job_id) == {"FINISHED"}
        ui.run(lambda: ui.state() in FINAL, timeout=120)
    elif stage != "cancelled":
        print(f"[upload] the job ended '{stage}': {record.message} {record.action}")
        report.add("upload job", stage, "reaches Starting machine", "", ok=False)
        return False

    worst = longest(drains)
    report.add(
        "upload: longest drain",
        ms(worst.wall),
        f"< {ms(STALL_TARGET_S)}",
        f"upload_files on the main thread {sync_s:.1f} s: stall ratio = {worst.wall / sync_s:.2e}",
        ok=worst.wall < STALL_TARGET_S,
    )
    report.add("  that drain", "", "", describe(worst))
    report.add(
        "upload: p99 drain",
        ms(p99(drains)),
        f"< {ms(P99_TARGET_S)}",
        f"{len(drains)} drains in {job_s:.1f} s",
        ok=p99(drains) < P99_TARGET_S,
    )
    figures.update(
        upload_max_ms=worst.wall * 1000,
        upload_p99_ms=p99(drains) * 1000,
        upload_stall_ratio=worst.wall / sync_s,
        pack_upload_ratio=job_s / (hash_s + sync_s),
    )
    report.add("upload: longest drain packing", ms(longest(packing).wall), "", f"{len(packing)} drains")
    report.add("upload: longest drain uploading", ms(longest(uploading).wall), "", f"{len(uploading)} drains")
    report.add(
        "upload: job thread pack + upload",
        f"{job_s:.1f} s",
        "",
        f"main-thread hash + upload {hash_s + sync_s:.1f} s: ratio = {job_s / (hash_s + sync_s):.2f}",
    )
    report.add("Render in Cloud operator call", ms(operator_s), "(info)", "saves a copy, starts the thread")
    return True


# --------------------------------------------------------------------------- phase 2: frames


def start_watcher(url: str, bucket: str, prefix: str, out: Path) -> subprocess.Popen[bytes]:
    """The bucket watcher in its own process, so its work never competes with the drains for the GIL."""
    args = [sys.executable, str(Path(__file__).resolve()), "--watch", url, bucket, prefix, str(out)]
    return subprocess.Popen(args)


def watch(url: str, bucket: str, prefix: str, out: Path) -> None:
    """List `prefix` every 50 ms; write 'monotonic-time key' when a key is first seen."""
    from cloud.aws.session import AwsSettings, client

    settings = AwsSettings(
        access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "AKIAEMULATEDTEST0001"),
        secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "emulated"),
        endpoint_url=url,
    )
    s3 = client(settings, "s3")
    seen: set[str] = set()
    with open(out, "w", buffering=1) as sink:
        while True:
            started = time.monotonic()
            with contextlib.suppress(Exception):  # the bucket may not hold the prefix yet
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                    now = time.monotonic()
                    for obj in page.get("Contents", []):
                        if obj["Key"] not in seen:
                            seen.add(obj["Key"])
                            sink.write(f"{now:.6f} {obj['Key']}\n")
            time.sleep(max(0.0, WATCH_S - (time.monotonic() - started)))


def frame_in_name(relative: str) -> int | None:
    """The frame number in one of this benchmark's own frame names (`####` at the end)."""
    found = re.findall(r"\d+", relative.rsplit("/", 1)[-1].rsplit(".", 1)[0])
    return int(found[-1]) if found else None


def frames_phase(
    addon: ModuleType, harness: ModuleType, account: Any, work: Path, size: Size, report: Report
) -> bool:
    import bpy

    from cloud.aws import storage
    from cloud.job.job_thread import POLL_SECONDS
    from cloud.machine import contract
    from dev.simulator import InstanceSimulator

    manager = addon.addon.pump.manager()
    bucket = manager.steps.ensure_bucket(manager.settings_for(), 14)
    harness.make_scene(work / "frames" / "frames.blend", frames=size.frames, size=16, samples=1)
    configure_job(bpy.context.scene)
    bpy.ops.wm.save_mainfile()

    landed: dict[int, float] = {}  # frame -> monotonic time it showed in bpy.data.images
    ui = Ui(addon)
    watch_log = work / "bucket-watch.txt"
    with InstanceSimulator(account.url, work_root=work / "machines"):
        assert bpy.ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
        job_id = addon.addon.job_view.view().job_id
        prefix = contract.frames_prefix(job_id)
        watcher = start_watcher(account.url, bucket, prefix, watch_log)
        name = addon.addon.job_view.image_name(job_id)
        print(f"[frames] job {job_id}: {size.frames} frames, 16x16, 1 sample, on the instance simulator")

        def note_frames() -> None:
            image = bpy.data.images.get(name)
            count = int(image["cloud_render_frames"]) if image is not None else 0
            if count <= len(landed):
                return
            now = time.monotonic()
            for frame, _path in addon.addon.job_view.frame_files(job_id):
                if frame is not None and frame not in landed:
                    landed[frame] = now

        seen_stage = ""

        def finished() -> bool:
            nonlocal seen_stage
            if ui.state() != seen_stage:
                seen_stage = ui.state()
                print(f"[frames] {seen_stage}")
            return seen_stage in FINAL

        started = time.monotonic()
        try:
            drains = ui.run(finished, timeout=600, after=note_frames)
        finally:
            time.sleep(2 * WATCH_S)
            watcher.terminate()
            watcher.wait(10)
        job_s = time.monotonic() - started
    record = manager.store.load(job_id)
    if record.stage != "done":
        print("\n".join(addon.addon.job_view.log_lines(job_id)[-30:]))
        print(f"[frames] the job ended '{record.stage}': {record.message} {record.action}")
        report.add("frames job", record.stage, "done", "", ok=False)
        return False

    in_bucket: dict[int, float] = {}
    for line in watch_log.read_text().splitlines():
        when, key = line.split(" ", 1)
        frame = frame_in_name(key[len(prefix) :])
        if frame is not None:
            in_bucket.setdefault(frame, float(when))
    delays = [landed[f] - in_bucket[f] for f in sorted(in_bucket) if f in landed]
    first_frame = min(in_bucket, key=lambda f: in_bucket[f], default=0)
    missing = size.frames - len(delays)
    image = bpy.data.images.get(addon.addon.job_view.image_name(job_id))
    count = int(image["cloud_render_frames"]) if image is not None else 0
    first, last = min(landed.values()), max(landed.values())
    arriving = [d for d in drains if d.stage in {"rendering", "downloading"}]

    # Baseline: the same frames downloaded on the main thread.
    keys = [obj.key for obj in storage.list_objects(account.settings, bucket, prefix)]
    started = time.perf_counter()
    for key in keys:
        storage.download(account.settings, bucket, key, work / "sync-frames" / key[len(prefix) :])
    sync_s = time.perf_counter() - started
    print(
        f"[frames] Done in {job_s:.1f} s; {len(in_bucket)} frames reached the bucket over "
        f"{max(in_bucket.values()) - min(in_bucket.values()):.1f} s and bpy.data.images over "
        f"{last - first:.1f} s; baseline download on the main thread {sync_s:.2f} s"
    )

    worst = longest(drains)
    report.add(
        "frames: longest drain",
        ms(worst.wall),
        f"< {ms(STALL_TARGET_S)}",
        f"{len(keys)} frames downloaded on the main thread {sync_s:.2f} s: "
        f"stall ratio = {worst.wall / sync_s:.2e}",
        ok=worst.wall < STALL_TARGET_S,
    )
    report.add("  that drain", "", "", describe(worst))
    report.add(
        "frames: p99 drain",
        ms(p99(drains)),
        f"< {ms(P99_TARGET_S)}",
        f"{len(drains)} drains in {job_s:.1f} s",
        ok=p99(drains) < P99_TARGET_S,
    )
    figures.update(
        frames_max_ms=worst.wall * 1000,
        frames_p99_ms=p99(drains) * 1000,
        frames_stall_ratio=worst.wall / sync_s,
    )
    report.add(
        "frames: longest drain while rendering", ms(longest(arriving).wall), "", f"{len(arriving)} drains"
    )
    report.add(
        "frames: image sequence frame count",
        f"{count} of {size.frames}",
        f"{size.frames}",
        f"{len(delays)} frames timed, {missing} not",
        ok=count == size.frames and missing == 0,
    )
    if delays:
        median, latest = statistics.median(delays), max(delays)
        report.add(
            "frames: bucket -> bpy.data.images, median",
            f"{median:.2f} s",
            f"< {LANDING_MEDIAN_TARGET_S:.1f} s",
            f"runner poll interval {POLL_SECONDS:.1f} s: ratio = {median / POLL_SECONDS:.2f}",
            ok=median < LANDING_MEDIAN_TARGET_S,
        )
        figures.update(
            landing_median_s=median,
            landing_max_s=latest,
            landing_median_ratio=median / POLL_SECONDS,
            landing_max_ratio=latest / POLL_SECONDS,
        )
        report.add(
            "frames: bucket -> bpy.data.images, max",
            f"{latest:.2f} s",
            f"< {LANDING_TARGET_S:.1f} s",
            f"ratio to poll interval = {latest / POLL_SECONDS:.2f}; min {min(delays):.2f} s",
            ok=latest < LANDING_TARGET_S,
        )
        report.add(
            "frames: first frame's delay",
            f"{landed[first_frame] - in_bucket[first_frame]:.2f} s",
            "(info)",
            "no backlog yet: one runner poll cycle plus the drain",
        )
    return True


# --------------------------------------------------------------------------- main


def prepare_environment(work: Path) -> None:
    """A throwaway Blender user directory and emulated keys, before bpy is imported."""
    os.environ["BLENDER_USER_RESOURCES"] = str(work / "blender-user")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIAEMULATEDTEST0001")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "emulatedSecretKeyForTestsOnly0123456789ab")
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


figures: dict[str, float] = {}  # what the RESULT line says


def bench(size: Size, work: Path, load: bool = True) -> int:
    prepare_environment(work)
    started = time.monotonic()
    from dev.build import build, zip_for_this_platform

    zip_path = zip_for_this_platform(build(work / "dist"))
    import bpy

    from dev import addon_harness as harness
    from dev.emulator import emulated_account
    from dev.simulator import make_blender_tarball

    addon = harness.install(zip_path)
    print(
        f"extension built and installed in Blender {bpy.app.version_string} ({time.monotonic() - started:.0f} s)"
    )
    report = Report()
    with emulated_account(log_path=work / "emulator.log") as account:
        harness.connect(account.url)
        manager = addon.addon.pump.manager()
        settings = manager.settings_for()
        bucket = manager.steps.ensure_bucket(settings, 14)
        version = bpy.app.version_string.split()[0]
        tarball, digest = make_blender_tarball(version, work / "blender")
        manager.steps.stage_blender(settings, bucket, version, tarball, digest)
        from dev import cpu_load

        burner = cpu_load.start(seconds=1800) if load else None
        print(
            f"CPU load: {os.cpu_count()} busy workers (dev/cpu_load.py) during both phases"
            if load
            else "CPU load: none (--quiet)"
        )
        try:
            ok = upload_phase(addon, harness, account, work, size, report)
            ok = frames_phase(addon, harness, account, work, size, report) and ok
        finally:
            if burner is not None:
                cpu_load.stop(burner)
        manager.stop_all()
    print()
    report.print()
    total = time.monotonic() - started
    verdict = "all targets met" if ok and report.ok else "TARGET MISSED"
    print(f"\n{verdict} ({total:.0f} s in all)")
    figures["cpu_load"] = float(load)
    print("RESULT " + " ".join(f"{key}={value:.3g}" for key, value in figures.items()))
    return 0 if ok and report.ok else 1


def main() -> int:
    if len(sys.argv) == 6 and sys.argv[1] == "--watch":
        watch(sys.argv[2], sys.argv[3], sys.argv[4], Path(sys.argv[5]))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", action="store_true", help="100 MB of textures and 20 frames (a quick run)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (scenes, logs, frames)")
    parser.add_argument("--quiet", action="store_true", help="no CPU load of our own")
    args = parser.parse_args()
    size = SMALL if args.small else FULL
    work = Path(tempfile.mkdtemp(prefix="cloud-render-bench-ui-"))
    print(f"work folder: {work}")
    try:
        return bench(size, work, load=not args.quiet)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
