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
"""

from __future__ import annotations

import argparse
import json
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--machines", type=int, default=3)
    parser.add_argument("--frames", type=int, default=12)
    args = parser.parse_args()
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
        harness.make_scene(work / "project" / "batch_shot.blend", frames=args.frames, size=48, samples=4)
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
        print("\n" + module.addon.submit.confirmation_text(bpy.context) + "\n", flush=True)

        ops: Any = bpy.ops
        assert ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
        view = module.addon.job_view.view()
        job_id = view.job_id
        seen = {"state": "", "rows": ""}

        def finished() -> bool:
            if view.state != seen["state"]:
                seen["state"] = view.state
                say(f"{view.state}: {view.message}")
            if view.machines_text and view.machines_text != seen["rows"]:
                seen["rows"] = view.machines_text
                say("panel: " + " | ".join(view.machines_text.splitlines()))
            return view.state in FINAL

        longest = harness.drain_until(finished, timeout=600)
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


if __name__ == "__main__":
    sys.exit(main())
