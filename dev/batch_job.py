"""A job over many emulated machines, driven as the add-on's job thread drives it (no UI).

Shared by the Batch e2e tests, `make demo MACHINES=3` and bench/scaleout.py: a small scene made
with bpy in a separate process, a JobRequest for it, the Blender tarball staged in the bucket's
cache, and the product's job thread (`JobRunner` with a `BatchEngine`) that packs, uploads,
submits the array job to the emulated Batch and follows it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cloud.aws import batch
from cloud.aws.session import AwsSettings
from cloud.job.batch_engine import BatchEngine
from cloud.job.cloud_steps import CloudSteps
from cloud.job.events import EventQueue
from cloud.job.job_thread import JobRunner
from cloud.job.records import JobRecord, JobRequest, RecordStore, new_job_id
from cloud.job.still_engine import StillEngine
from dev.batch_simulator import BatchSimulator
from dev.emulator import create_artist
from dev.simulator import make_blender_tarball

ROOT = Path(__file__).resolve().parent.parent

SCENE = r"""
import sys, bpy
path, frames, size, samples, heavy = sys.argv[-5], *(int(a) for a in sys.argv[-4:])
bpy.ops.wm.read_homefile(use_factory_startup=True)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = samples
scene.cycles.use_denoising = False
scene.render.resolution_x = scene.render.resolution_y = size
scene.render.resolution_percentage = 100
scene.frame_start, scene.frame_end = 1, frames
scene.render.image_settings.file_format = "PNG"
scene.render.filepath = "//render/frame_####"
cube = bpy.data.objects["Cube"]
cube.rotation_euler = (0.3, 0.2, 0.0)
cube.keyframe_insert("rotation_euler", frame=1)
cube.rotation_euler = (0.3, 0.2, 1.2)
cube.keyframe_insert("rotation_euler", frame=max(frames, 2))
if heavy:  # evaluated again for every frame: slower frames without a bigger file
    subsurf = cube.modifiers.new("subsurf", "SUBSURF")
    subsurf.levels = subsurf.render_levels = heavy
    cube.modifiers.new("wave", "WAVE")
bpy.ops.wm.save_as_mainfile(filepath=path)
"""


# A shot whose frames cost 1x to about 3x in a repeating pattern of four, as the camera sees
# more of a volume (its scale keyed, held per frame): what a cost map must find on its own.
UNEVEN_SCENE = r"""
import sys, bpy
path, frames, width, height, samples = sys.argv[-5], *(int(a) for a in sys.argv[-4:])
bpy.ops.wm.read_homefile(use_factory_startup=True)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = samples
scene.cycles.use_adaptive_sampling = False
scene.cycles.use_denoising = False
scene.render.resolution_x, scene.render.resolution_y = width, height
scene.render.resolution_percentage = 100
scene.frame_start, scene.frame_end = 1, frames
scene.render.image_settings.file_format = "PNG"
scene.render.filepath = "//render/frame_####"
cube = bpy.data.objects["Cube"]
fog = bpy.data.materials.new("fog")
fog.use_nodes = True
nodes = fog.node_tree.nodes
nodes.remove(nodes["Principled BSDF"])
volume = nodes.new("ShaderNodeVolumePrincipled")
volume.inputs["Density"].default_value = 2.0
fog.node_tree.links.new(volume.outputs[0], nodes["Material Output"].inputs["Volume"])
cube.data.materials.append(fog)
bpy.context.preferences.edit.keyframe_new_interpolation_type = "CONSTANT"
for frame in range(1, frames + 1):
    size = 0.5 + 1.1 * ((frame - 1) % 4) / 3
    cube.scale = (size, size, size)
    cube.keyframe_insert("scale", frame=frame)
bpy.ops.wm.save_as_mainfile(filepath=path)
"""


def make_uneven_scene(
    path: Path,
    frames: int,
    width: int = 320,
    height: int = 180,
    samples: int = 32,
    python: str = sys.executable,
) -> Path:
    """A Cycles shot whose frames 4, 8, 12, ... cost most and 1, 5, 9, ... least (UNEVEN_SCENE)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [python, "-c", UNEVEN_SCENE, str(path), str(frames), str(width), str(height), str(samples)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return path


def cost_map_command(blend_copy: Path, python: str = sys.executable) -> list[str]:
    """The add-on's cost map command (addon/local_blender.py) for the bpy module in `python`."""
    return [
        python,
        str(ROOT / "cloud" / "machine" / "blender_launcher.py"),
        "-b",
        str(blend_copy),
        "--python",
        str(ROOT / "addon" / "cost_map_render.py"),
        "--",
    ]


def make_scene(
    path: Path, frames: int, size: int = 32, samples: int = 2, heavy: int = 0, python: str = sys.executable
) -> Path:
    """A tiny Cycles scene saved at `path`, made by bpy in its own process; `heavy`: subdivision
    levels evaluated every frame (8: about a second a frame here), for jobs that must last."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [python, "-c", SCENE, str(path), str(frames), str(size), str(samples), str(heavy)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return path


def blender_version(python: str = sys.executable) -> str:
    out = subprocess.run(
        [python, "-c", "import bpy; print(bpy.app.version_string.split()[0])"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.stdout.strip().splitlines()[-1]


class EmulatedBatchEngine(BatchEngine):
    """The product's Batch engine, with the harness playing AWS's retry: moto never retries a
    child, so a child the simulator re-runs (`BatchSimulator.rerun`) reads as RUNNING again,
    with one more attempt, while that re-run lives (as the retried child would on AWS)."""

    def __init__(self, sim: BatchSimulator | None = None) -> None:
        super().__init__()
        self.sim = sim

    def children(self, settings: AwsSettings, record: JobRecord) -> list[batch.Child]:
        kids = super().children(settings, record)
        again = self.sim.reran if self.sim is not None else {}
        return [
            replace(c, status="RUNNING", stopped_at=0.0, attempts=c.attempts + 1)
            if c.index in again and again[c.index].poll() is None
            else c
            for c in kids
        ]


class EmulatedStillEngine(StillEngine, EmulatedBatchEngine):
    """The product's still engine, with the same retries played by the harness."""


@dataclass
class BatchJob:
    runner: JobRunner
    record: JobRecord
    events: EventQueue
    steps: CloudSteps
    engine: EmulatedBatchEngine


def start_job(
    sim: BatchSimulator,
    scene: Path,
    frames: list[int],
    machines: int,
    work: Path,
    *,
    max_cost: float = 5.0,
    max_hours: float = 1.0,
    price_per_hour: float = 0.34,
    frame_order: str = "sequential",
    version: str | None = None,
    steps_class: type[CloudSteps] = CloudSteps,
    blender: tuple[Path, str] | None = None,
    frame_seconds: dict[int, float] | None = None,
    still_samples: int = 0,
    spot: bool = True,
    cost_map: bool = False,
    **request_fields: Any,
) -> BatchJob:
    """Stage Blender in the bucket, then start the product's runner on a many-machine job,
    signed as the account's IAM user "artist" holding Cloud Render's two policies (made again
    after each reset of the account): the strict layer authorises every call the job makes.
    `still_samples`: one Cycles frame of that many samples, split over the machines (the still
    engine), as a submit of one frame on many machines is. `request_fields`: more of the
    JobRequest as the add-on fills it (the add-ons that travel, the artist's fingerprint)."""
    key_id, secret = create_artist(sim.settings, ("render", "setup"))
    settings = replace(sim.settings, access_key_id=key_id, secret_access_key=secret)
    steps = steps_class(work / "state")
    engine = EmulatedStillEngine(sim) if still_samples else EmulatedBatchEngine(sim)
    bucket = steps.ensure_bucket(settings, 14)
    version = version or blender_version()
    # `blender`: (tarball, sha256) of another stand-in build (a benchmark's fixed-time fake).
    tarball, digest = blender or make_blender_tarball(
        version, Path(tempfile.mkdtemp(prefix="cloud-render-blender-"))
    )
    steps.stage_blender(settings, bucket, version, tarball, digest)
    job_id = new_job_id()
    copy = work / "submit" / job_id / scene.name  # as submit.save_copy does: removed after upload
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(scene, copy)
    request = JobRequest(
        job_id=job_id,
        blend_copy=copy,
        blend_name=str(scene),
        scene_name="Scene",
        frames=list(frames),
        output_dir=work / "frames" / job_id,
        region=settings.region,
        instance_type="c5.2xlarge",  # the emulated machines render on the CPU
        spot=spot,
        max_cost=max_cost,
        max_hours=max_hours,
        price_per_hour=price_per_hour,
        blender_version=version,
        device="CPU",
        frame_order=frame_order,
        machines=machines,
        frame_seconds=dict(frame_seconds or {}),
        engine="CYCLES" if still_samples else "",
        samples=still_samples or None,
        render_samples=still_samples,
        # `cost_map`: a first submission as the add-on makes it, which maps its frames' costs here
        cost_map_command=cost_map_command(copy) if cost_map else [],
        **request_fields,
    )
    record = JobRecord.from_request(request)
    store = RecordStore(work / "records")
    store.save(record)
    events = EventQueue()
    runner = JobRunner(record, settings, events, store, steps, request, poll_seconds=0.5, engine=engine)
    runner.start()
    return BatchJob(runner, record, events, steps, engine)


FRAME_EVENT = re.compile(r'"event": "(frame|frame_done)", "frame": (-?\d+)')


def render_history(
    sim: BatchSimulator, batch_job_id: str
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """From every machine's render log: (frame -> machines that started it, frame -> machines that
    finished it), machines by label ("0", "1", "0#2" for index 0's second attempt)."""
    started: dict[int, list[str]] = {}
    finished: dict[int, list[str]] = {}
    for label, folder in sim.folders(batch_job_id):
        log = folder / "root" / "run" / "render.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        for kind, frame in FRAME_EVENT.findall(text):
            (started if kind == "frame" else finished).setdefault(int(frame), []).append(label)
    return started, finished


def twice(history: dict[int, list[str]]) -> list[int]:
    return sorted(frame for frame, machines in history.items() if len(machines) > 1)
