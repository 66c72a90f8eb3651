"""One still on many machines end to end: the product's still engine and job thread, moto's
Batch running each array child as a local machine (dev/batch_simulator.py), real Cycles renders
of sample subsets, the exact merge on the machine that finds every part in, and the final image
back in the output folder. The merged Combined pass is compared with one machine's render of
every sample of the same scene (../shared/recipes/still-on-n-machines.md: equal to about 1e-7).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cloud.aws.session import client
from cloud.job import still_plan
from cloud.job.events import LogLines
from cloud.machine import still_worker
from cloud.machine.still_parts import read_exr
from dev.batch_job import make_scene, start_job
from tests.e2e import test_batch_job as batch_e2e
from tests.e2e.test_batch_job import finished, nothing_left

pytestmark = pytest.mark.slow

world, sim = batch_e2e.world, batch_e2e.sim  # the same emulated account with Batch, fixtures

TOTAL = 48  # three parts of 16 (still_plan.MIN_PART_SAMPLES) on three machines

# One machine's render of every sample, as the still's parts render theirs (adaptive sampling
# and denoising off, no compositing), its Combined pass saved as a 32-bit EXR.
REFERENCE = """
import bpy, json, sys
args = json.loads(sys.argv[-1])
bpy.ops.wm.open_mainfile(filepath=args["blend"])
scene = bpy.context.scene
scene.cycles.samples = args["samples"]
scene.cycles.use_adaptive_sampling = False
scene.cycles.use_denoising = False
scene.render.use_compositing = False
settings = scene.render.image_settings
if hasattr(settings, "media_type"):
    settings.media_type = "IMAGE"
settings.file_format = "OPEN_EXR"
settings.color_depth = "32"
settings.color_mode = "RGBA"
bpy.ops.render.render(write_still=False)
bpy.data.images["Render Result"].save_render(args["output"], scene=scene)
"""


def reference_render(blend: Path, output: Path) -> dict[str, np.ndarray]:
    args = json.dumps({"blend": str(blend), "samples": TOTAL, "output": str(output)})
    subprocess.run([sys.executable, "-c", REFERENCE, args], check=True, capture_output=True, timeout=300)
    image = read_exr(str(output))
    return {name.rsplit(".", 1)[-1]: pixels for name, pixels in image.channels.items()}


def test_a_still_is_cut_into_parts_merged_exactly_and_comes_back(sim, tmp_path):
    scene = make_scene(tmp_path / "scene" / "still.blend", frames=1, size=32, samples=TOTAL)
    job = start_job(sim, scene, [1], 3, tmp_path / "work", still_samples=TOTAL)
    finished(job)
    rec = job.record
    assert rec.stage == "done", (rec.message, rec.action)
    assert rec.cloud_engine == "still"
    assert rec.still_parts == [[0, 16], [16, 16], [32, 16]]
    assert rec.frames_done == [1]
    assert rec.message == (
        "Frame 1 rendered on 3 machines: 48 samples in 3 parts, merged exactly, denoised and composited once."
    )

    lines = [line for e in job.events.drain(2.0, 100_000) if isinstance(e, LogLines) for line in e.lines]
    rendered = [line for line in lines if "rendering part" in line]
    assert len(rendered) == 3, "\n".join(lines[-60:])  # each part once, whichever machine claimed it
    # Each part's Blender first enabled the travelling add-ons and compared the environment, as
    # for frames (prepare_blender.py): said once per machine.
    assert any("environment: same Blender build" in line for line in lines), "\n".join(lines[-60:])
    merges = [line for line in lines if "the still is merged and uploaded" in line]
    assert len(merges) == 1, "\n".join(lines[-60:])  # one machine merged, denoised and composited
    # The first machine to finish a part claimed the merge and added the parts as they landed.
    claimed = [
        line for line in lines if re.search(r"merging here: \d of 3 parts in, each added as it lands", line)
    ]
    assert len(claimed) == 1, "\n".join(lines[-60:])
    assert any("merged 3 parts (48 samples), each added as it landed" in line for line in lines)
    # The merged passes were written in memory for the finish where this computer's /dev/shm
    # has room (a container's 64 MB has not: then on disk), and that folder went with the machine.
    memory = [m for line in lines if (m := re.search(r"written in memory for the finish \((.+)\)", line))]
    shm = os.statvfs(still_worker.MEMORY_FOLDER) if os.path.isdir(still_worker.MEMORY_FOLDER) else None
    roomy = shm is not None and shm.f_bavail * shm.f_frsize > 2 * still_worker.MEMORY_FOLDER_SPARE
    assert len(memory) == (1 if roomy else 0), "\n".join(lines[-60:])
    assert not any(Path(m.group(1)).exists() for m in memory)
    # Honest machines agree with their part and merge claims: no end document of theirs is refused.
    assert not [line for line in lines if "Ignored what the machine wrote" in line]

    out = Path(rec.output_dir)
    final = Path(rec.frame_paths["1"])
    assert final.parent == out and final.suffix == ".png" and final.stat().st_size > 0
    merged = read_exr(str(out / "still" / "merged.exr"))
    assert (merged.width, merged.height) == (32, 32)
    channels = {name.rsplit(".", 1)[-1]: pixels for name, pixels in merged.channels.items()}
    single = reference_render(scene, tmp_path / "single.exr")
    worst = max(float(np.abs(channels[c] - single[c]).max()) for c in "RGB")
    assert worst < 1e-4, worst  # the merge of the parts is the single render
    # One e-mail notice for the job, from the machine that merged (cloud/machine/notice.py).
    listed = client(sim.settings, "s3").list_objects_v2(
        Bucket=rec.bucket, Prefix=f"jobs/{rec.job_id}/out/notice/"
    )
    notices = [o["Key"].rsplit("/", 2)[-2:] for o in listed.get("Contents", [])]
    assert len(notices) == 1 and notices[0][0] == "done", notices
    assert re.fullmatch(
        r"still\.blend_is_done_1_of_1_frames_about_\d+\.\d\d_USD_frames_kept_14_days", notices[0][1]
    )
    nothing_left(sim, job)


def test_a_machine_lost_mid_part_is_retried_and_renders_that_part_alone(sim, tmp_path):
    """AWS takes a machine's host in the middle of a part: Batch's retry of that child (played by
    the harness: moto never retries) first renders the part its lost attempt claimed, and only
    that one; the machine that then finds every part in merges them once. The parts are larger
    here: one Blender renders a machine's parts back to back, and a 32 px part ends within the
    harness's aim (50 ms after it starts)."""
    scene = make_scene(tmp_path / "scene" / "still.blend", frames=1, size=128, samples=TOTAL)
    job = start_job(sim, scene, [1], 2, tmp_path / "work", still_samples=TOTAL)
    batch_e2e.submitted(job)
    index, lost = sim.kill_first_mid_part(job.record.launch_id, 2)
    sim.rerun(job.record.launch_id, index, attempt=2)
    finished(job)
    rec = job.record
    assert rec.stage == "done", (rec.message, rec.action)
    lines = [line for e in job.events.drain(2.0, 100_000) if isinstance(e, LogLines) for line in e.lines]
    assert any(f"claimed: parts [{lost}]" in line for line in lines), "\n".join(lines[-60:])
    # Every part was rendered to the end (the lost attempt's own lines may never have shipped).
    rendered = [int(part) for line in lines for part in re.findall(r"part (\d+) rendered in", line)]
    assert sorted(rendered) == [1, 2, 3], rendered
    assert sum("the still is merged and uploaded" in line for line in lines) == 1
    assert Path(rec.frame_paths["1"]).stat().st_size > 0
    nothing_left(sim, job)


def test_a_machine_lost_while_merging_is_retried_and_its_retry_merges(sim, tmp_path):
    """AWS takes the host of the machine that found every part in and claimed the merge: the
    claim stays with the lost attempt, so Batch's retry of that child sees it is its own earlier
    attempt's and merges in its place (before, nobody merged and the still never came)."""
    scene = make_scene(tmp_path / "scene" / "still.blend", frames=1, size=64, samples=TOTAL)
    job = start_job(sim, scene, [1], 2, tmp_path / "work", still_samples=TOTAL)
    batch_e2e.submitted(job)
    index = sim.kill_merger(job.record.launch_id, 2)
    sim.rerun(job.record.launch_id, index, attempt=2)
    finished(job)
    rec = job.record
    lines = [line for e in job.events.drain(2.0, 100_000) if isinstance(e, LogLines) for line in e.lines]
    assert rec.stage == "done", (rec.message, rec.action, "\n".join(lines[-40:]))
    assert any("attempt 1 claimed the merge and was lost: merging in its place" in line for line in lines), (
        "\n".join(lines[-60:])
    )
    assert Path(rec.frame_paths["1"]).stat().st_size > 0
    nothing_left(sim, job)


def test_a_part_whose_machine_is_gone_for_good_is_rendered_by_the_merging_machine(sim, tmp_path, monkeypatch):
    """AWS takes a machine's host in the middle of a part and Batch never retries it (its
    attempts spent). The machine that merges, which adds each part as it lands, does not wait
    for that part forever: once it is overdue (twice a part's time there plus the spec's
    margin, made short here) it renders the part itself and merges; the merge still equals one
    machine's render, and its end document does not claim the part another machine held."""
    monkeypatch.setattr(still_plan, "TAKEOVER_AFTER_S", 2.0)
    # Parts long enough to be caught mid-part: at 128 px both machines once rendered every part
    # between two looks of the harness.
    scene = make_scene(tmp_path / "scene" / "still.blend", frames=1, size=192, samples=TOTAL)
    job = start_job(sim, scene, [1], 2, tmp_path / "work", still_samples=TOTAL)
    batch_e2e.submitted(job)
    _index, lost = sim.kill_first_mid_part(job.record.launch_id, 2)  # never retried
    finished(job)
    rec = job.record
    lines = [line for e in job.events.drain(2.0, 100_000) if isinstance(e, LogLines) for line in e.lines]
    assert rec.stage == "done", (rec.message, rec.action, "\n".join(lines[-40:]))
    took = [
        line for line in lines if "their machine is taken to be lost, and this machine renders them" in line
    ]
    assert len(took) == 1 and f"parts [{lost + 1}]" in took[0], "\n".join(lines[-60:])
    assert sum("the still is merged and uploaded" in line for line in lines) == 1
    assert not [line for line in lines if "Ignored what the machine wrote" in line], "\n".join(lines[-60:])
    merged = read_exr(str(Path(rec.output_dir) / "still" / "merged.exr"))
    channels = {name.rsplit(".", 1)[-1]: pixels for name, pixels in merged.channels.items()}
    single = reference_render(scene, tmp_path / "single.exr")
    worst = max(float(np.abs(channels[c] - single[c]).max()) for c in "RGB")
    assert worst < 1e-4, worst  # the part rendered in the lost machine's place merges exactly too
    nothing_left(sim, job)
