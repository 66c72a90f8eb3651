"""Per-scene render settings (saved in the .blend, never secrets) and the live job view.

The job view and the jobs list live on the WindowManager, whose Python properties Blender never
writes to a .blend: a scene's bytes must not change because a job ran, or every resubmit would
upload the scene file again. The jobs list is a mirror of the job records on disk
(`jobs_list.py`), rebuilt from them; the records are the one source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..cloud.job.frame_list import parse_frame_list, scene_range

REGIONS = [
    ("us-east-1", "US East (N. Virginia)", ""),
    ("us-east-2", "US East (Ohio)", ""),
    ("us-west-2", "US West (Oregon)", ""),
    ("ca-central-1", "Canada (Central)", ""),
    ("eu-west-1", "Europe (Ireland)", ""),
    ("eu-central-1", "Europe (Frankfurt)", ""),
    ("eu-west-2", "Europe (London)", ""),
    ("eu-north-1", "Europe (Stockholm)", ""),
    ("ap-northeast-1", "Asia Pacific (Tokyo)", ""),
    ("ap-southeast-2", "Asia Pacific (Sydney)", ""),
    ("ap-south-1", "Asia Pacific (Mumbai)", ""),
    ("sa-east-1", "South America (Sao Paulo)", ""),
]


def scene_samples(scene: bpy.types.Scene) -> int:
    cycles = getattr(scene, "cycles", None)
    if scene.render.engine == "CYCLES" and cycles is not None:
        return int(cycles.samples)
    return int(getattr(getattr(scene, "eevee", None), "taa_render_samples", 0) or 64)


def _get_use_samples(self: bpy.types.PropertyGroup) -> bool:
    return bool(self.samples > 0)  # type: ignore[attr-defined]


def _set_use_samples(self: bpy.types.PropertyGroup, on: bool) -> None:
    """Ticked: start from the scene's own samples; unticked: 0, "keep the scene's"."""
    if not on:
        self.samples = 0  # type: ignore[attr-defined]
    elif not self.samples:  # type: ignore[attr-defined]
        self.samples = max(1, scene_samples(self.id_data))  # type: ignore[attr-defined]


def _get_use_resolution(self: bpy.types.PropertyGroup) -> bool:
    return bool(self.resolution_percentage > 0)  # type: ignore[attr-defined]


def _set_use_resolution(self: bpy.types.PropertyGroup, on: bool) -> None:
    if not on:
        self.resolution_percentage = 0  # type: ignore[attr-defined]
    elif not self.resolution_percentage:  # type: ignore[attr-defined]
        self.resolution_percentage = self.id_data.render.resolution_percentage or 100  # type: ignore[attr-defined]


class CloudRenderSceneSettings(bpy.types.PropertyGroup):
    """What to render and how much it may cost. Travels with the .blend."""

    region: EnumProperty(name="Region", items=REGIONS, default="us-east-1")  # type: ignore[valid-type]
    instance_type: StringProperty(  # type: ignore[valid-type]
        name="Machine", description="EC2 instance type that renders the job", default="g4dn.xlarge"
    )
    use_spot: BoolProperty(  # type: ignore[valid-type]
        name="Spot",
        description="Use spare AWS capacity at a discount; the machine can be taken back, "
        "finished frames are kept and the rest can be relaunched",
        default=False,
    )
    use_custom_frames: BoolProperty(name="Custom Frames", default=False)  # type: ignore[valid-type]
    frame_list: StringProperty(  # type: ignore[valid-type]
        name="Frames",
        description="Frames to render, e.g. 1-10,15,20-30x2 (every 2nd frame from 20 to 30)",
        default="",
    )
    samples: IntProperty(  # type: ignore[valid-type]
        name="Samples", description="Override the scene's samples (0 keeps the scene's)", default=0, min=0
    )
    resolution_percentage: IntProperty(  # type: ignore[valid-type]
        name="Resolution %", description="0 keeps the scene's", default=0, min=0, max=400
    )
    # Overrides drawn as overrides: a tick box over the 0-means-the-scene's values above
    # (stored nowhere: they read and write samples / resolution_percentage).
    use_samples: BoolProperty(  # type: ignore[valid-type]
        name="Override Samples",
        description="Render with other samples than the scene's (unticked: the scene's own)",
        get=_get_use_samples,
        set=_set_use_samples,
    )
    use_resolution: BoolProperty(  # type: ignore[valid-type]
        name="Override Resolution %",
        description="Render at another resolution % than the scene's (unticked: the scene's own)",
        get=_get_use_resolution,
        set=_set_use_resolution,
    )
    file_format: EnumProperty(  # type: ignore[valid-type]
        name="Format",
        items=[
            ("SCENE", "As in Scene", "Keep the scene's output format"),
            ("PNG", "PNG", ""),
            ("OPEN_EXR", "OpenEXR", ""),
            ("OPEN_EXR_MULTILAYER", "OpenEXR Multilayer", ""),
            ("JPEG", "JPEG", ""),
        ],
        default="SCENE",
    )
    movie_frames: EnumProperty(  # type: ignore[valid-type]
        name="Movie Frames",
        description="A movie output is rendered as these frames first, then encoded once all are in",
        items=[
            ("PNG", "PNG", "8-bit frames with the view transform applied (smaller)"),
            ("OPEN_EXR", "OpenEXR", "Linear float frames, for grading or compositing later"),
        ],
        default="PNG",
    )
    output_dir: StringProperty(  # type: ignore[valid-type]
        name="Output", subtype="DIR_PATH", default="//cloud_renders/{job}/"
    )
    machines: IntProperty(  # type: ignore[valid-type]
        name="Machines",
        description="Split the frames over this many machines (AWS Batch in your account); "
        "about the same machine time, plus one boot per machine. Max Cost and Max Hours cover them all",
        default=1,
        min=1,
        max=256,
    )
    finish_within_minutes: IntProperty(  # type: ignore[valid-type]
        name="Finish In (min)",
        description="Finish within this many minutes: instead of Machines, use the fewest machines "
        "that finish in time, from the estimate. 0: no deadline, Machines is used as set",
        default=0,
        min=0,
    )
    max_cost: FloatProperty(  # type: ignore[valid-type]
        name="Max Cost ($)",
        description="Hard cap: the machine is stopped when reached",
        default=5.0,
        min=0.05,
    )
    max_hours: FloatProperty(  # type: ignore[valid-type]
        name="Max Hours", description="Hard cap on machine time", default=2.0, min=0.1, max=72.0
    )
    quote_first: BoolProperty(  # type: ignore[valid-type]
        name="Quote First",
        description="Render the first, middle and last frame, measure the real price, and go on by "
        "itself only if the whole job stays under Max Cost (otherwise it asks)",
        default=False,
    )
    proof_first: BoolProperty(  # type: ignore[valid-type]
        name="Proof Frame First",
        description="With the first scout frame back, render it here too and compare: go on only if "
        "the cloud frame matches (and the quote is under Max Cost); otherwise stop and ask",
        default=False,
    )
    render_despite_differences: BoolProperty(  # type: ignore[valid-type]
        name="Render Despite Differences",
        description="Render even when the cloud machine's Blender, add-ons or colour settings differ "
        "from this one in ways that change the pixels (the differences are listed in the job log)",
        default=False,
    )
    frame_order: EnumProperty(  # type: ignore[valid-type]
        name="Order",
        items=[
            ("SEQUENTIAL", "In Order", "Render frames in order"),
            ("PREVIEW_FIRST", "Preview First", "Every 8th frame, then every 4th, ... to see the shot early"),
        ],
        default="SEQUENTIAL",
    )


@dataclass(frozen=True)
class RenderSettings:
    """The scene's Cloud Render settings as plain values, read once (`snapshot`): a submit and its
    confirmation work from one reading, not from properties that may change between two reads."""

    region: str
    instance_type: str
    use_spot: bool
    use_custom_frames: bool
    frame_list: str
    samples: int  # 0: the scene's
    resolution_percentage: int  # 0: the scene's
    file_format: str  # "SCENE": the scene's
    movie_frames: str
    output_dir: str
    machines: int
    finish_within_minutes: int
    max_cost: float
    max_hours: float
    quote_first: bool
    proof_first: bool
    render_despite_differences: bool
    frame_order: str


def snapshot(scene: Any) -> RenderSettings:
    """`scene.cloud_render` read once, each value as its plain Python type."""
    settings = scene.cloud_render
    return RenderSettings(**{f.name: getattr(settings, f.name) for f in fields(RenderSettings)})


class CloudRenderJobView(bpy.types.PropertyGroup):
    """What the panel shows of the current job (WindowManager.cloud_render_job, never saved)."""

    job_id: StringProperty()  # type: ignore[valid-type]
    state: StringProperty(default="")  # type: ignore[valid-type]
    message: StringProperty(default="")  # type: ignore[valid-type]
    action: StringProperty(default="")  # type: ignore[valid-type]
    error_code: StringProperty(default="")  # type: ignore[valid-type]
    progress: FloatProperty(min=0.0, max=1.0, default=0.0)  # type: ignore[valid-type]
    frames_done: IntProperty(default=0)  # type: ignore[valid-type]
    frames_total: IntProperty(default=0)  # type: ignore[valid-type]
    current_frame: IntProperty(default=0)  # type: ignore[valid-type]
    cost_so_far: FloatProperty(default=0.0)  # type: ignore[valid-type]
    machines_text: StringProperty(default="")  # type: ignore[valid-type]  # one line per machine
    eta_s: FloatProperty(default=0.0)  # type: ignore[valid-type]  # time left, many machines
    projected_cost: FloatProperty(default=0.0)  # type: ignore[valid-type]
    log_tail: StringProperty(default="")  # type: ignore[valid-type]
    sample: IntProperty(default=0)  # type: ignore[valid-type]
    samples_total: IntProperty(default=0)  # type: ignore[valid-type]
    device: StringProperty(default="")  # type: ignore[valid-type]
    seconds_per_frame: FloatProperty(default=0.0)  # type: ignore[valid-type]
    price_per_hour: FloatProperty(default=0.0)  # type: ignore[valid-type]
    # Frames downloaded in this session, their megabytes (10^6 bytes) and the recent rate (MB/s).
    frames_downloaded: IntProperty(default=0)  # type: ignore[valid-type]
    downloaded_mb: FloatProperty(default=0.0)  # type: ignore[valid-type]
    download_mb_s: FloatProperty(default=0.0)  # type: ignore[valid-type]
    account_status: StringProperty(default="")  # type: ignore[valid-type]
    jobs_status: StringProperty(default="")  # type: ignore[valid-type]  # under the Jobs list
    setup_summary: StringProperty(default="")  # type: ignore[valid-type]


class CloudRenderJobItem(bpy.types.PropertyGroup):
    """One row of the jobs list, mirrored from a job record on disk (`jobs_list.refresh`)."""

    job_id: StringProperty()  # type: ignore[valid-type]
    blend_name: StringProperty()  # type: ignore[valid-type]
    label: StringProperty()  # type: ignore[valid-type]  # "c5.2xlarge · 24 frames · 14:05"
    row_label: StringProperty()  # type: ignore[valid-type]  # the list's half row: "14:05 · c5.2xlarge"
    stage: StringProperty()  # type: ignore[valid-type]
    frames_done: IntProperty(default=0)  # type: ignore[valid-type]
    frames_total: IntProperty(default=0)  # type: ignore[valid-type]
    # Seconds since the epoch need a double; Blender's FloatProperty is single precision
    # (it loses minutes at today's epoch), so the time is kept as text.
    created: StringProperty(default="")  # type: ignore[valid-type]
    # A job of another computer (listed from the bucket, no record here): Follow or Cancel only.
    elsewhere: BoolProperty(default=False)  # type: ignore[valid-type]


classes = (CloudRenderSceneSettings, CloudRenderJobView, CloudRenderJobItem)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.cloud_render = PointerProperty(type=CloudRenderSceneSettings)
    wm = bpy.types.WindowManager
    wm.cloud_render_job = PointerProperty(type=CloudRenderJobView)
    wm.cloud_render_jobs = CollectionProperty(type=CloudRenderJobItem)
    wm.cloud_render_jobs_index = IntProperty(default=0)


def unregister() -> None:
    wm = bpy.types.WindowManager
    del wm.cloud_render_jobs_index
    del wm.cloud_render_jobs
    del wm.cloud_render_job
    del bpy.types.Scene.cloud_render
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)


def frames_for(
    scene: bpy.types.Scene, settings: RenderSettings | None = None, this_frame: bool = False
) -> list[int]:
    """The frames a job renders: the current one alone (Render This Frame in Cloud: a still,
    split by samples on many machines), the custom list, or the scene's range."""
    if this_frame:
        return [int(scene.frame_current)]
    settings = settings or snapshot(scene)
    if settings.use_custom_frames:
        return parse_frame_list(settings.frame_list)
    return scene_range(scene.frame_start, scene.frame_end, scene.frame_step)
