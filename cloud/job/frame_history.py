"""Each frame's expected render time, from what the machines measured in earlier jobs of a scene.

Artists resubmit the same shot many times (after a fix, a missing frame, a change of samples);
the machines report how long each frame took (contract `frame_seconds`, kept in the job's
record). A new job of the same scene hands those times to its machines (`JobRequest.frame_seconds`)
so that, with many machines, the longest frames go out first (cloud/machine/batch_worker.py).

Times carry only when what drives a frame's cost is the same: the engine and machine type, and the
sampling (adaptive or not, its threshold), denoiser, light paths and time limit (`render_drivers`);
samples and pixels may differ, scaled, but only with adaptive sampling off: with it on, the samples
are a ceiling and a frame stops where its noise does. A job that rendered under other settings
predicted 3-5 s a frame for frames of 66-77 s.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping

from ..machine import contract
from .records import JobRecord, JobRequest

# What each driver is called when the log says which differed.
DRIVER_WORDS = {
    "adaptive": "adaptive sampling",
    "denoiser": "denoiser",
    "bounces": "light paths",
    "time_limit": "time limit",
    "light_tree": "light tree",
    "raytracing": "ray tracing",
    "shadows": "shadows",
    "volumes": "volumes",
}


def drivers_text(drivers: Mapping[str, object]) -> str:
    """One stable text of the settings that drive a frame's cost, stored with the job."""
    return ";".join(f"{key}={drivers[key]}" for key in sorted(drivers))


def drivers_of(text: str) -> dict[str, str]:
    """drivers_text's inverse, lenient: a record is a local file and may be older or damaged."""
    found: dict[str, str] = {}
    for item in text.split(";"):
        key, sep, value = item.partition("=")
        if sep and key:
            found[key] = value
    return found


def differing(record: JobRecord, request: JobRequest) -> list[str]:
    """The cost drivers that differ between an earlier job and this one, in words ([]: none)."""
    then, now = drivers_of(record.render_drivers), drivers_of(request.render_drivers)
    if not then or not now:  # one side unknown (a job from before they were recorded)
        named = ["render settings"] if record.render_drivers != request.render_drivers else []
    else:
        keys = sorted(set(then) | set(now))
        named = [
            DRIVER_WORDS.get(key, key.replace("_", " ")) for key in keys if then.get(key) != now.get(key)
        ]
    if (adaptive_on(record) or adaptive_on(request)) and record.render_samples != request.render_samples:
        named.append("samples (with adaptive sampling on)")
    return named


def adaptive_on(job: JobRecord | JobRequest) -> bool:
    return drivers_of(job.render_drivers).get("adaptive", "off") != "off"


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
    from the most recent job of the same scene and cost drivers that measured any; frames it did not
    measure get the median of those it did. ('', {}) when no such job exists."""
    newest = sorted(records, key=lambda r: r.created, reverse=True)
    for record in newest:
        if not record.frame_seconds or not same_scene(record, request) or differing(record, request):
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


def not_carried(request: JobRequest, records: Iterable[JobRecord]) -> tuple[str, list[str]]:
    """(the most recent job of this scene with frame times, what differed) when its times were
    not carried because a cost driver changed; ('', []) otherwise. Said in the job log, so that
    an artist who changed the sampling knows why nothing came from the last job."""
    for record in sorted(records, key=lambda r: r.created, reverse=True):
        if record.frame_seconds and same_scene(record, request):
            return record.job_id, differing(record, request)
    return "", []
