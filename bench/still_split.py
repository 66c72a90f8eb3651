"""Still split: one frame of T samples cut over 1, 2, 4 and 8 emulated machines, against the ideal.

Every run is the product's path: the still engine and job thread, moto's Batch running each array
child as a machine on this computer (dev/batch_simulator.py), the real boot script and
supervisor (cloud/machine/still_worker.py): parts claimed by conditional writes, uploaded, listed,
the merge claimed by the first machine to finish a part, the parts downloaded there as they land
(cloud/machine/still_gather.py), the final image uploaded and downloaded to this computer. Only Blender is a stand-in, FOR THIS BENCHMARK
ONLY, for still_parts.py's "parts" step, one process a machine as the product's Blender (the
Blender tarball staged for the job holds it, as in bench/scaleout.py). It speaks the step's
protocol: "next" asked, a part's index (or a part to add, or the merge) answered on stdin, and for each

- part: sleeps length x SECONDS_PER_SAMPLE, then writes a real part EXR (still_parts.write_exr,
  PART_SIZE, the channels a part holds: Combined RGBA, Denoising Normal, Albedo and Depth, and
  a Depth pass), so the merge reads what a part would be;
- on the merging machine, "add": the real code, still_parts.Merge.add, between its own parts
  and, once it has none left, after the scene is opened again (sleeps --blender-start); then
  "merge": the real Merge.write of the sum, and "finish": sleeps FINISH_S, the denoise and
  composite measured at 0.3-0.5 s at 160x120 on CPU (../shared/recipes/still-on-n-machines.md),
  and writes a small image, while the merged Combined pass is written beside it (as the product).

So the figures measure distributing one frame's samples over machines, not this computer's two
cores. The fake's own process start (Python without site packages, printed) is the start each
machine pays once; a real Blender start and scene load, relative to a part of an hour's render,
is about as small (5-10 s of a 100 s+ part); --blender-start S adds S to each Blender start and
to the merging machine's scene load, to see what it costs.

Baseline: the still engine on one machine (N=1), the same path, claims, merge and finish
included, so the ratios measure distribution only (the plain EC2 path renders the whole frame
and its denoise in one Blender: no part files, no merge).

ideal = T x SECONDS_PER_SAMPLE / N + boot, boot = the run's own time from submitting the array
job to the first part starting on any machine. efficiency = ideal / makespan, makespan = submit
until the final image arrived on this computer (the downloaded file's time): the merge, the
finish and their uploads count. Printed beside it: when the last machine started its first part,
the mean gap between parts on a machine (claim, upload, mark, the next step's start), the mean
idle tail (the last part's end minus each machine's last), the wait from the last part to the
merge's write (its upload, the listing, the download, the parts still to add: how many were
added after the last part was rendered), the write and finish steps, and the upload and arrival.

merge_s / merge_spot_s: the real merge of 8 / 32 synthetic parts at 1920x1080 with a part's
passes, all at once, timed in this process (read, weighted sum, write the merged file and the
Combined pass): what the merge would cost if nothing were added before the last part landed.
Timed with it: one part's add (the median), a part's time through the product's two merge
threads (still_parts.BackgroundMerge: one reads while the other adds; the whole over the count),
and the two writes (the merged passes where the merging machine writes them: /dev/shm).
`full_merge_eff_n8`: N=8 run again with the merging machine's adds and writes paced to those
1080p times (each add sleeps to a part's time through the two threads, each write to its
write's), in the run's own timeline: its adds run on a thread beside its parts, as the
product's do (a render lets go of Python's lock), and those after the last part delay the image. `merge_tail_s` / `merge_tail_spot_s`:
in that run, the last part rendered to the merged file written. Goal (issue 22): efficiency
>= 0.85 at N=8, counting the merge.

Sets: "spot" (the product's default: PARTS_PER_MACHINE_SPOT parts per machine) and "ondemand"
(one part per machine). RESULT keys are the spot set's; ondemand's carry an `ondemand_` prefix.

Options: --small (128 samples on 1 and 2 machines), --machines 8 (or 2,8), --sets spot,ondemand,
--samples T, --seconds-per-sample S (0.2 by default; 0.05 until issue 22's merge work), --part-size WxH,
--blender-start S, --no-merge-timing. A full run (N = 1, 2, 4, 8, both sets) takes about 15 minutes.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cloud.job.events import FrameArrived, LogLines  # noqa: E402
from cloud.job.still_plan import split_samples  # noqa: E402
from cloud.machine import still_parts  # noqa: E402
from cloud.machine.still_worker import MEMORY_FOLDER  # noqa: E402
from dev.batch_job import blender_version, make_scene, start_job  # noqa: E402
from dev.batch_simulator import BatchSimulator  # noqa: E402
from dev.emulator import emulated_account  # noqa: E402
from tests.images import png  # noqa: E402  (a real PNG header: the final image is checked on arrival)

SAMPLES = 1024
MACHINES: tuple[int, ...] = (1, 2, 4, 8)
# 1024 samples: 205 s on one machine, 25.6 s a machine at N=8 (spot: parts of 6.4 s). Was 0.05
# (51 s, parts of 1.6 s), against which this computer's fixed costs a part (claim, upload, mark:
# 0.4-0.8 s through the emulator on two shared cores) and the merge's weighed 4x more than at
# 0.2; the still is an hour on one GPU (parts of about 110 s at N=8 on spot), so even
# 0.2 s/sample is 17x shorter than the still it stands for. --seconds-per-sample 0.05 runs the old scale.
SECONDS_PER_SAMPLE = 0.2
STILL_SIZE = 16  # the scene's resolution: the final image the add-on downloads
PART_SIZE = (64, 64)  # the parts the runs write and merge; merge_s is timed at 1920x1080
FINISH_S = 0.5
BLENDER_START_S = 0.0
MERGE_SIZE = (1920, 1080)
MERGE_MACHINES = 8  # merge_s: one part a machine (on demand); merge_spot_s: spot's parts
# What a part holds (bpy 5.0.1, denoising data passes on), and a Depth pass the merge keeps whole.
PASSES = {
    "Combined": "RGBA",
    "Denoising Albedo": "RGB",
    "Denoising Depth": "Z",
    "Denoising Normal": "XYZ",
    "Depth": "Z",
}
SETTINGS_FILE = "bench_still.json"

# The benchmark's Blender: answers still_parts.py's "parts" step as still_worker.py runs it
# (`blender -b scene.blend --python-exit-code 3 --python prepare_blender.py --python
# still_parts.py -- CONFIG '<json>'`): asks for each part with "next", renders what stdin answers,
# and on the merging machine opens the scene again (a scene load: --blender-start once more),
# merges for real and finishes.
FAKE_BLENDER = r"""
import importlib.util, json, os, queue, shutil, sys, threading, time
begun = time.time()
argv = sys.argv
here = os.path.dirname(os.path.abspath(__file__))
cfg = json.load(open(os.path.join(here, "bench_still.json")))
args = json.loads(argv[-1])  # the last argument, as still_parts.py reads it
machine = os.path.dirname(argv[argv.index("--python") + 1])
def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(machine, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
protocol = load("blender_logs")
said = threading.Lock()  # the adder thread's stamps and the loop's events: whole lines, never mixed
def emit(event, **data):
    with said:
        protocol.emit(event, **data)
print("bench: process start %.3f s" % (time.time() - begun), flush=True)
time.sleep(cfg["blender_start"])
def stamp(label, what):
    with said:
        print("bench: %s %s at %.3f" % (label, what, time.time()), flush=True)
assert args["step"] == "parts", args
merge = None
while True:
    emit("next")
    line = sys.stdin.readline().strip()
    if not line:
        break
    if not line.startswith("{"):
        part = args["parts"][line]
        label = "part %d" % part["offset"]
        emit("part", index=int(line))
        stamp(label, "started")
        started = time.monotonic()
        time.sleep(part["length"] * cfg["seconds_per_sample"])
        shutil.copyfile(os.path.join(here, "part.exr"), part["output"])  # written by still_parts.write_exr
        stamp(label, "finished")
        emit("part_done", index=int(line), path=part["output"], method="subset", samples=part["length"],
             seconds=round(time.monotonic() - started, 3))
        continue
    command = json.loads(line)
    if command.get("reopen"):
        time.sleep(cfg["blender_start"])  # the scene opened again
        emit("output", path=command["output"] + ".png")
        continue
    if "add" in command:  # the real running merge; numpy (in every Blender) from this Python's site
        if merge is None:  # one thread adds, in the order handed over, as still_parts.BackgroundMerge
            sys.path.extend(cfg["site_paths"])
            merge = load("still_parts").Merge(args["total"])
            adds, added = queue.Queue(), []
            def adder():
                while True:
                    add = adds.get()
                    if add is None:
                        return
                    stamp("add %d" % add["index"], "started")
                    seconds = merge.add(add["path"], int(add["samples"]), int(add["index"]))
                    time.sleep(max(0.0, cfg["add_s"] - seconds))  # as long as at MERGE_SIZE, where paced
                    stamp("add %d" % add["index"], "finished")
                    added.append((add["index"], seconds))
            adding = threading.Thread(target=adder)
            adding.start()
        for add in command["add"] if isinstance(command["add"], list) else [command["add"]]:
            adds.put(add)
        continue
    if merge is not None:
        adds.put(None)
        adding.join()
    for step in command["steps"]:
        stamp(step["step"], "started")
        started = time.monotonic()
        if step["step"] == "merge":  # what was added, written (the real code)
            averaged, kept = merge.write(step["output"])
            time.sleep(max(0.0, cfg["write_s"] - (time.monotonic() - started)))
            def combined(path=step.get("combined", ""), begun=time.monotonic()):
                merge.write_combined(path)  # as still_parts.py: while the finish runs
                time.sleep(max(0.0, cfg["combined_s"] - (time.monotonic() - begun)))
            writing = threading.Thread(target=combined)
            writing.start()
            done = dict(averaged=averaged, taken_from_longest=kept, samples=merge.total,
                        added=[i for i, _ in added], add_seconds=round(sum(t for _, t in added), 3))
            event = "merged"
        else:
            time.sleep(cfg["finish_s"])
            writing.join()
            path = step["output"] + ".png"
            shutil.copyfile(os.path.join(here, "still.png"), path)  # the scene's size: checked on arrival
            done = dict(path=path, denoised=True, composited=False)
            event = "finished"
        stamp(step["step"], "finished")
        emit(event, seconds=round(time.monotonic() - started, 3), **done)
    break
"""


def fake_blender(version: str, settings: dict[str, Any], dest: Path) -> tuple[Path, str]:
    """A Blender tarball (same layout as the official one) whose `blender` is the fake steps: the
    system's Python without site packages (a fast start, as scaleout's fake), and for the merge
    this Python's site packages (numpy in them, as in every Blender). Its part.exr is a part as still_parts writes one."""
    top = f"blender-{version}-linux-x64"
    path = dest / f"{top}.tar.xz"
    part = dest / "part.exr"
    synthetic_part(part, *PART_SIZE, SAMPLES)
    launcher = b'#!/bin/sh\nexec python3 -S "$(dirname "$0")/fake_still.py" "$@"\n'
    settings = dict(settings, site_paths=[p for p in sys.path if p])
    with tarfile.open(path, "w:xz") as archive:
        for name, data, mode in (
            ("blender", launcher, 0o755),
            ("fake_still.py", FAKE_BLENDER.encode(), 0o644),
            (SETTINGS_FILE, json.dumps(settings).encode(), 0o644),
            ("part.exr", part.read_bytes(), 0o644),
            ("still.png", png(STILL_SIZE, STILL_SIZE), 0o644),
        ):
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


STAMP = re.compile(r"bench: (part \d+|add \d+|merge|finish) (started|finished) at ([\d.]+)")
PROCESS = re.compile(r"bench: process start ([\d.]+) s")


def _timeline(
    sim: BatchSimulator, batch_job: str
) -> tuple[dict[str, list[tuple[str, float, float]]], list[float]]:
    """Per machine, (step, started, finished) in the order run, from the fake's own stamps (wall
    clock, the add-on's clock too); and every step's process start."""
    found: dict[str, list[tuple[str, float, float]]] = {}
    starts: list[float] = []
    for label, folder in sim.folders(batch_job):
        log = folder / "root" / "run" / "render.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        starts += [float(s) for s in PROCESS.findall(text)]
        begun: dict[str, float] = {}
        spans = found.setdefault(label, [])
        for step, what, stamp in STAMP.findall(text):
            if what == "started":
                begun[step] = float(stamp)
            elif step in begun:
                spans.append((step, begun.pop(step), float(stamp)))
    return found, starts


def run(
    sim: BatchSimulator,
    account: Any,
    scene: Path,
    version: str,
    machines: int,
    spot: bool,
    work: Path,
    pace: dict[str, float] | None = None,
) -> dict[str, Any]:
    """One still over `machines`; with `pace`, each part's add to the merge and the merge's write
    last as long as `pace` says (time_merge's figures at MERGE_SIZE), on the merging machine, in
    the run's own timeline: its adds between its own parts delay them, and those after the last
    part landed delay the image."""
    account.reset()
    account.quotas.set_quota("L-34B43A08", 8.0 * 16)  # spot vCPUs
    account.quotas.set_quota("L-1216C47A", 8.0 * 16)  # on-demand vCPUs
    settings = {
        "seconds_per_sample": SECONDS_PER_SAMPLE,
        "part_size": list(PART_SIZE),
        "finish_s": FINISH_S,
        "blender_start": BLENDER_START_S,
        "passes": PASSES,
        "add_s": (pace or {}).get("add", 0.0),
        "write_s": (pace or {}).get("write", 0.0),
        "combined_s": (pace or {}).get("combined", 0.0),
    }
    work.mkdir(parents=True, exist_ok=True)  # the fake Blender lies under the run's folder, removed with it
    blender = fake_blender(version, settings, Path(tempfile.mkdtemp(prefix="blender-", dir=work)))
    job = start_job(
        sim,
        scene,
        [1],
        machines,
        work / f"{'spot' if spot else 'ondemand'}-n{machines}{'-paced' if pace else ''}",
        blender=blender,
        version=version,
        still_samples=SAMPLES,
        spot=spot,
    )
    arrived: list[float] = []
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
    assert rec.stage == "done", (rec.stage, rec.message, log[-30:])
    assert len(arrived) == 1, arrived
    t0 = rec.launched_at
    lines, starts = _timeline(sim, rec.launch_id)
    parts = {m: [s for s in spans if s[0].startswith("part")] for m, spans in lines.items()}
    steps = {s[0]: s for spans in lines.values() for s in spans if s[0] in ("merge", "finish")}
    adds = sorted(
        (s for spans in lines.values() for s in spans if s[0].startswith("add")), key=lambda s: s[1]
    )
    firsts = [spans[0][1] - t0 for spans in parts.values() if spans]
    lasts = [spans[-1][2] - t0 for spans in parts.values() if spans]
    gaps = [b[1] - a[2] for spans in parts.values() for a, b in itertools.pairwise(spans)]
    rendered = [s[0] for spans in parts.values() for s in spans]
    boot = min(firsts)
    render_end = max(lasts)
    merge, finish = steps["merge"], steps["finish"]
    makespan = arrived[0] - t0
    ideal = SAMPLES * SECONDS_PER_SAMPLE / machines + boot
    return {
        "parts": len(rec.still_parts),
        "rendered": len(rendered),
        "twice": len(rendered) - len(set(rendered)),
        "machines_used": sum(1 for spans in parts.values() if spans),
        "makespan": makespan,
        "ended": ended - t0,
        "boot": boot,
        "last_boot": max(firsts),
        "render_end": render_end,
        "gap": sum(gaps) / len(gaps) if gaps else 0.0,
        "tail": sum(render_end - last for last in lasts) / len(lasts),
        "to_merge": merge[1] - t0 - render_end,
        "merge": merge[2] - merge[1],
        "merge_tail": merge[2] - t0 - render_end,  # the last part rendered to the merged file written
        "adds": len(adds),
        "adds_after": sum(1 for a in adds if a[2] - t0 > render_end),
        "finish": finish[2] - finish[1],
        "between": finish[1] - merge[2],
        "arrival": makespan - (finish[2] - t0),
        "process_start": sum(starts) / len(starts) if starts else 0.0,
        "ideal": ideal,
        "efficiency": ideal / makespan,
        "efficiency_end": ideal / (ended - t0),
    }


def synthetic_part(path: Path, width: int, height: int, samples: int) -> None:
    """A part as Cycles writes one: a smooth image with per-pixel noise in every pass."""
    rng = np.random.default_rng(7)
    ramp = np.linspace(0.1, 0.9, width, dtype=np.float32)[None, :] * np.ones((height, 1), np.float32)
    channels = {}
    for name, letters in PASSES.items():
        for letter in letters:
            noise = rng.normal(0.0, 0.05, (height, width)).astype(np.float32)
            channels[f"ViewLayer.{name}.{letter}"] = ramp + noise
    still_parts.write_exr(  # uncompressed, as Cycles writes a part (still_parts.set_multilayer_exr)
        str(path), width, height, channels, {"cycles.ViewLayer.samples": str(samples)}, compress=False
    )


def time_merge(work: Path, count: int) -> dict[str, float]:
    """The merging machine's work on `count` parts of MERGE_SIZE, timed here: each part added
    (read, weighted, summed: `add`, the mean), the sum written (`write`: the layers for the
    finish and the Combined pass), and all of it at once (`whole`, as the merge was before it
    added parts as they landed); and the MB of a part."""
    width, height = MERGE_SIZE
    work.mkdir(parents=True, exist_ok=True)
    first = work / "part-0.exr"
    synthetic_part(first, width, height, SAMPLES)
    paths = [first]
    for k in range(1, count):  # the same bytes again: reading and averaging cost the same
        paths.append(work / f"part-{k}.exr")
        shutil.copyfile(first, paths[-1])
    length = max(1, SAMPLES // count)
    merge = still_parts.Merge(length * count)
    adds = []
    for k, path in enumerate(paths):
        started = time.monotonic()
        merge.add(str(path), length, k)
        adds.append(time.monotonic() - started)
    # Where the merging machine writes them (still_worker.StillSupervisor.layers_folder).
    layers = Path(tempfile.mkdtemp(dir=MEMORY_FOLDER)) if Path(MEMORY_FOLDER).is_dir() else work
    started = time.monotonic()
    _averaged, kept = merge.write(str(layers / "merged.exr"))
    write = time.monotonic() - started
    shutil.rmtree(layers, ignore_errors=True)
    started = time.monotonic()
    merge.write_combined(str(work / "combined.exr"))
    combined = time.monotonic() - started
    assert "Depth" in kept, kept
    del merge
    # As the merging machine adds them (still_parts.BackgroundMerge): one part read while the one
    # before is added; its time a part (`add`, what the paced runs take) is the whole over count.
    background = still_parts.BackgroundMerge(length * count)
    started = time.monotonic()
    for k, path in enumerate(paths):
        background.add(str(path), length, k)
    assert background.finished().added == length * count
    pipelined = (time.monotonic() - started) / count
    size = first.stat().st_size / 1e6
    shutil.rmtree(work, ignore_errors=True)
    whole = sum(adds) + write + combined
    return {
        "add": pipelined,
        "add_one": statistics.median(adds),
        "write": write,
        "combined": combined,
        "whole": whole,
        "mb": size,
    }


def say(name: str, machines: int, r: dict[str, Any], paced: str) -> None:
    print(
        f"{name:8} N={machines}{paced}: {r['parts']} parts, makespan {r['makespan']:6.1f} s, "
        f"ideal {r['ideal']:6.1f} s (boot {r['boot']:.1f} s, last machine's first part at "
        f"{r['last_boot']:.1f} s), efficiency {r['efficiency']:.2f}; last part rendered at "
        f"{r['render_end']:.1f} s, mean gap between parts {1000 * r['gap']:.0f} ms "
        f"(process start {1000 * r['process_start']:.0f} ms), mean idle tail {r['tail']:.2f} s; "
        f"last part to the merge's write {r['to_merge']:.2f} s ({r['adds_after']} of {r['adds']} parts "
        f"added after the last was rendered), write {r['merge']:.2f} s (last part to merged "
        f"{r['merge_tail']:.2f} s), merge to finish {r['between']:.2f} s, finish {r['finish']:.2f} s, "
        f"upload and arrival {r['arrival']:.2f} s; job thread ended at {r['ended']:.1f} s "
        f"(efficiency {r['efficiency_end']:.2f}); machines used {r['machines_used']}, "
        f"parts rendered twice {r['twice']}",
        flush=True,
    )


def main() -> int:
    global SAMPLES, MACHINES, SECONDS_PER_SAMPLE, PART_SIZE, BLENDER_START_S, MERGE_SIZE

    def option(name: str) -> str | None:
        return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else None

    if "--small" in sys.argv:  # a quick run: 128 samples on 1 and 2 machines, a smaller merge
        SAMPLES, MACHINES, SECONDS_PER_SAMPLE, MERGE_SIZE = 128, (1, 2), 0.02, (480, 270)
    if option("--machines"):
        MACHINES = tuple(int(n) for n in str(option("--machines")).split(","))
    if option("--samples"):
        SAMPLES = int(str(option("--samples")))
    if option("--seconds-per-sample"):
        SECONDS_PER_SAMPLE = float(str(option("--seconds-per-sample")))
    if option("--part-size"):
        w, h = str(option("--part-size")).lower().split("x")
        PART_SIZE = (int(w), int(h))
    if option("--blender-start"):
        BLENDER_START_S = float(str(option("--blender-start")))
    sets = {"spot": True, "ondemand": False}
    if option("--sets"):
        wanted = str(option("--sets")).split(",")
        sets = {name: spot for name, spot in sets.items() if name in wanted}
    work = Path(tempfile.mkdtemp(prefix="still-split-"))
    figures: dict[str, float] = {}
    try:
        timings: dict[str, dict[str, float]] = {}
        tails: dict[str, float] = {"spot": float("nan"), "ondemand": float("nan")}
        if "--no-merge-timing" not in sys.argv:
            for name, spot in (("ondemand", False), ("spot", True)):
                count = len(split_samples(SAMPLES, MERGE_MACHINES, spot))
                timings[name] = t = time_merge(work / "merge", count)
                print(
                    f"merge ({name}, N={MERGE_MACHINES}): {count} parts of {MERGE_SIZE[0]}x{MERGE_SIZE[1]} "
                    f"({sum(len(v) for v in PASSES.values())} float channels, {t['mb']:.0f} MB each): "
                    f"a part added in {t['add_one']:.2f} s ({t['add']:.2f} s a part read and added "
                    f"by the merge's two threads), the sum written in {t['write']:.2f} s "
                    f"(its Combined pass in {t['combined']:.2f} s, during the finish), "
                    f"all at once {t['whole']:.2f} s here",
                    flush=True,
                )
        version = blender_version()
        scene = make_scene(work / "scene" / "still.blend", frames=1, size=STILL_SIZE, samples=SAMPLES)
        print(
            f"one still of {SAMPLES} samples, a fake {SECONDS_PER_SAMPLE} s/sample "
            f"({SAMPLES * SECONDS_PER_SAMPLE:.1f} s on one machine; benchmark only), parts of "
            f"{PART_SIZE[0]}x{PART_SIZE[1]}, finish {FINISH_S} s, Blender start +{BLENDER_START_S} s a step",
            flush=True,
        )
        with BatchSimulator(work / "sim") as sim, emulated_account(moto_url=sim.url) as account:
            for name, spot in sets.items():
                for machines in MACHINES:
                    prefix = "" if name == "spot" else f"{name}_"
                    r = run(sim, account, scene, version, machines, spot, work / name)
                    say(name, machines, r, "")
                    figures[f"{prefix}efficiency_n{machines}"] = r["efficiency"]
                    if machines == MERGE_MACHINES and name in timings:
                        r = run(sim, account, scene, version, machines, spot, work / name, timings[name])
                        say(name, machines, r, f" with the {MERGE_SIZE[0]}x{MERGE_SIZE[1]} merge")
                        figures[f"{prefix}full_merge_eff_n8"] = r["efficiency"]
                        tails[name] = r["merge_tail"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    head = [k for k in ("efficiency_n2", "efficiency_n4", "efficiency_n8") if k in figures]
    rest = [k for k in figures if k not in head]
    print(
        "RESULT "
        + " ".join(f"{k}={figures[k]:.2f}" for k in head)
        + "".join(
            f" merge{k}_s={timings[n]['whole']:.2f}"
            for n, k in (("ondemand", ""), ("spot", "_spot"))
            if n in timings
        )
        + f" merge_tail_s={tails['ondemand']:.2f} merge_tail_spot_s={tails['spot']:.2f} "
        + " ".join(f"{k}={figures[k]:.2f}" for k in rest)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
