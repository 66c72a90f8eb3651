"""Each frame's expected render time, from what the machines measured in earlier jobs of a scene.

Artists resubmit the same shot many times (after a fix, a missing frame, a change of samples);
the machines report how long each frame took (contract `frame_seconds`, kept in the job's
record). A new job of the same scene hands those times to its machines (`JobRequest.frame_seconds`)
so that, with many machines, the longest frames go out first (cloud/machine/batch_worker.py).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from ..machine import contract
from .records import JobRecord, JobRequest


def same_scene(record: JobRecord, request: JobRequest) -> bool:
    """The same saved file and scene (the identity the jobs list uses), on the same engine and machine type."""
    return (
        record.job_id != request.job_id
        and bool(record.blend_name)
        and record.blend_name == request.blend_name
        and record.scene_name == request.scene_name
        and record.engine == request.engine
        and record.instance_type == request.instance_type
    )


def scale(record: JobRecord, request: JobRequest) -> float:
    """How much longer a frame takes now than it did then, from samples and pixel count.

    An approximation: render time is taken to grow in proportion to samples and to pixels, which
    holds roughly for path tracing (adaptive sampling, denoising, scene loading and fixed
    per-frame costs do not scale so); a setting not known on either side counts as unchanged.
    The times only order the frames, so a rough scale is enough.
    """
    factor = 1.0
    if record.render_samples > 0 and request.render_samples > 0:
        factor *= request.render_samples / record.render_samples
    if record.render_pixels > 0 and request.render_pixels > 0:
        factor *= request.render_pixels / record.render_pixels
    return factor


def expected_frame_seconds(request: JobRequest, records: Iterable[JobRecord]) -> tuple[str, dict[int, float]]:
    """(the job the times come from, frame -> expected seconds) for every frame of the request,
    from the most recent job of the same scene and settings that measured any; frames it did not
    measure get the median of those it did. ('', {}) when no such job exists."""
    newest = sorted(records, key=lambda r: r.created, reverse=True)
    for record in newest:
        if not record.frame_seconds or not same_scene(record, request):
            continue
        try:  # the record is a local file: read its times through the contract's bounds once more
            measured = contract.parse_frame_seconds(
                record.frame_seconds, "recorded frame_seconds", set(record.frames), len(record.frames)
            )
        except contract.ContractError:
            continue
        if not measured:
            continue
        factor = scale(record, request)
        known = {frame: seconds * factor for frame, seconds in measured.items()}
        median = statistics.median(known.values())
        seconds = {frame: known.get(frame, median) for frame in request.frames}
        return record.job_id, {
            int(f): s for f, s in contract.spec_frame_seconds(seconds, request.frames).items()
        }
    return "", {}
