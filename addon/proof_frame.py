"""Proof frame: a frame the machine rendered, rendered here too (small, in a background Blender
as the estimate does), compared with a noise-tolerant metric and shown side by side.

`plan` reads what to render on the main thread; `render_and_compare` runs in a worker thread
(a separate Blender process renders the artist's saved file, so their Blender stays free and
their scene untouched); `show` builds one image, local on the left and cloud on the right,
named with the metric, and puts it in an Image Editor.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from ..cloud.errors import CloudError
from ..cloud.job import proof_frame
from . import job_view
from .local_blender import blender_command

SCRIPT = Path(__file__).resolve().parent / "proof_render.py"
PROOF_WIDTH = 128  # the local proof renders about this wide; the cloud frame is scaled down to it
MARK = "CLOUDRENDER_PROOF "


@dataclass(frozen=True)
class ProofPlan:
    job_id: str
    blend: str
    frame: int
    cloud_png: Path
    percentage: int
    samples: int | None
    differences: list[str]


@dataclass(frozen=True)
class Proof:
    plan: ProofPlan
    local_png: Path
    result: proof_frame.ProofResult
    cause: str


def plan(job_id: str) -> ProofPlan:
    """The job's first frame that came back, and how small to render it here (main thread)."""
    files = sorted(job_view.frame_files(job_id)) or []
    pngs = [(frame, Path(path)) for frame, path in files if path.lower().endswith(".png")]
    if not pngs:
        raise CloudError(
            "No PNG frame of this job has arrived to compare with.",
            "Wait for the first frame (or render to PNG), then check the proof frame again.",
        )
    frame, cloud_png = pngs[0]
    scene = bpy.context.scene
    render = scene.render
    width = render.resolution_x * render.resolution_percentage / 100
    factor = max(1.0, width / PROOF_WIDTH)
    log = job_view.log_lines(job_id)
    return ProofPlan(
        job_id=job_id,
        blend=bpy.data.filepath,
        frame=frame,
        cloud_png=cloud_png,
        percentage=max(1, int(render.resolution_percentage / factor)),
        samples=scene.cloud_render.samples or None,
        differences=[line.split(": ", 1)[-1] for line in log if "The machine's Blender differs" in line],
    )


def render_and_compare(proof: ProofPlan, timeout_s: float = 300) -> Proof:
    """Render the frame here in a background Blender and compare it with the cloud's (worker thread)."""
    out = Path(tempfile.mkdtemp(prefix="cloud-render-proof-")) / f"local_{proof.frame:04d}.png"
    args = json.dumps(
        {"frame": proof.frame, "percentage": proof.percentage, "samples": proof.samples, "out": str(out)}
    )
    command = [*blender_command(), "-b", proof.blend, "--python", str(SCRIPT), "--", args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CloudError(
            "The local proof render did not finish.",
            "Try again, or compare the frames by eye.",
            detail=str(exc),
        ) from exc
    if done.returncode != 0 or not out.is_file():
        raise CloudError(
            "The local proof render failed.",
            "Open the file in Blender and render this frame once to see why.",
            detail=(done.stdout + done.stderr)[-2000:],
        )
    local = proof_frame.read_png(out.read_bytes())
    cloud = proof_frame.read_png(proof.cloud_png.read_bytes())
    cloud = proof_frame.resize(cloud, local.width, local.height)
    result = proof_frame.compare(local, cloud)
    diffs: list[dict[str, Any]] = [
        {"what": "addon", "message": d} for d in proof.differences if "add-on" in d
    ]
    diffs += [{"what": "ocio_config", "message": d} for d in proof.differences if "add-on" not in d]
    cause = "" if result.match else proof_frame.likely_cause(diffs, [])
    return Proof(proof, out, result, cause)


def _pixels(path: Path) -> tuple[np.ndarray, str]:
    image = bpy.data.images.load(str(path), check_existing=False)
    size: Any = image.size
    width, height = int(size[0]), int(size[1])
    pixels = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    name = image.name
    bpy.data.images.remove(image)
    return pixels.reshape(height, width, 4), name


def open_editor() -> None:
    """An Image Editor for the proof, opened from an operator (a new window, the layout kept)."""
    if not job_view._image_editors():
        job_view._new_window_area("IMAGE_EDITOR")


def show(proof: Proof) -> bpy.types.Image:
    """Local on the left, cloud (scaled to the same size) on the right, in an Image Editor (main thread)."""
    local, _ = _pixels(proof.local_png)
    cloud, _ = _pixels(proof.plan.cloud_png)
    height, width = local.shape[:2]
    ys = (np.arange(height) * cloud.shape[0] // height).clip(0, cloud.shape[0] - 1)
    xs = (np.arange(width) * cloud.shape[1] // width).clip(0, cloud.shape[1] - 1)
    both = np.concatenate([local, cloud[ys][:, xs]], axis=1)
    verdict = "matches" if proof.result.match else "DIFFERS"
    share = f"{proof.result.metric:.1%} of pixels differ"
    name = f"Proof {proof.plan.job_id} frame {proof.plan.frame}: local | cloud, {verdict} ({share})"
    for old in [i for i in bpy.data.images if i.name.startswith(f"Proof {proof.plan.job_id} frame ")]:
        bpy.data.images.remove(old)  # one proof per job: the latest
    image = bpy.data.images.new(name, width * 2, height, alpha=True)
    image.pixels.foreach_set(both.ravel())
    image["cloud_render_proof"] = proof.result.metric
    image["cloud_render_proof_match"] = proof.result.match
    editors = job_view._image_editors() or [
        a.spaces.active for a in job_view._new_window_area("IMAGE_EDITOR")
    ]
    for space in editors:
        space.image = image
    return image


def on_event(event: Any) -> None:
    """Proof Frame First: when a job that asked for it sends its quote, prove a scout frame here
    and answer the machine: go on when the frames match and the quote is under the cap."""
    from ..cloud.job.events import QuoteReady
    from . import pump

    if not isinstance(event, QuoteReady) or not pump.manager_exists():
        return
    manager = pump.manager()
    try:
        record = manager.store.load(event.job_id)
    except (OSError, ValueError, KeyError):
        return
    if not getattr(record, "proof_first", False):
        return
    job_id = event.job_id
    try:
        planned = plan(job_id)
    except CloudError as error:
        job_view.say(job_id, message=error.message, action="Go on or stop the job with the buttons below.")
        return
    under_cap = bool(event.under_cap)

    def judged(proof: Proof | None, error: CloudError | None) -> None:
        if error is not None or proof is None:
            job_view.say(
                job_id,
                message=error.message if error else "The proof frame could not be made.",
                action="Go on or stop the job with the buttons below.",
            )
            return
        show(proof)
        words = proof.result.words()
        if proof.result.match and under_cap:
            job_view.say(job_id, message=words + " Going on with every frame.", action="")
            pump.in_background(lambda: manager.answer_quote(job_id, True), lambda _r, _e: None)
        else:
            cause = f" Likely cause: {proof.cause}" if proof.cause else ""
            job_view.say(
                job_id, message=words + cause, action="Go on anyway, or stop and keep the scout frames."
            )
        job_view.redraw()

    pump.in_background(lambda: render_and_compare(planned), judged)
