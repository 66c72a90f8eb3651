"""Scale-out: the makespan of a 24-frame job on 1, 2, 4 and 8 emulated machines, against the ideal.

Every run is the product's path: the Batch engine and job thread, moto's Batch running each array
child as a machine on this computer (dev/batch_simulator.py), the real boot script and machine
supervisor, frames claimed by conditional writes, uploaded and downloaded. Only Blender is a
stand-in, FOR THIS BENCHMARK ONLY: a fake render that sleeps a fixed time per frame and writes a
tiny file, so the figures measure the distribution of frames over machines and not this
computer's two cores (eight Cycles renders at once would measure those).

Frame sets: even (every frame EVEN_S) and uneven (1x to 4x of UNEVEN_BASE_S, repeating), the
uneven one twice: "uneven" as today's estimate knows it (one probe frame: nothing per frame, so
frames go out in the job's order) and "uneven_known" with each frame's expected time in the job
(`JobRequest.frame_seconds`, as an estimate that knew it would give: the longest go out first),
and "uneven_history": the same shot submitted again after "uneven", nothing given: the job
thread takes each frame's time from the first job's record, as its machines measured them
(cloud/job/frame_history.py), the product's own path for `frame_seconds`.

First submission (issue 22, item 7): a real shot whose frames differ as a volume fills more of
the view (dev/batch_job.make_uneven_scene, 320x180, 32 samples). Its true frame times are
measured first, each frame rendered whole at the job's settings in a background Blender (the bpy
module here; CPU seconds, so that other work on this computer does not tilt them), and the fake
render sleeps those, scaled to a mean of 2 s. "shot" submits it with
nothing known (frames go out in the shot's order); "shot_costmap" submits it as the add-on does,
with the cost map's command: the job thread renders the map here while the scene packs and
uploads (addon/cost_map_render.py, in a real Blender) and the machines take the frames it weighs
most first. `first_submission_eff_n8` is shot_costmap's efficiency at N=8 (goal: >= 0.9).

Ceilings: 24 frames of unequal length cannot fill 8 machines evenly, whatever the order. For
each set the bench prints the efficiency the frames' own granularity allows (total / N over
the list schedule's makespan, no boot, gaps or uploads), in the shot's order and longest first;
`<set>_ceiling_n<N>` is the one for the order that set uses.

ideal = total frame time / N + boot, where boot is the run's own time from submitting the
array job to the first frame starting on any machine. efficiency = ideal / makespan, makespan =
submit until the last frame arrived on this computer (the downloaded file's time). Printed
beside it, so nothing is hidden: when the last frame finished rendering, when the job thread
ended (after the job's wrap-up: ending the Batch job, the forgotten-machine check) and the
efficiency to that, when the last machine started its first frame, the mean gap between two
frames on a machine, and the mean idle tail (the last frame's end minus each machine's last).
Also counts frames rendered twice. Goal (issue 12): efficiency >= 0.9 at N = 8 for even
frames, >= 0.8 for uneven ones.

Options: --small (8 frames on 1 and 2 machines), --machines 8 (or 2,8), --sets even,shot_costmap,
--frame-seconds S (the mean frame time, 2 s by default: a real frame takes minutes, and the
boot skew and the seconds between frames weigh less against longer ones).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cloud.job.events import FrameArrived, LogLines  # noqa: E402
from dev.batch_job import (  # noqa: E402
    blender_version,
    make_scene,
    make_uneven_scene,
    render_history,
    start_job,
    twice,
)
from dev.batch_simulator import BatchSimulator  # noqa: E402
from dev.emulator import emulated_account  # noqa: E402
from tests.images import png  # noqa: E402  (a real PNG header: frames are checked on arrival)

FRAMES = 24
MACHINES: tuple[int, ...] = (1, 2, 4, 8)
EVEN_S = 2.0
SHOT_SIZE = (320, 180)  # the first-submission shot's frames
UNEVEN_BASE_S = 0.8  # frames of 0.8, 1.6, 2.4 and 3.2 s
TIMES_FILE = "frame_seconds.json"

# The benchmark's Blender: speaks render_frames.py's protocol to the supervisor, renders nothing.
FAKE_RENDER = r"""
import json, os, shutil, sys, time
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
    shutil.copyfile(os.path.join(os.path.dirname(os.path.abspath(__file__)), "frame.png"), path)
    print("Saved: '%s'" % path, flush=True)
    print("bench: frame %d finished at %.3f" % (item["frame"], time.time()), flush=True)
    emit("frame_done", frame=item["frame"], seconds=round(time.monotonic() - started, 3))
emit("finished")
"""


def fake_blender(
    version: str, seconds: dict[int, float], dest: Path, size: tuple[int, int]
) -> tuple[Path, str]:
    """A Blender tarball (same layout as the official one) whose `blender` is the fake render. Its
    frame.png has the scene's size: the add-on checks each frame's header before it lands."""
    top = f"blender-{version}-linux-x64"
    path = dest / f"{top}.tar.xz"
    launcher = b'#!/bin/sh\nexec python3 -S "$(dirname "$0")/fake_render.py" "$@"\n'
    times = json.dumps({str(f): s for f, s in seconds.items()}).encode()
    with tarfile.open(path, "w:xz") as archive:
        for name, data, mode in (
            ("blender", launcher, 0o755),
            ("fake_render.py", FAKE_RENDER.encode(), 0o644),
            (TIMES_FILE, times, 0o644),
            ("frame.png", png(*size), 0o644),
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
    known: bool = False,
    cost_map: bool = False,
    size: tuple[int, int] = (16, 16),
):  # type: ignore[no-untyped-def]
    account.reset()
    account.quotas.set_quota("L-34B43A08", 8.0 * 16)
    blender = fake_blender(version, seconds, Path(tempfile.mkdtemp(prefix="scaleout-blender-")), size)
    frames = sorted(seconds)
    # known: the job carries each frame's expected time, as an estimate that knows it would give
    job = start_job(
        sim,
        scene,
        frames,
        machines,
        work / f"n{machines}",
        blender=blender,
        version=version,
        frame_seconds=seconds if known else None,
        cost_map=cost_map,
    )
    arrived: list[float] = []  # when each frame landed on this computer (the file's own time)
    log: list[str] = []

    def take(events: list[Any]) -> None:
        for event in events:
            if isinstance(event, FrameArrived):
                arrived.append(Path(event.path).stat().st_mtime)
            elif isinstance(event, LogLines):
                log.extend(event.lines)

    while job.runner.is_alive():
        take(job.events.drain(0.01))
        time.sleep(0.05)
    ended = time.time()
    take(job.events.drain(1.0, limit=100000))
    rec = job.record
    assert rec.stage == "done", (rec.stage, rec.message, log[-20:])
    from_history = any("Frame times from your last job" in line for line in log)
    mapped = next((line for line in log if "cost map" in line.lower()), "")
    assert len(arrived) == len(frames), (len(arrived), len(frames))
    started, finished = render_history(sim, rec.launch_id)
    t0 = rec.launched_at
    lines = _timeline(sim, rec.launch_id)
    firsts = [spans[0][1] - t0 for spans in lines.values() if spans]
    lasts = [spans[-1][2] - t0 for spans in lines.values() if spans]
    gaps = [b[1] - a[2] for spans in lines.values() for a, b in itertools.pairwise(spans)]
    boot = min(firsts)
    render_end = max(lasts)
    makespan = max(arrived) - t0  # submit until the last frame arrived on this computer
    total = sum(seconds.values())
    ideal = total / machines + boot
    return {
        "makespan": makespan,
        "ended": ended - t0,
        "boot": boot,
        "last_boot": max(firsts),
        "render_end": render_end,
        "gap": sum(gaps) / len(gaps) if gaps else 0.0,
        "tail": sum(render_end - last for last in lasts) / machines,
        "ideal": ideal,
        "efficiency": ideal / makespan,
        "efficiency_end": ideal / (ended - t0),
        "twice": len(twice(finished)),
        "started_twice": len(twice(started)),
        "machines_used": len({labels[0] for labels in finished.values()}),
        "from_history": from_history,
        "mapped": mapped,
    }


STAMP = re.compile(r"bench: frame (-?\d+) (started|finished) at ([\d.]+)")


def _timeline(sim: BatchSimulator, batch_job: str) -> dict[str, list[tuple[int, float, float]]]:
    """Per machine, (frame, started, finished) in the order rendered, from the fake render's own
    stamps (wall clock, the same clock as the add-on's)."""
    found: dict[str, list[tuple[int, float, float]]] = {}
    for label, folder in sim.folders(batch_job):
        log = folder / "root" / "run" / "render.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        begun: dict[int, float] = {}
        spans = found.setdefault(label, [])
        for frame, what, stamp in STAMP.findall(text):
            if what == "started":
                begun[int(frame)] = float(stamp)
            elif int(frame) in begun:
                spans.append((int(frame), begun.pop(int(frame)), float(stamp)))
    return found


TRUTH = r"""
import json, sys, time, bpy
scene = bpy.context.scene
scene.frame_set(scene.frame_start)
bpy.ops.render.render(write_still=False)  # kernels and shaders, once: not a frame's cost
seconds = {}
for frame in range(scene.frame_start, scene.frame_end + 1):
    # CPU seconds: a machine renders alone, this computer may not (a test run, the other bench
    # steps); the CPU time of a frame is its own work either way, and the clock's is not.
    started = time.process_time()
    scene.frame_set(frame)
    bpy.ops.render.render(write_still=False)
    seconds[frame] = time.process_time() - started
print("TRUTH " + json.dumps(seconds))
"""


def list_schedule(seconds: list[float], machines: int) -> float:
    """The makespan of handing `seconds` out in this order, each to the machine free first (what
    the claims do), with no boot, gap or upload: the best that order can give."""
    free = [0.0] * machines
    for frame_s in seconds:
        free.sort()
        free[0] += frame_s
    return max(free)


def ceilings(seconds: dict[int, float], machines: int) -> tuple[float, float]:
    """(in the shot's order, longest first): the efficiency each order reaches with nothing lost
    but the frames' own granularity, total / N over its list schedule: how close any job can come."""
    total = sum(seconds.values())
    in_order = list_schedule([seconds[f] for f in sorted(seconds)], machines)
    longest_first = list_schedule(sorted(seconds.values(), reverse=True), machines)
    return total / machines / in_order, total / machines / longest_first


def true_frame_seconds(scene: Path, mean_s: float) -> dict[int, float]:
    """Each frame of the shot rendered whole at its own settings in a background Blender, timed,
    and scaled so the frames average `mean_s` (the fake render sleeps these)."""
    launcher = ROOT / "cloud" / "machine" / "blender_launcher.py"
    script = scene.parent / "truth.py"
    script.write_text(TRUTH)
    done = subprocess.run(
        [sys.executable, str(launcher), "-b", str(scene), "--python", str(script)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    line = next(line for line in done.stdout.splitlines() if line.startswith("TRUTH "))
    measured = {int(f): float(s) for f, s in json.loads(line[len("TRUTH ") :]).items()}
    factor = mean_s / (sum(measured.values()) / len(measured))
    return {frame: round(s * factor, 3) for frame, s in measured.items()}


def main() -> int:
    global FRAMES, MACHINES, EVEN_S, UNEVEN_BASE_S
    if "--small" in sys.argv:  # a quick run: 8 frames on 1 and 2 machines, shorter frames
        FRAMES, MACHINES, EVEN_S, UNEVEN_BASE_S = 8, (1, 2), 0.5, 0.25
    if "--frame-seconds" in sys.argv:  # e.g. --frame-seconds 8: longer frames, fixed costs weigh less
        scale = float(sys.argv[sys.argv.index("--frame-seconds") + 1]) / EVEN_S
        EVEN_S, UNEVEN_BASE_S = EVEN_S * scale, UNEVEN_BASE_S * scale
    if "--machines" in sys.argv:  # e.g. --machines 8: only those runs (while looking into one)
        MACHINES = tuple(int(n) for n in sys.argv[sys.argv.index("--machines") + 1].split(","))
    work = Path(tempfile.mkdtemp(prefix="scaleout-"))
    version = blender_version()
    scene = make_scene(work / "scene" / "shot.blend", frames=FRAMES, size=16, samples=1)
    even = {f: EVEN_S for f in range(1, FRAMES + 1)}
    uneven = {f: UNEVEN_BASE_S * (1 + (f - 1) % 4) for f in range(1, FRAMES + 1)}
    # "uneven": nothing is known per frame (today's estimate: one probe frame), frames go out in
    # order; "uneven_known": the job carries each frame's expected time, the longest go first.
    # "uneven_history": the shot again, after "uneven" and in its records: nothing given, the
    # job thread finds each frame's time in the first job's record.
    sets = {
        "even": (even, False),
        "uneven": (uneven, False),
        "uneven_known": (uneven, True),
        "uneven_history": (uneven, False),
        "shot": ({}, False),
        "shot_costmap": ({}, False),
    }
    if "--sets" in sys.argv:  # e.g. --sets uneven
        wanted = sys.argv[sys.argv.index("--sets") + 1].split(",")
        sets = {name: frames for name, frames in sets.items() if name in wanted}
    shot = scene
    if {"shot", "shot_costmap"} & set(sets):
        shot = make_uneven_scene(
            work / "shot" / "uneven.blend", frames=FRAMES, width=SHOT_SIZE[0], height=SHOT_SIZE[1]
        )
        truth = true_frame_seconds(shot, EVEN_S)
        for name in ("shot", "shot_costmap"):
            if name in sets:
                sets[name] = (truth, False)
        ratio = max(truth.values()) / min(truth.values())
        print(f"shot: true frame times {min(truth.values()):.2f}-{max(truth.values()):.2f} s ({ratio:.1f}x)")
    print(
        f"{FRAMES} frames; a fixed-time fake render (benchmark only); even {EVEN_S} s/frame, "
        f"uneven {UNEVEN_BASE_S}-{4 * UNEVEN_BASE_S} s/frame"
    )
    figures: dict[str, float] = {}
    with BatchSimulator(work / "sim") as sim, emulated_account(moto_url=sim.url) as account:
        for name, (seconds, known) in sets.items():
            for machines in MACHINES:
                records = work / ("uneven" if name == "uneven_history" else name)
                job_scene = shot if name.startswith("shot") else scene
                result = run(
                    sim,
                    account,
                    job_scene,
                    version,
                    machines,
                    seconds,
                    records,
                    known,
                    name == "shot_costmap",
                    SHOT_SIZE if name.startswith("shot") else (16, 16),
                )
                if name == "uneven_history" and not result["from_history"]:
                    print(f"{name} N={machines}: no frame times came from the earlier job", flush=True)
                if name == "shot_costmap":
                    print(
                        f"{name} N={machines}: {result['mapped'] or 'no cost map line in the job log'}",
                        flush=True,
                    )
                print(
                    f"{name:12} N={machines}: makespan {result['makespan']:6.1f} s, ideal {result['ideal']:6.1f} s "
                    f"(boot {result['boot']:.1f} s, last machine's first frame at {result['last_boot']:.1f} s), "
                    f"efficiency {result['efficiency']:.2f}; last frame rendered at {result['render_end']:.1f} s, "
                    f"job thread ended at {result['ended']:.1f} s (efficiency {result['efficiency_end']:.2f}); "
                    f"mean gap between frames {1000 * result['gap']:.0f} ms, mean idle tail {result['tail']:.2f} s; "
                    f"machines used {result['machines_used']}, rendered twice {result['twice']}",
                    flush=True,
                )
                if seconds:
                    in_order, longest_first = ceilings(seconds, machines)
                    print(
                        f"{name:12} N={machines}: the frames' own granularity allows at most "
                        f"{in_order:.2f} in the shot's order, {longest_first:.2f} longest first "
                        "(no boot, gaps or uploads)",
                        flush=True,
                    )
                    figures[f"{name}_ceiling_n{machines}"] = (
                        longest_first if known or name == "shot_costmap" else in_order
                    )
                figures[f"{name}_eff_n{machines}"] = result["efficiency"]
                figures[f"{name}_twice_n{machines}"] = result["twice"]
                if name == "shot_costmap" and machines == 8:
                    figures["first_submission_eff_n8"] = result["efficiency"]
    print("RESULT " + " ".join(f"{key}={value:.2f}" for key, value in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
