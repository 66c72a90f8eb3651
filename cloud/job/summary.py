"""A job's shared summary: `jobs/<id>/job.json`, what another computer with the same keys needs
to list a job, follow it, fetch its frames and cancel it.

Written by the submitting add-on at submit, again once launched and when the job ends (`stage`
is what that computer last knew). It holds nothing private: the .blend's base name (no folder),
no local path, no presigned URL, no secret. Anyone holding the daily key can write the bucket,
so the reader (`parse_summary`) treats it as untrusted: bounded size, types, ranges, and ids
matched against the contract's pattern; a document that fails is skipped, never shown.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from ..machine import contract
from ..machine.contract import ContractError, clean_text
from .records import EngineName, JobRecord, Stage

SUMMARY_VERSION = 1
MAX_SUMMARY_BYTES = contract.MAX_JSON_BYTES  # ~40,000 frames fit
MAX_FRAMES = 50_000
MAX_NAME_CHARS = 255  # a file or scene name
MAX_MACHINES = contract.MAX_MACHINES
MAX_USD = 1_000_000.0
MAX_HOURS = 24.0 * 366
MAX_PIXELS = 65_536  # a frame side: Blender renders at most 65,536 pixels wide
# What AWS names: an EC2 instance ("i-0abc...") or an AWS Batch job (a UUID); a region; a type.
_LAUNCH_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}")
_INSTANCE_TYPE = re.compile(r"[a-z0-9-]{1,24}\.[a-z0-9]{1,24}")
_FORMAT = re.compile(r"[A-Z0-9_]{0,32}")
_TIME_MAX = 4102444800.0  # 2100-01-01: a time beyond is not a time this add-on wrote


@dataclass(frozen=True)
class JobSummary:
    """A job as another computer sees it; every field checked (`parse_summary`)."""

    job_id: str
    blend_file: str  # the .blend's base name only
    scene: str
    frames: list[int]
    engine: str  # records.EngineName's value
    launch_id: str  # "" until launched
    launched_at: float
    region: str
    created: float
    machines: int
    instance_type: str
    spot: bool
    max_cost: float
    max_hours: float
    price_per_hour: float
    stage: str  # Stage's value, as the submitting computer last knew it
    updated: float
    movie: bool = False
    still_parts: list[list[int]] = field(default_factory=list)
    frame_format: str = ""
    frame_width: int = 0
    frame_height: int = 0
    frame_size_at_most: bool = False

    def to_record(self, bucket: str, output_dir: str, blend_name: str) -> JobRecord:
        """A local record to follow this job here: frames go to `output_dir`, the job is listed
        under `blend_name` (the file open on this computer)."""
        return JobRecord(
            job_id=self.job_id,
            blend_name=blend_name,
            scene_name=self.scene,
            region=self.region,
            instance_type=self.instance_type,
            spot=self.spot,
            frames=list(self.frames),
            output_dir=output_dir,
            price_per_hour=self.price_per_hour,
            max_cost=self.max_cost,
            max_hours=self.max_hours,
            created=self.created,
            # Ended already: followed only to fetch what it left (the runner reads how it ended).
            stage=Stage.DOWNLOADING.value if Stage(self.stage).is_final else self.stage,
            bucket=bucket,
            launch_id=self.launch_id,
            launched_at=self.launched_at,
            machines=self.machines,
            cloud_engine=self.engine,
            still_parts=[list(part) for part in self.still_parts],
            movie=self.movie,
            frame_format=self.frame_format,
            frame_width=self.frame_width,
            frame_height=self.frame_height,
            frame_size_at_most=self.frame_size_at_most,
            message="Followed from another computer.",
            shared_blend_file=self.blend_file,
        )


def base_name(path: str) -> str:
    """A file's name without its folder, whichever computer's path it is."""
    return PureWindowsPath(PurePosixPath(path).name).name


def summary_of(record: JobRecord) -> dict[str, Any]:
    """The record as stored in the bucket: what another computer shows and follows, no more."""
    return {
        "summary_version": SUMMARY_VERSION,
        "job_id": record.job_id,
        "blend_file": record.shared_blend_file or base_name(record.blend_name),
        "scene": record.scene_name,
        "frames": list(record.frames),
        "engine": record.cloud_engine,
        "launch_id": record.launch_id,
        "launched_at": record.launched_at,
        "region": record.region,
        "created": record.created,
        "machines": record.machines,
        "instance_type": record.instance_type,
        "spot": record.spot,
        "max_cost": record.max_cost,
        "max_hours": record.max_hours,
        "price_per_hour": record.price_per_hour,
        "stage": record.stage_enum.value,
        "updated": time.time(),
        "movie": record.movie,
        "still_parts": [list(part) for part in record.still_parts],
        "frame_format": record.frame_format,
        "frame_width": record.frame_width,
        "frame_height": record.frame_height,
        "frame_size_at_most": record.frame_size_at_most,
    }


def parse_summary(body: bytes, job_id: str) -> JobSummary:
    """Bytes of `jobs/<job_id>/job.json` -> a checked summary; ContractError says what is wrong."""
    if not contract.JOB_ID_PATTERN.fullmatch(job_id):
        raise ContractError(f"the job folder {clean_text(job_id, 80)!r} is not a job id")
    data = contract.load_document(body, "job.json", MAX_SUMMARY_BYTES)
    if data.get("summary_version") != SUMMARY_VERSION:
        raise ContractError(f"job.json is of version {clean_text(data.get('summary_version'), 20)!r}")
    if data.get("job_id") != job_id:
        raise ContractError(f"job.json names job {clean_text(data.get('job_id'), 80)!r}, not its folder's")
    engine = _choice(data.get("engine"), "engine", tuple(e.value for e in EngineName))
    return JobSummary(
        job_id=job_id,
        blend_file=_name(data.get("blend_file"), "blend_file"),
        scene=_name(data.get("scene"), "scene"),
        frames=_frames(data.get("frames")),
        engine=engine,
        launch_id=_pattern(data.get("launch_id"), "launch_id", _LAUNCH_ID, empty_ok=True),
        launched_at=_number(data.get("launched_at"), "launched_at", 0.0, _TIME_MAX),
        region=_pattern(data.get("region"), "region", _REGION),
        created=_number(data.get("created"), "created", 0.0, _TIME_MAX),
        machines=_whole(data.get("machines"), "machines", 1, MAX_MACHINES),
        instance_type=_pattern(data.get("instance_type"), "instance_type", _INSTANCE_TYPE),
        spot=_bool(data.get("spot"), "spot"),
        max_cost=_number(data.get("max_cost"), "max_cost", 0.0, MAX_USD),
        max_hours=_number(data.get("max_hours"), "max_hours", 0.0, MAX_HOURS),
        price_per_hour=_number(data.get("price_per_hour"), "price_per_hour", 0.0, MAX_USD),
        stage=_choice(data.get("stage"), "stage", tuple(s.value for s in Stage)),
        updated=_number(data.get("updated"), "updated", 0.0, _TIME_MAX),
        movie=_bool(data.get("movie", False), "movie"),
        still_parts=_still_parts(data.get("still_parts", [])) if engine == EngineName.STILL.value else [],
        frame_format=_pattern(data.get("frame_format", ""), "frame_format", _FORMAT, empty_ok=True),
        frame_width=_whole(data.get("frame_width", 0), "frame_width", 0, MAX_PIXELS),
        frame_height=_whole(data.get("frame_height", 0), "frame_height", 0, MAX_PIXELS),
        frame_size_at_most=_bool(data.get("frame_size_at_most", False), "frame_size_at_most"),
    )


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_NAME_CHARS:
        raise ContractError(f"{what} must be text of at most {MAX_NAME_CHARS} characters")
    return clean_text(value, MAX_NAME_CHARS)


def _pattern(value: Any, what: str, pattern: re.Pattern[str], empty_ok: bool = False) -> str:
    if isinstance(value, str) and ((empty_ok and not value) or pattern.fullmatch(value)):
        return value
    raise ContractError(f"{what} {clean_text(value, 80)!r} is not one")


def _choice(value: Any, what: str, choices: tuple[str, ...]) -> str:
    if isinstance(value, str) and value in choices:
        return value
    raise ContractError(f"{what} {clean_text(value, 80)!r} is not one of {', '.join(choices)}")


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ContractError(f"{what} must be true or false")
    return value


def _whole(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ContractError(f"{what} must be a whole number in {low}..{high}")
    return value


def _number(value: Any, what: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ContractError(f"{what} must be a number")
    try:
        number = float(value)
    except OverflowError:
        raise ContractError(f"{what} is too large a number") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise ContractError(f"{what} must be in {low}..{high}")
    return number


def _frames(value: Any) -> list[int]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_FRAMES:
        raise ContractError(f"frames must be a list of 1 to {MAX_FRAMES} frame numbers")
    frames = [_whole(frame, "a frame", contract.FRAME_MIN, contract.FRAME_MAX) for frame in value]
    if len(set(frames)) != len(frames):
        raise ContractError("frames lists a frame twice")
    return frames


def _still_parts(value: Any) -> list[list[int]]:
    if not isinstance(value, list) or len(value) > contract.MAX_STILL_PARTS:
        raise ContractError(f"still_parts must be a list of at most {contract.MAX_STILL_PARTS} parts")
    parts = []
    for part in value:
        if not isinstance(part, list) or len(part) != 2:
            raise ContractError("a still part must be [sample offset, samples]")
        parts.append([_whole(number, "a still part", 0, contract.MAX_STILL_SAMPLES) for number in part])
    return parts
