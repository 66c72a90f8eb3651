"""The contract between the add-on and the render machine: S3 key layout and the job spec.

The add-on writes inputs under `cas/` and a `WorkerSpec` for each job; the worker (stdlib
only, `cloud/worker/`) reads the spec through a presigned URL and writes everything it
produces under `jobs/<job-id>/out/` through a presigned POST. Both sides import the key
helpers from here, so the layout is written down once.

Layout of a job's outputs (written by the worker):

    jobs/<id>/out/frames/<path>      rendered frames, as the scene names them (relative to the output dir)
    jobs/<id>/out/files/<path>       files written by File Output nodes
    jobs/<id>/out/logs/<seq:06d>.log the render log, in numbered chunks
    jobs/<id>/out/status.json        state, progress and heartbeat, rewritten every few seconds
    jobs/<id>/out/done.json          written once on success
    jobs/<id>/out/error.json         written once on failure: cause, kind, last log lines
    jobs/<id>/out/interrupted.json   written on a spot interruption or cap: frames done and left
    jobs/<id>/out/quote.json         "quote first": scout frames measured, the worker waits for go.json
    jobs/<id>/out/blender-cache/<f>  a Blender build the worker fetched, for the add-on to keep

Written by the add-on, read by the worker through a presigned GET:

    jobs/<id>/control/go.json        the answer to quote.json: {"go": true} or {"go": false}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

SPEC_VERSION = 1

# Worker states, in the order a healthy job passes through them.
STATES = ("booting", "installing", "downloading", "rendering", "done")
FINAL_STATES = ("done", "failed", "interrupted", "capped", "cancelled")


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"


def out_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/out/"


def frames_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/out/frames/"


def logs_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/out/logs/"


def control_key(job_id: str, name: str) -> str:
    return f"jobs/{job_id}/control/{name}"


def cas_key(sha256: str) -> str:
    return f"cas/{sha256}"


def blender_cache_key(version: str, filename: str) -> str:
    return f"blender-cache/{version}/{filename}"


def spec_key(job_id: str) -> str:
    return f"jobs/{job_id}/worker-spec.json"


def record_key(job_id: str) -> str:
    return f"jobs/{job_id}/job.json"


@dataclass
class InputFile:
    """One file the worker downloads: where it goes in the job directory and how to check it."""

    path: str  # relative POSIX path inside the job directory
    url: str  # presigned GET
    sha256: str
    size: int


@dataclass
class BlenderSource:
    """One place the worker may get Blender from, tried in the spec's order."""

    kind: str  # "bucket" (tarball in the artist's bucket), "pypi" (bpy wheel), "url"
    version: str
    url: str = ""  # presigned GET of the tarball ("bucket", "url")
    sha256: str = ""  # expected SHA-256 of the tarball
    package: str = ""  # "bpy==5.0.1" for "pypi"


@dataclass
class WorkerSpec:
    """Everything the render machine needs; serialised to JSON and fetched by presigned URL."""

    job_id: str
    blender_version: str
    blend_path: str
    frames: list[int]
    inputs: list[InputFile]
    upload_url: str  # presigned POST target
    upload_fields: dict[str, str]  # presigned POST form fields; "key" is set per file by the worker
    upload_prefix: str  # jobs/<id>/out/
    list_url: str = ""  # presigned ListObjectsV2 of out/frames/, to skip frames that exist
    blender_sources: list[BlenderSource] = field(default_factory=list)
    frame_order: str = "sequential"  # or "preview_first"
    device: str = "GPU"  # "GPU": OptiX, else CUDA, and fail if neither works; "CPU"
    samples: int | None = None
    resolution_percentage: int | None = None
    file_format: str | None = None
    max_seconds: int = 7200  # dead-man: the machine powers off after this, whatever happens
    heartbeat_seconds: float = 5.0
    log_chunk_seconds: float = 2.0
    scout_frames: list[int] = field(default_factory=list)  # "quote first": render these, then wait
    go_url: str = ""  # presigned GET of control/go.json, the answer to the quote
    spec_version: int = SPEC_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerSpec:
        data = dict(data)
        data["inputs"] = [InputFile(**item) for item in data.get("inputs", [])]
        data["blender_sources"] = [BlenderSource(**item) for item in data.get("blender_sources", [])]
        return cls(**data)
