"""Scale-out: the makespan of a 24-frame job on 1, 2, 4 and 8 emulated machines, against the ideal.

Every run is the product's path: the Batch engine and job thread, moto's Batch running each array
child as a machine on this computer (dev/batch_simulator.py), the real boot script and machine
supervisor, frames claimed by conditional writes, uploaded and downloaded. Only Blender is a
stand-in, FOR THIS BENCHMARK ONLY: a fake render that sleeps a fixed time per frame and writes a
tiny file, so the figures measure the distribution of frames over machines and not this
computer's two cores (eight Cycles renders at once would measure those).

Two frame sets: even (every frame EVEN_S) and uneven (1x to 4x of UNEVEN_BASE_S, repeating).
ideal = total frame time / N + boot, where boot is the run's own time from submitting the
array job to the first frame starting on any machine. efficiency = ideal / makespan, makespan =
submit until the last frame arrived on this computer. Also counts frames rendered twice.
Goal (issue 12): efficiency >= 0.9 at N = 8 for even frames, >= 0.8 for uneven ones.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dev.batch_job import blender_version, make_scene, render_history, start_job, twice  # noqa: E402
from dev.batch_simulator import BatchSimulator  # noqa: E402
from dev.emulator import emulated_account  # noqa: E402

FRAMES = 24
MACHINES: tuple[int, ...] = (1, 2, 4, 8)
EVEN_S = 2.0
UNEVEN_BASE_S = 0.8  # frames of 0.8, 1.6, 2.4 and 3.2 s
TIMES_FILE = "frame_seconds.json"

# The benchmark's Blender: speaks render_frames.py's protocol to the supervisor, renders nothing.
FAKE_RENDER = r"""
import json, os, sys, time
argv = sys.argv
cfg = json.load(open(argv[argv.index("--") + 1]))
seconds = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "frame_seconds.json")))
mark = "CLOUDRENDER "
def emit(event, **data):
    print(mark + json.dumps(dict(event=event, **data), sort_keys=True), flush=True)
emit("build", version="fake", hash="fake", date="fake")
emit("device", device="CPU", gpus=[])
plan = [{"frame": f, "name": "frame_%04d.png" % f} for f in cfg["frames"]]
emit("plan", frames=plan, skipped=[])
def frames():
    if not cfg.get("claim"):
        yield from plan
        return
    by_frame = {item["frame"]: item for item in plan}
    while True:  # one machine of many: ask the supervisor for each next claimed frame
        emit("next")
        line = sys.stdin.readline().strip()
        if not line:
            return
        yield by_frame[int(line)]
for item in frames():
    emit("frame", frame=item["frame"])
    print("bench: frame %d started at %.3f" % (item["frame"], time.time()), flush=True)
    started = time.monotonic()
    time.sleep(float(seconds.get(str(item["frame"]), 1.0)))
    path = os.path.join(cfg["frames_dir"], item["name"])
    with open(path, "wb") as out:
        out.write(b"fake frame %d\n" % item["frame"])
    print("Saved: '%s'" % path, flush=True)
    emit("frame_done", frame=item["frame"], seconds=round(time.monotonic() - started, 3))
emit("finished")
"""


def fake_blender(version: str, seconds: dict[int, float], dest: Path) -> tuple[Path, str]:
    """A Blender tarball (same layout as the official one) whose `blender` is the fake render."""
    top = f"blender-{version}-linux-x64"
    path = dest / f"{top}.tar.xz"
    launcher = b'#!/bin/sh\nexec python3 -S "$(dirname "$0")/fake_render.py" "$@"\n'
    times = json.dumps({str(f): s for f, s in seconds.items()}).encode()
    with tarfile.open(path, "w:xz") as archive:
        for name, data, mode in (
            ("blender", launcher, 0o755),
            ("fake_render.py", FAKE_RENDER.encode(), 0o644),
            (TIMES_FILE, times, 0o644),
        ):
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def run(
    sim: BatchSimulator,
    account,
    scene: Path,
    version: str,
    machines: int,
    seconds: dict[int, float],
    work: Path,
):  # type: ignore[no-untyped-def]
    account.reset()
    account.quotas.set_quota("L-34B43A08", 8.0 * 16)
    blender = fake_blender(version, seconds, Path(tempfile.mkdtemp(prefix="scaleout-blender-")))
    frames = sorted(seconds)
    job = start_job(sim, scene, frames, machines, work / f"n{machines}", blender=blender, version=version)
    while job.runner.is_alive():
        job.events.drain(0.01)
        time.sleep(0.05)
    done = time.time()
    rec = job.record
    assert rec.stage == "Done", (rec.stage, rec.message)
    started, finished = render_history(sim, rec.instance_id)
    boot, last_boot = _boots(sim, rec.instance_id, rec.launched_at)
    makespan = done - rec.launched_at
    total = sum(seconds.values())
    ideal = total / machines + boot
    return {
        "makespan": makespan,
        "boot": boot,
        "last_boot": last_boot,
        "ideal": ideal,
        "efficiency": ideal / makespan,
        "twice": len(twice(finished)),
        "started_twice": len(twice(started)),
        "machines_used": len({labels[0] for labels in finished.values()}),
    }


def _boots(sim: BatchSimulator, batch_job: str, launched_at: float) -> tuple[float, float]:
    """Submit until the first frame started on the first machine and on the last machine to
    start one (the fake render's own stamps): how far apart the machines came up."""
    firsts = []
    for _label, folder in sim.folders(batch_job):
        log = folder / "root" / "run" / "render.log"
        stamps = (
            re.findall(r"bench: frame -?\d+ started at ([\d.]+)", log.read_text()) if log.exists() else []
        )
        if stamps:
            firsts.append(float(stamps[0]) - launched_at)
    return (min(firsts), max(firsts)) if firsts else (0.0, 0.0)


def main() -> int:
    global FRAMES, MACHINES, EVEN_S, UNEVEN_BASE_S
    if "--small" in sys.argv:  # a quick run: 8 frames on 1 and 2 machines, shorter frames
        FRAMES, MACHINES, EVEN_S, UNEVEN_BASE_S = 8, (1, 2), 0.5, 0.25
    work = Path(tempfile.mkdtemp(prefix="scaleout-"))
    version = blender_version()
    scene = make_scene(work / "scene" / "shot.blend", frames=FRAMES, size=16, samples=1)
    sets = {
        "even": {f: EVEN_S for f in range(1, FRAMES + 1)},
        "uneven": {f: UNEVEN_BASE_S * (1 + (f - 1) % 4) for f in range(1, FRAMES + 1)},
    }
    print(
        f"{FRAMES} frames; a fixed-time fake render (benchmark only); even {EVEN_S} s/frame, "
        f"uneven {UNEVEN_BASE_S}-{4 * UNEVEN_BASE_S} s/frame"
    )
    figures: dict[str, float] = {}
    with BatchSimulator(work / "sim") as sim, emulated_account(moto_url=sim.url) as account:
        for name, seconds in sets.items():
            for machines in MACHINES:
                result = run(sim, account, scene, version, machines, seconds, work / name)
                print(
                    f"{name:6} N={machines}: makespan {result['makespan']:6.1f} s, ideal {result['ideal']:6.1f} s "
                    f"(boot {result['boot']:.1f} s, last machine's first frame at {result['last_boot']:.1f} s), "
                    f"efficiency {result['efficiency']:.2f}, "
                    f"machines used {result['machines_used']}, rendered twice {result['twice']}",
                    flush=True,
                )
                figures[f"{name}_eff_n{machines}"] = result["efficiency"]
                figures[f"{name}_twice_n{machines}"] = result["twice"]
    print("RESULT " + " ".join(f"{key}={value:.2f}" for key, value in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
