"""One machine, two engines: launch to first frame back, direct EC2 against AWS Batch (emulated).

The question (issue 12): should a one-machine job keep today's direct EC2 launch or also go
through Batch? Both runs are the product's path on the same 2-frame scene (real Cycles, tiny):
the EC2 run through the instance simulator (dev/simulator.py: the user-data, the supervisor),
the Batch run through moto's Batch and the Docker API stand-in (dev/batch_simulator.py: the
same boot script fetched by the job definition's command). Measured: the job thread's launch
(for Batch: making sure of the engine, then SubmitJob) until the first frame is on this
computer. What the emulation leaves out is on paper in the issue's note: on AWS, Batch adds the
compute environment's scale-up from zero (its instance boot plus the ECS agent registering) and
the container image pull to everything EC2 pays.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cloud.job.cloud_steps import CloudSteps  # noqa: E402
from cloud.job.events import EventQueue, FrameArrived  # noqa: E402
from cloud.job.job_thread import JobRunner  # noqa: E402
from cloud.job.records import JobRecord, JobRequest, RecordStore, new_job_id  # noqa: E402
from dev.batch_job import blender_version, make_scene, start_job  # noqa: E402
from dev.batch_simulator import BatchSimulator  # noqa: E402
from dev.emulator import emulated_account  # noqa: E402
from dev.simulator import InstanceSimulator, make_blender_tarball  # noqa: E402

RUNS = 3


def first_frame(events: EventQueue, runner: JobRunner, record: JobRecord) -> float:
    """Seconds from launch to the first FrameArrived (the job then runs to its end)."""
    arrived = 0.0
    while runner.is_alive():
        for event in events.drain(0.01):
            if isinstance(event, FrameArrived) and not arrived:
                arrived = time.time()
        time.sleep(0.02)
    for event in events.drain(0.05):
        if isinstance(event, FrameArrived) and not arrived:
            arrived = time.time()
    assert record.stage == "done", (record.stage, record.message)
    return arrived - record.launched_at


def ec2_run(url: str, scene: Path, version: str, work: Path, settings) -> float:  # type: ignore[no-untyped-def]
    steps = CloudSteps(work / "state")
    bucket = steps.ensure_bucket(settings, 14)
    tarball, digest = make_blender_tarball(version, Path(tempfile.mkdtemp(prefix="boot-blender-")))
    steps.stage_blender(settings, bucket, version, tarball, digest)
    job_id = new_job_id()
    copy = work / "submit" / job_id / scene.name
    copy.parent.mkdir(parents=True)
    copy.write_bytes(scene.read_bytes())
    request = JobRequest(
        job_id=job_id,
        blend_copy=copy,
        blend_name=str(scene),
        scene_name="Scene",
        frames=[1, 2],
        output_dir=work / "frames" / job_id,
        region=settings.region,
        instance_type="c5.2xlarge",
        spot=False,
        max_cost=5.0,
        max_hours=1.0,
        price_per_hour=0.34,
        blender_version=version,
        device="CPU",
    )
    record = JobRecord.from_request(request)
    store = RecordStore(work / "records")
    events = EventQueue()
    runner = JobRunner(record, settings, events, store, steps, request, poll_seconds=0.5)
    with InstanceSimulator(url, work_root=work / "machines"):
        runner.start()
        return first_frame(events, runner, record)


def main() -> int:
    global RUNS
    if "--small" in sys.argv:
        RUNS = 1
    work = Path(tempfile.mkdtemp(prefix="boot-engines-"))
    version = blender_version()
    scene = make_scene(work / "scene" / "shot.blend", frames=2, size=16, samples=1)
    figures: dict[str, list[float]] = {"ec2": [], "batch": []}
    with BatchSimulator(work / "sim") as sim, emulated_account(moto_url=sim.url) as account:
        for run in range(RUNS):
            for engine in ("ec2", "batch"):
                account.reset()
                account.quotas.set_quota("L-1216C47A", 64.0)  # standard on-demand vCPUs
                account.quotas.set_quota("L-34B43A08", 64.0)  # standard spot vCPUs
                folder = work / f"{engine}{run}"
                if engine == "ec2":
                    seconds = ec2_run(sim.url, scene, version, folder, sim.settings)
                else:
                    job = start_job(sim, scene, [1, 2], 1, folder, version=version)
                    seconds = first_frame(job.events, job.runner, job.record)
                figures[engine].append(seconds)
                print(f"run {run + 1} {engine:5}: launch to first frame back {seconds:5.2f} s", flush=True)
    ec2, batch = statistics.median(figures["ec2"]), statistics.median(figures["batch"])
    print(
        f"median: EC2 {ec2:.2f} s, Batch {batch:.2f} s (emulated; AWS adds scale-up and image pull to Batch)"
    )
    print(
        f"RESULT ec2_first_frame_s={ec2:.2f} batch_first_frame_s={batch:.2f} batch_over_ec2={batch / ec2:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
