"""`make demo` (second part): a 12-frame scene rendered on 3 emulated machines through AWS Batch.

moto's Batch runs each array child as a machine on this computer (dev/batch_simulator.py); the
product's Batch engine creates the roles, launch template, compute environment, queue and job
definition, submits one array job, and its job thread follows every machine and brings the
frames back. The job is driven through the job thread (`cloud/`), not through the panel: the
Machines setting is not yet in the panel. Writes demo-output/summary.json:

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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # dev tooling runs from a checkout

from dev.batch_job import make_scene, render_history, start_job, twice  # noqa: E402
from dev.batch_simulator import BatchSimulator  # noqa: E402
from dev.emulator import emulated_account  # noqa: E402

OUT = ROOT / "demo-output"


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

    scene = make_scene(work / "project" / "batch_shot.blend", frames=args.frames, size=48, samples=4)
    say(f"scene: {args.frames} frames, 48x48, 4 samples")
    with BatchSimulator(work / "sim") as sim, emulated_account(moto_url=sim.url, log_path=None) as account:
        account.quotas.set_quota("L-34B43A08", 8.0 * max(args.machines, 4))  # standard spot vCPUs
        say(f"emulated AWS with Batch at {sim.url}")
        frames = list(range(1, args.frames + 1))
        job = start_job(sim, scene, frames, args.machines, work, frame_order="preview_first")
        seen = ""
        while job.runner.is_alive():
            if job.record.stage != seen:
                seen = job.record.stage
                say(f"{seen}: {job.record.message}")
            for event in job.events.drain(0.01):
                lines = getattr(event, "lines", ())
                for line in lines:
                    if "claimed frame" in line or "Machine" in line and "ended" in line:
                        say(line)
            time.sleep(0.2)
        rec = job.record
        say(f"{rec.stage}: {rec.message} {rec.action}".strip())
        started_by, done_by = render_history(sim, rec.instance_id)
        summary = {
            "engine": "aws-batch",
            "machines": args.machines,
            "batch_job": rec.instance_id,
            "frames": {str(frame): done_by[frame][0] for frame in sorted(done_by)},
            "rendered_twice": twice(done_by),
            "started_twice": twice(started_by),
            "frames_arrived": sorted(rec.frames_done),
            "stage": rec.stage,
        }
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    for path in sorted(Path(rec.output_dir).rglob("*.png")):
        shutil.copy2(path, work / path.name)
    machines = sorted(set(summary["frames"].values()))
    say(f"summary: frames from machines {machines}, rendered twice: {summary['rendered_twice']}")
    print(json.dumps(summary["frames"]))
    ok = rec.stage == "Done" and len(machines) >= 2 and not summary["rendered_twice"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
