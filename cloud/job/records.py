"""The Job: its stages, its request, and its record on disk (and in S3) so Blender can be
closed and the job found again.

A record holds no secrets and no presigned URLs: only what the panel shows and what is needed
to re-attach (region, bucket, engine and launch id, frames, output folder).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any


class Stage(StrEnum):
    """Where a job is. The values are stable ids, stored in records and carried by events; the
    words the panel shows are `label` (STAGE_LABELS), so rewording one changes no record."""

    PACKING = "packing"
    UPLOADING = "uploading"
    STARTING = "starting"
    INSTALLING = "installing"
    RENDERING = "rendering"
    DOWNLOADING = "downloading"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    CAPPED = "capped"
    QUOTED = "quoted"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STAGES

    @property
    def label(self) -> str:
        """The words the panel and the jobs list show for this stage."""
        return STAGE_LABELS[self]

    @classmethod
    def parse(cls, value: str) -> Stage:
        """A stored stage: an id, or the shown words that records held before the ids (a record
        written by an earlier version of the add-on still loads)."""
        return _STAGE_BY_LABEL.get(value) or cls(value)


STAGE_LABELS: dict[Stage, str] = {
    Stage.PACKING: "Packing",
    Stage.UPLOADING: "Uploading",
    Stage.STARTING: "Starting machine",
    Stage.INSTALLING: "Installing Blender",
    Stage.RENDERING: "Rendering",
    Stage.DOWNLOADING: "Downloading",
    Stage.DONE: "Done",
    Stage.FAILED: "Failed",
    Stage.CANCELLED: "Cancelled",
    Stage.INTERRUPTED: "Interrupted",
    Stage.CAPPED: "Capped",
    Stage.QUOTED: "Waiting for you",
}
_STAGE_BY_LABEL = {label: stage for stage, label in STAGE_LABELS.items()}

FINAL_STAGES = frozenset({Stage.DONE, Stage.FAILED, Stage.CANCELLED, Stage.INTERRUPTED, Stage.CAPPED})
FINAL_STAGE_IDS = frozenset(stage.value for stage in FINAL_STAGES)  # for bpy properties and records

# The worker's status.json "state" -> the stage the panel shows.
WORKER_STATE_STAGE = {
    "booting": Stage.STARTING,
    "installing": Stage.INSTALLING,
    "downloading": Stage.INSTALLING,
    "rendering": Stage.RENDERING,
    "uploading": Stage.RENDERING,
    "merging": Stage.RENDERING,
    "encoding": Stage.RENDERING,
    "done": Stage.DONE,
    "failed": Stage.FAILED,
    "interrupted": Stage.INTERRUPTED,
    "capped": Stage.CAPPED,
}


def new_job_id() -> str:
    """Sortable by time, unique without coordination: 20261125-144501-3f2a9c."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


class EngineName(StrEnum):
    """Where a job's machines run, stored in the job record and in the machine's spec: never a
    guess from ids or counts (cloud/job/engine.py says what an engine does)."""

    EC2 = "ec2"  # one EC2 instance, launched directly
    BATCH = "batch"  # an AWS Batch array job, one child per machine, frames claimed
    STILL = "still"  # one Cycles frame's samples cut into parts over an AWS Batch array job


def splits_by_samples(frames: int, render_engine: str) -> bool:
    """A still on many machines is cut by samples: one frame, rendered by Cycles (the only
    engine whose samples can be split exactly: ../shared/recipes/still-on-n-machines.md)."""
    return frames == 1 and render_engine == "CYCLES"


def engine_name_for(machines: int, frames: int = 0, render_engine: str = "") -> EngineName:
    """The one place the choice is made. Many machines: an AWS Batch array job, which claims
    frames, or for one Cycles frame (a still) parts of its samples, merged exactly once all are
    in (cloud/job/still_plan.py). One machine keeps the direct EC2 launch: the same boot to
    first frame in the emulation (bench/boot_engines.py), while on AWS Batch adds its scale-up
    from zero (the compute environment notices the job, an instance boots, the ECS agent
    registers, the image is pulled) for nothing to share."""
    if machines <= 1:
        return EngineName.EC2
    if splits_by_samples(frames, render_engine):
        return EngineName.STILL
    return EngineName.BATCH


@dataclass
class JobRequest:
    """Everything the background job needs, captured on Blender's main thread."""

    job_id: str
    blend_copy: Path  # a saved copy of the artist's scene, never the open file
    blend_name: str  # the artist's file (its path): the pack is laid out as if the copy were it
    scene_name: str
    frames: list[int]
    output_dir: Path
    region: str
    instance_type: str
    spot: bool
    max_cost: float
    max_hours: float
    price_per_hour: float
    blender_version: str
    # On-demand price of the type: what the job costs if a spot launch falls back to on-demand.
    on_demand_price_per_hour: float = 0.0
    frame_order: str = "sequential"
    device: str = "GPU"
    samples: int | None = None
    resolution_percentage: int | None = None
    file_format: str | None = None
    movie_frames_format: str = "PNG"  # a movie job's frames: PNG or OPEN_EXR, encoded after
    movie: bool = False  # the scene's output is a movie (encoded from the frames once all are in)
    retention_days: int = 14
    quote_first: bool = False  # render scout frames, then go on only if the projection fits the cap
    reuse_inputs_from: str = ""  # relaunch: a job whose packed inputs are reused as they are
    warnings: list[str] = field(default_factory=list)  # preflight findings that do not block
    machines: int = 1  # more than one: an AWS Batch array job, frames claimed by the machines
    # A split still: whether the scene denoises and composites after the merge (what is said).
    still_denoise: bool = True
    still_composite: bool = True
    # Frame -> its expected seconds, where an estimate knows them (relative weights do): with
    # many machines the longest are handed out first. Empty: nothing is known per frame.
    frame_seconds: dict[int, float] = field(default_factory=dict)
    # What the frame times of an earlier job of this scene are compared by (cloud/job/frame_history):
    # the render engine, and the samples and pixels each frame renders as sent (0: not known).
    engine: str = ""
    render_samples: int = 0
    render_pixels: int = 0
    # The other settings that drive a frame's cost (adaptive sampling, denoiser, light paths, time
    # limit), as cloud/job/frame_history.drivers_text writes them: earlier times carry only when
    # these are the same ("" on both sides also matches: a job from before this was recorded).
    render_drivers: str = ""
    # Farm equals local: the add-ons that travel (spec entries, and job path -> local file), disk
    # bakes to carry (folder and path relative to the .blend), the artist's Auto Run setting and
    # environment fingerprint, and whether the job renders on although the machine differs.
    addons: list[dict[str, Any]] = field(default_factory=list)
    addon_files: dict[str, str] = field(default_factory=dict)
    bake_folders: list[dict[str, str]] = field(default_factory=list)
    auto_run: bool = False
    fingerprint: dict[str, Any] = field(default_factory=dict)
    accept_differences: bool = False
    proof_first: bool = False  # with Quote First: go on only once a scout frame matches a local render
    # How to start a background Blender here on the job's copy with the cost map's script, up
    # to its `--` (cloud/cost/cost_map.py); empty: no map (the frames' order is not chosen).
    cost_map_command: list[str] = field(default_factory=list)
    # What each frame file must be, checked before Blender decodes it (cloud/job/image_header.py):
    # Blender's file format and the size it renders at (resolution x percentage, overrides
    # applied); "" and 0 where not known; at most that size where a border crop or stereo views
    # make the file smaller or the views sit side by side.
    frame_format: str = ""
    frame_width: int = 0
    frame_height: int = 0
    frame_size_at_most: bool = False


@dataclass
class JobRecord:
    """The job as it is known locally; rewritten as it progresses."""

    job_id: str
    blend_name: str
    scene_name: str
    region: str
    instance_type: str
    spot: bool
    frames: list[int]
    output_dir: str
    price_per_hour: float
    max_cost: float
    max_hours: float
    created: float = field(default_factory=time.time)
    stage: str = Stage.PACKING.value
    message: str = ""
    action: str = ""
    bucket: str = ""
    # What the launch started, as the engine names it: an EC2 instance's id (engine "ec2"), or
    # the AWS Batch array job's id (engine "batch", one child per machine).
    launch_id: str = ""
    launched_at: float = 0.0
    ended_at: float = 0.0
    frames_done: list[int] = field(default_factory=list)
    # frame number (as text: JSON keys) -> the local file, in arrival order; from the machine's
    # plan, never guessed from a file name
    frame_paths: dict[str, str] = field(default_factory=dict)
    device: str = ""
    blender_build: str = ""
    seconds_per_frame: float = 0.0
    cost_so_far: float = 0.0
    blend_in_pack: str = ""
    pack_manifest: dict[str, Any] = field(default_factory=dict)  # relative path -> [sha256, size]
    pack_chunks: dict[str, Any] = field(
        default_factory=dict
    )  # a chunked file's path -> [[sha256, size], ...]
    # Plain key (cas/<sha256>, cas/chunks/<sha256>) -> "zlib" for the inputs stored compressed
    # (under the key plus ".zlib"); a record from before compression has none: all stored plainly.
    pack_encodings: dict[str, str] = field(default_factory=dict)
    quote_first: bool = False
    proof_first: bool = False  # the add-on answers the quote after its proof frame
    quote: dict[str, Any] = field(default_factory=dict)  # measured scout figures, once known
    machines: int = 1
    cloud_engine: str = EngineName.EC2.value  # where the machines run: chosen once, at submit
    # A still over many machines: each part's [sample offset, samples] (still_plan.split_samples).
    still_parts: list[list[int]] = field(default_factory=list)
    still_denoise: bool = True  # as the request said: what the panel and the log say after the merge
    still_composite: bool = True
    movie: bool = False  # the scene's output is a movie
    movie_path: str = ""  # a movie job's movie, once downloaded next to the frames
    movie_error: str = ""  # why the machine could not make the movie (the frames are here)
    # Measured by the machines (validated by contract.parse_frame_seconds): frame (as text) ->
    # the seconds Blender took for it; with the settings it rendered under, so that the next job
    # of this scene knows its long frames (cloud/job/frame_history).
    frame_seconds: dict[str, float] = field(default_factory=dict)
    engine: str = ""
    render_samples: int = 0
    render_pixels: int = 0
    render_drivers: str = ""
    # The GPU kernel cache: the folder this job's machines may keep theirs in ("" when they may
    # not: no GPU, or the scene can run Python there) and the driver they reported (status.json),
    # remembered after the job so that the next one offers exactly that archive.
    kernel_cache_prefix: str = ""
    gpu_driver: str = ""
    # What each frame file must be (JobRequest's fields of the same names).
    frame_format: str = ""
    frame_width: int = 0
    frame_height: int = 0
    frame_size_at_most: bool = False
    # The job's page for a phone (cloud/job/phone_page.py): its presigned link, "" when none or
    # when it carries a session token (kept in memory only, phone_page.session_links), and
    # until when its links work (seconds since the epoch; 0: no page).
    page_url: str = ""
    page_expires: float = 0.0
    # A job followed here from another computer (cloud/job/summary.py): its .blend's name there,
    # which its shared summary keeps saying ("" for a job submitted here).
    shared_blend_file: str = ""

    @property
    def stage_enum(self) -> Stage:
        return Stage.parse(self.stage)

    @property
    def is_final(self) -> bool:
        return self.stage_enum.is_final

    @property
    def frame_files(self) -> list[str]:
        return list(self.frame_paths.values())

    @property
    def frames_missing(self) -> list[int]:
        done = set(self.frames_done)
        return [f for f in self.frames if f not in done]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JobRecord:
        data = json.loads(text)
        if "instance_id" in data:  # a record written before the engines had names
            data.setdefault("launch_id", data["instance_id"])
            data.setdefault("cloud_engine", engine_name_for(int(data.get("machines") or 1)).value)
        if isinstance(data.get("stage"), str):  # a record from before the stage ids: "Done"
            data["stage"] = getattr(_STAGE_BY_LABEL.get(data["stage"]), "value", data["stage"])
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_request(cls, request: JobRequest) -> JobRecord:
        return cls(
            job_id=request.job_id,
            blend_name=request.blend_name,
            scene_name=request.scene_name,
            region=request.region,
            instance_type=request.instance_type,
            spot=request.spot,
            frames=list(request.frames),
            output_dir=str(request.output_dir),
            price_per_hour=request.price_per_hour,
            max_cost=request.max_cost,
            max_hours=request.max_hours,
            quote_first=request.quote_first,
            proof_first=request.proof_first,
            machines=max(1, int(request.machines)),
            cloud_engine=engine_name_for(int(request.machines), len(request.frames), request.engine).value,
            movie=request.movie,
            engine=request.engine,
            render_samples=request.render_samples,
            render_pixels=request.render_pixels,
            render_drivers=request.render_drivers,
            still_denoise=request.still_denoise,
            still_composite=request.still_composite,
            **frame_shape_of(request),
        )


def frame_shape_of(request: JobRequest) -> dict[str, Any]:
    """The record's frame fields. A still over many machines is written by its merge in the
    scene's own format and size (the overrides are the frames' only), which the request does not
    carry: any image Blender writes, of a bounded size, is its frame."""
    if engine_name_for(request.machines, len(request.frames), request.engine) is EngineName.STILL:
        return {}
    return {
        "frame_format": request.frame_format,
        "frame_width": request.frame_width,
        "frame_height": request.frame_height,
        "frame_size_at_most": request.frame_size_at_most,
    }


class RecordStore:
    """Job records as one JSON file each in the add-on's user directory (atomic writes)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, job_id: str) -> Path:
        return self.directory / f"{job_id}.json"

    def save(self, record: JobRecord) -> None:
        # The half-written file must never look like a record to all(), read from other threads.
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".partial")
        with os.fdopen(fd, "w") as handle:
            handle.write(record.to_json())
        os.replace(tmp, self.path(record.job_id))

    def load(self, job_id: str) -> JobRecord:
        return JobRecord.from_json(self.path(job_id).read_text())

    def all(self) -> list[JobRecord]:
        """Every readable record, newest first; a damaged file is skipped, not fatal."""
        records = []
        for path in self.directory.glob("*.json"):
            if path.name.startswith("."):
                continue  # pathlib's glob matches dotfiles: an older save's leftover temp file
            try:
                records.append(JobRecord.from_json(path.read_text()))
            except (OSError, ValueError, TypeError):
                continue
        return sorted(records, key=lambda r: r.created, reverse=True)

    def delete(self, job_id: str) -> None:
        self.path(job_id).unlink(missing_ok=True)
