"""`make demo` (second part): a 12-frame scene rendered on 3 emulated machines through AWS Batch.

What an artist does, by script: the extension installed in a fresh Blender (the bpy module),
an emulated account connected, a scene with Machines = 3, Render in Cloud. The add-on's Batch
engine creates the roles, launch template, compute environment, queue and job definition and
submits one array job; moto's Batch runs each child as a machine on this computer
(dev/batch_simulator.py: the real boot script and machine supervisor, Cycles on the CPU); the
machines claim frames by conditional writes; the add-on follows every machine and loads the
frames as one image sequence. Writes demo-output/summary.json:

    {"engine": "aws-batch", "machines": 3, "frames": {"1": "<machine>", ...}, "rendered_twice": []}

where a machine is its array index ("0", "1", "2"). `--machines N`, `--frames F` change the job.

`--still` (`make demo SCENE=still`): one Cycles frame (fixed samples, denoising on, a Glare node
in the compositor) split by samples over the machines: each renders parts of the samples, the
first machine to finish a part merges them exactly as they land, denoises and composites once. Writes
demo-output/still/: `scene.blend` (as submitted), `merged.exr` (the merged Combined pass before
denoising), `final.<ext>` (denoised and composited, in the scene's format) and `summary.json`:

    {"machines": N, "samples": total, "parts": [{"machine": ..., "sample_offset": ..., "samples": ...}, ...]}
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "demo-output"
sys.path.insert(0, str(ROOT))  # dev tooling runs from a checkout, not from Blender

from cloud.job.records import FINAL_STAGE_IDS  # noqa: E402
from dev.demo_common import cache_blender, isolate, set_up_as_artist  # noqa: E402

isolate()  # before bpy is imported

from dev import addon_harness as harness  # noqa: E402
from dev.batch_job import render_history, twice  # noqa: E402
from dev.batch_simulator import BatchSimulator  # noqa: E402
from dev.build import build, zip_for_this_platform  # noqa: E402
from dev.emulator import emulated_account  # noqa: E402

FINAL = FINAL_STAGE_IDS


def render_and_follow(module: Any, say: Any) -> tuple[str, float]:
    """Print the confirmation, press Render in Cloud, and say each stage and the panel's machine
    rows until the job ends; (job id, the longest main-thread drain in seconds)."""
    import bpy

    print("\n" + module.addon.submit.confirmation_text(bpy.context) + "\n", flush=True)
    ops: Any = bpy.ops
    assert ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
    view = module.addon.job_view.view()
    seen = {"state": "", "rows": ""}

    def finished() -> bool:
        if view.state != seen["state"]:
            seen["state"] = view.state
            say(f"{view.state}: {view.message}")
        if view.machines_text and view.machines_text != seen["rows"]:
            seen["rows"] = view.machines_text
            say("panel: " + " | ".join(view.machines_text.splitlines()))
        return view.state in FINAL

    job_id = view.job_id
    return job_id, harness.drain_until(finished, timeout=600)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--machines", type=int, default=3)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--still", action="store_true", help="one frame split by samples over the machines")
    args = parser.parse_args()
    if args.still:
        return still(args.machines)
    work = OUT / "batch"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)

    zip_path = zip_for_this_platform(build())
    import bpy

    module = harness.install(zip_path)
    say(f"extension installed in Blender {bpy.app.version_string} (bpy module)")
    with BatchSimulator(work / "sim") as sim, emulated_account(moto_url=sim.url) as account:
        account.quotas.set_quota("L-1216C47A", 8.0 * max(args.machines, 4))  # standard on-demand vCPUs
        say(f"emulated AWS with Batch at {sim.url}")
        # Frames of about half a second: long enough that every machine is up before the last
        # is claimed, even on a busy computer (at 48 px, 4 samples, one machine took all 12).
        harness.make_scene(work / "project" / "batch_shot.blend", frames=args.frames, size=96, samples=32)
        scene: Any = bpy.context.scene
        settings = scene.cloud_render
        settings.instance_type = "c5.2xlarge"  # the emulated machines render on the CPU
        settings.machines = args.machines
        settings.frame_order = "PREVIEW_FIRST"
        settings.max_cost, settings.max_hours = 2.0, 1.0
        bpy.ops.wm.save_mainfile()
        set_up = set_up_as_artist(account, module)
        say(f"Set Up as the artist's IAM user: {set_up.splitlines()[0]}; Set Up policy detached")
        manager = module.addon.pump.manager()
        aws = manager.settings_for()
        bucket, version = cache_blender(manager, aws)
        say(f"scene: {args.frames} frames, Machines = {args.machines}; Blender {version} cached in {bucket}")
        job_id, longest = render_and_follow(module, say)
        record = manager.store.load(job_id)
        started_by, done_by = render_history(sim, record.launch_id)
        summary = {
            "engine": "aws-batch",
            "machines": record.machines,
            "batch_job": record.launch_id,
            "frames": {str(frame): done_by[frame][0] for frame in sorted(done_by)},
            "rendered_twice": twice(done_by),
            "started_twice": twice(started_by),
            "frames_arrived": sorted(record.frames_done),
            "stage": record.stage,
            "cost_so_far": round(record.cost_so_far, 6),
        }
        (OUT / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        log = module.addon.job_view.log_lines(job_id)
        (work / "job.log").write_text("\n".join(log) + "\n")
        for path in sorted(Path(record.output_dir).rglob("*.png")):
            shutil.copy2(path, work / path.name)
        harness.disconnect()
    machines = sorted(set(summary["frames"].values()))
    say(
        f"{record.stage}: {len(record.frames_done)}/{len(record.frames)} frames from machines {machines}, "
        f"rendered twice {summary['rendered_twice']}; longest main-thread drain {longest * 1000:.1f} ms"
    )
    print(json.dumps(summary["frames"]))
    ok = record.stage == "done" and len(machines) >= 2 and not summary["rendered_twice"]
    if not ok:
        print("\n".join(log[-40:]))
    return 0 if ok else 1


# Parts of a few seconds each (3 parts of 128 samples at 160 px, on the CPU): long enough that
# every machine has booted before the first machine's part ends, so each of the 3 renders one
# (at 96 samples and 96 px a part took 0.2-0.3 s, and the first machine up took two).
STILL_SAMPLES = 384
STILL_SIZE = 160
PART_LINE = re.compile(r"^\[machine (\d+)\].*rendering part (\d+) of (\d+): samples (\d+)-(\d+)")


def dress_still(scene: Any) -> None:
    """The sample scene as a still: one frame, fixed samples, denoising on, a Glare node."""
    import bpy

    scene.frame_start = scene.frame_end = 1
    scene.cycles.samples = STILL_SAMPLES
    scene.cycles.use_denoising = True
    tree: Any
    layers: Any
    out: Any
    glare: Any
    if hasattr(scene, "compositing_node_group"):  # 5.x: the compositor is a node group
        tree = bpy.data.node_groups.new("Compositing", "CompositorNodeTree")
        tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        out = tree.nodes.new("NodeGroupOutput")
        scene.compositing_node_group = tree
        layers = tree.nodes.new("CompositorNodeRLayers")
    else:
        scene.use_nodes = True
        tree = scene.node_tree
        out = next(n for n in tree.nodes if n.bl_idname == "CompositorNodeComposite")
        layers = next(n for n in tree.nodes if n.bl_idname == "CompositorNodeRLayers")
    glare = tree.nodes.new("CompositorNodeGlare")
    if "Type" in glare.inputs:
        glare.inputs["Type"].default_value = "Fog Glow"
        glare.inputs["Threshold"].default_value = 0.5
    else:
        glare.glare_type, glare.threshold = "FOG_GLOW", 0.5
    tree.links.new(layers.outputs["Image"], glare.inputs["Image"])
    tree.links.new(glare.outputs["Image"], out.inputs[0])


def still(machines: int) -> int:
    """`--still`: one frame's samples over `machines` machines, through the add-on."""
    work = OUT / "still"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)

    zip_path = zip_for_this_platform(build())
    import bpy

    module = harness.install(zip_path)
    say(f"extension installed in Blender {bpy.app.version_string} (bpy module)")
    with BatchSimulator(work / "sim") as sim, emulated_account(moto_url=sim.url) as account:
        account.quotas.set_quota("L-1216C47A", 8.0 * max(machines, 4))  # standard on-demand vCPUs
        blend = harness.make_scene(
            work / "project" / "still.blend", frames=1, size=STILL_SIZE, samples=STILL_SAMPLES
        )
        scene: Any = bpy.context.scene
        dress_still(scene)
        settings = scene.cloud_render
        settings.instance_type = "c5.2xlarge"  # the emulated machines render on the CPU
        settings.machines = machines
        settings.max_cost, settings.max_hours = 2.0, 1.0
        bpy.ops.wm.save_mainfile()
        shutil.copy2(blend, work / "scene.blend")
        set_up = set_up_as_artist(account, module)
        say(f"Set Up as the artist's IAM user: {set_up.splitlines()[0]}")
        manager = module.addon.pump.manager()
        bucket, version = cache_blender(manager, manager.settings_for())
        say(
            f"one frame, {STILL_SAMPLES} samples, Machines = {machines}; Blender {version} cached in {bucket}"
        )
        job_id, _longest = render_and_follow(module, say)
        record = manager.store.load(job_id)
        log = module.addon.job_view.log_lines(job_id)
        (work / "job.log").write_text("\n".join(log) + "\n")
        parts = []
        for line in log:
            found = PART_LINE.match(line)
            if found:
                machine, _part, _count, first, last = (int(g) for g in found.groups())
                parts.append({"machine": machine, "sample_offset": first - 1, "samples": last - first + 1})
        summary = {
            "machines": record.machines,
            "samples": sum(length for _offset, length in record.still_parts),
            "parts": sorted(parts, key=lambda p: p["sample_offset"]),
            "stage": record.stage,
            "cost_so_far": round(record.cost_so_far, 6),
        }
        (work / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        output = Path(record.output_dir)
        if (output / "still" / "merged.exr").exists():
            shutil.copy2(output / "still" / "merged.exr", work / "merged.exr")
        final = Path(record.frame_paths.get("1", "")) if record.frame_paths.get("1") else None
        if final is not None and final.exists():
            shutil.copy2(final, work / ("final" + final.suffix))
        harness.disconnect()
    say(
        f"{record.stage}: {len(parts)} parts over machines {sorted({p['machine'] for p in parts})}; "
        f"demo-output/still/: {', '.join(sorted(p.name for p in work.iterdir() if p.is_file()))}"
    )
    ok = (
        record.stage == "done"
        and len({p["machine"] for p in parts}) == min(machines, len(record.still_parts))
        and summary["samples"] == STILL_SAMPLES
        and sum(p["samples"] for p in parts) == STILL_SAMPLES
        and (work / "merged.exr").exists()
        and final is not None
    )
    if not ok:
        print("\n".join(log[-60:]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
