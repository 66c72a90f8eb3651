"""The contract between the add-on and the render machine: key layout, job spec, reports.

The add-on writes inputs under `cas/` and a `WorkerSpec` for each job; the machine (this
folder, shipped as it lies) reads the spec through a presigned URL and writes everything it
produces under `jobs/<job-id>/out/` through a presigned POST. Both sides import this module,
so the layout and the documents are written down once, with one version number.

What the machine writes is untrusted input on the artist's computer: a compromised machine,
or anyone who can write to the bucket, controls it. The add-on therefore reads every document
through the `parse_*` functions below (types, ranges, sizes; unknown fields ignored), turns
object keys into local paths only through `safe_relative_path`, and refuses what exceeds the
`MAX_*` limits. Standard library only, Python 3.9 syntax (it runs on the machine too).

Layout of a job's outputs (written by the worker):

    jobs/<id>/out/frames/<path>      rendered frames, as the scene names them (relative to the output dir)
    jobs/<id>/out/files/<path>       files written by File Output nodes
    jobs/<id>/out/logs/<seq:06d>.log the render log, in numbered chunks
    jobs/<id>/out/status.json        state, progress and heartbeat, rewritten every few seconds;
                                     frame_seconds: the most recent frames' render seconds;
                                     gpu_driver: the NVIDIA driver nvidia-smi named (kernel caches)
    jobs/<id>/out/done.json          written once on success (a movie job: the movie's name, or why not);
                                     done, error and interrupted.json carry frame_seconds: each
                                     frame rendered (as text) -> the seconds Blender took for it
    jobs/<id>/out/movie/<name>       a movie job's movie, encoded once every frame is in
    jobs/<id>/out/error.json         written once on failure: cause, kind, last log lines
    jobs/<id>/out/interrupted.json   written on a spot interruption or cap: frames done and left
    jobs/<id>/out/quote.json         "quote first": scout frames measured, the worker waits for go.json
    jobs/<id>/out/plan.json          frame file (relative to out/frames/) -> frame number, per render pass
    jobs/<id>/out/blender-cache/<f>  a Blender build the worker fetched, for the add-on to keep
    jobs/<id>/out/environment.json   add-ons installed, the machine's fingerprint, differences from the artist's
    jobs/<id>/out/marks/rendered-<f> one machine: frame f is uploaded (empty), for a re-run to skip it

Many machines (an AWS Batch array job; contract 3): frames still land in out/frames/, and each
machine <index> (its array index) writes its own documents under its own folder:

    jobs/<id>/out/claims/<frame>                 the claim on a frame: a conditional PUT (If-None-Match: *)
                                                 of claim_body(index, attempt), so its ETag says who
    jobs/<id>/out/machines/<index>/status.json   that machine's status (same fields as status.json)
    jobs/<id>/out/machines/<index>/logs/<seq>    its log chunks
    jobs/<id>/out/machines/<index>/plan.json     its frame files -> frame numbers
    jobs/<id>/out/machines/<index>/marks/<m>     rendered-<f>: frames it uploaded
    jobs/<id>/out/machines/<index>/done.json     it found no frame left to claim (or error.json, interrupted.json)

Written by the add-on, read by the worker through a presigned GET:

    jobs/<id>/control/go.json        the answer to quote.json: {"go": true} or {"go": false}
    jobs/<id>/control/cancel.json    a computer cancelled the job (read by the add-on only)
    jobs/<id>/job.json               the job's shared summary (read by the add-on only)
    cas/<sha256>                     an input file, named by the SHA-256 of its bytes
    cas/chunks/<sha256>              one chunk of a large .blend (contract 4), named by its own SHA-256
    cas/<sha256>.zlib                the same, stored zlib-compressed (the name stays the SHA-256 of
    cas/chunks/<sha256>.zlib         the uncompressed bytes); the spec's `encoding` says which form
                                     to fetch, and the machine inflates it, bounded by the size

A large .blend travels as chunks (contract 4): its entry in the spec's `inputs` has no `url`
but an ordered `chunks` list (sha256, size, presigned url of each). The machine downloads each
chunk, checks its SHA-256, writes it at its offset (the sum of the sizes before it), and checks
the whole file's SHA-256 before Blender sees the file; `parse_input` bounds the list first.

Shared by every job (not under jobs/): the GPU kernel caches a machine filled, restored on the
next machines with the same Blender, GPU and driver (`kernel_cache.py`). The add-on offers a
presigned GET of exactly one key, `<driver>.tar` for the driver an earlier job's machines
reported in status.json (`gpu_driver`), never "the newest" of a listing; and a POST limited to
that folder only to a job whose scene runs no Python on the machine (no Auto Run, no add-ons).
The archive is untrusted:

    kernel-cache/v2/<blender version>/<gpu slug>/<driver>.tar
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

# One number for the whole contract: the spec the add-on writes and every document the machine
# writes carry it, and each side refuses another version with a plain reason.
CONTRACT_VERSION = 4  # 3: many machines (claims, out/machines/<index>/); 4: chunked inputs
SPEC_VERSION = CONTRACT_VERSION
# How the job runs, named in its spec: "ec2" one machine renders every frame; "batch" one child
# of an AWS Batch array job claims its frames (the machine's entry point picks the runner by it).
ENGINES = ("ec2", "batch", "still")

# Bounds on what the machine may hand back; anything larger is refused, never read or drawn.
MAX_JSON_BYTES = 256 * 1024  # status, environment, and what lists no frames
MAX_PLAN_BYTES = 16 * 1024 * 1024  # what lists frames (plan, quote, done, error, interrupted): ~100,000
MAX_LOG_CHUNK_BYTES = 2 * 1024 * 1024
MAX_LOG_LINE_CHARS = 2000
MAX_LOG_LINES = 400  # the last lines an error report may carry
MAX_TEXT_CHARS = 1000  # a message, a cause, a device name
MAX_FRAME_BYTES = 8 * 1024**3  # a multilayer EXR at 8K is well under this
MAX_PATH_CHARS = 512
MAX_JSON_DEPTH = 32  # the deepest document the machine writes is 4 levels; a parser recurses per level
MAX_OUTPUT_OBJECTS_PER_FRAME = 64  # frames plus File Output passes
MAX_EXTRA_OUTPUT_OBJECTS = 10_000
MAX_SAMPLES = 1 << 24
MAX_SECONDS = 10 * 365 * 24 * 3600.0
MAX_INPUT_BYTES = 5 * 1024**4  # one input file: S3's largest object
MAX_CHUNK_BYTES = 64 * 1024 * 1024  # one chunk of a chunked input (the add-on cuts 4 MiB at most)
MAX_CHUNKS = 200_000  # chunks of one input (a 200 GB .blend at 1 MiB each)
FRAME_MIN, FRAME_MAX = -1048574, 1048574  # Blender's MINAFRAME / MAXFRAME
# Per-frame render times: status.json carries the most recent ones only (it is rewritten every
# few seconds and read within MAX_JSON_BYTES); done/error/interrupted.json carry all of them.
MAX_STATUS_FRAME_SECONDS = 100
# The latest frame, small, for the job's phone page: a JPEG of at most PREVIEW_SIDE pixels on its
# long side, written by Blender on the machine after each frame under one fixed name (so the page's
# link can be signed at submit). The page refuses a larger body.
PREVIEW_NAME = "preview.jpg"
PREVIEW_SIDE = 480
MAX_PREVIEW_BYTES = 512 * 1024
# "Quote first": how long a machine waits for the add-on's answer (the add-on tells the artist).
QUOTE_WAIT_S = 20 * 60.0
MIN_FRAME_SECONDS = 0.001  # a frame that took no time is a measuring fault, not a figure

# Worker states: the final ones, then every one, in the order a healthy job passes through them.
FINAL_STATES = ("done", "failed", "interrupted", "capped", "cancelled")
ALL_STATES = (
    "booting",
    "installing",
    "downloading",
    "rendering",
    "uploading",
    "quoting",
    "merging",  # a still's last machine: merging the parts, denoising and compositing once
    "encoding",
    *FINAL_STATES,
)
# error.json "kind" values the add-on knows words for; anything else reads as "unknown".
ERROR_KINDS = (
    "no_gpu",
    "no_opengl",
    "gpu_memory",
    "missing_file",
    "crash",
    "killed",
    "render_failed",
    "upload",
    "credentials_expired",
    "download",
    "blender_install",
    "unsafe_archive",
    "contract",
    "time_cap",
    "internal",
    "environment",
)
INTERRUPTION_REASONS = ("spot", "time_cap", "stopped_after_quote", "no_answer_to_quote")


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"


def out_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/out/"


def preview_key(job_id: str) -> str:
    return f"jobs/{job_id}/out/{PREVIEW_NAME}"


def frames_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/out/frames/"


def logs_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/out/logs/"


def control_key(job_id: str, name: str) -> str:
    return f"jobs/{job_id}/control/{name}"


def claim_key(job_id: str, frame: int) -> str:
    return f"jobs/{job_id}/out/claims/{int(frame)}"


def claims_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/out/claims/"


def part_claim_key(job_id: str, index: int) -> str:
    """A still's part claim (`claims/part-<k>`: never a frame number, those are bare)."""
    return f"jobs/{job_id}/out/claims/part-{int(index)}"


def merge_claim_key(job_id: str) -> str:
    return f"jobs/{job_id}/out/claims/merge"


def mail_claim_key(job_id: str) -> str:
    """Many machines: the one that sees every frame marked writes this first and sends the
    job's e-mail notice (outside claims/, whose listings hold frame claims only)."""
    return f"jobs/{job_id}/out/mail-claim"


def ended_prefix(job_id: str) -> str:
    """Many machines: one end mark per machine that ended for good (`<index>`, end_mark_body)."""
    return f"jobs/{job_id}/out/ended/"


# A machine's end as its end mark says it (the job's e-mail sums them up, job_end.py).
END_MARK_ENDINGS = ("done", "failed", "capped", "stopped")


def end_mark_body(ending: str, kind: str = "") -> bytes:
    """What a machine writes as its end mark: the same bytes for the same end, so the mark's
    ETag in a listing (the MD5 of these bytes, as for claims) says how it ended, no read needed.
    `kind`: a failure's error kind (ERROR_KINDS), else empty."""
    if ending not in END_MARK_ENDINGS:
        raise ValueError(f"unknown end {ending!r}")
    return json.dumps({"ending": ending, "kind": kind if ending == "failed" else ""}, sort_keys=True).encode()


def parts_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/out/parts/"


def part_name(index: int) -> str:
    """A still part's EXR, relative to out/parts/."""
    return f"part-{int(index)}.exr"


def claim_body(index: int, attempt: int) -> bytes:
    """What a machine writes as its claim: the same bytes for the same machine and attempt, so
    the claim's ETag in a listing (the MD5 of these bytes, in a bucket encrypted with SSE-S3)
    says which machine and attempt holds it, with no read of the claim itself."""
    return json.dumps({"attempt": int(attempt), "machine": int(index)}, sort_keys=True).encode()


def rendered_mark(frame: int) -> str:
    return f"rendered-{int(frame)}"


def frame_marks_prefix(job_id: str) -> str:
    """One machine's marks of frames uploaded (rendered-<f>): what a re-run lists to skip them."""
    return f"jobs/{job_id}/out/marks/"


def machines_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/out/machines/"


def marks_prefix(job_id: str, index: int) -> str:
    return f"jobs/{job_id}/out/machines/{int(index)}/marks/"


def machine_folder(index: int) -> str:
    """A machine's folder relative to out/: `machines/<index>/`."""
    return f"machines/{int(index)}/"


# How an input object is stored: "" as it is, "zlib" compressed (a zlib stream, RFC 1950). The
# object's name is the SHA-256 of the uncompressed bytes either way; the form is a key suffix, so
# an object stored plainly before compression existed keeps its key and is reused as it is.
ENCODINGS = ("", "zlib")


def _stored(key: str, encoding: str) -> str:
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}")
    return f"{key}.{encoding}" if encoding else key


def cas_key(sha256: str, encoding: str = "") -> str:
    return _stored(f"cas/{sha256}", encoding)


def chunk_key(sha256: str, encoding: str = "") -> str:
    return _stored(f"cas/chunks/{sha256}", encoding)


def blender_cache_key(version: str, filename: str) -> str:
    return f"blender-cache/{version}/{filename}"


# The GPU kernel caches (OptiX and CUDA) kept between machines: bounds on what is offered and taken.
KERNEL_CACHE_PREFIX = "kernel-cache/"
# The layout's generation: v2 is offered by exact key only (the remembered driver). Archives
# written under the old layout, where the newest few were offered, may hold what a machine of
# another job placed there: never offered again, they expire with the folder's lifecycle rule.
KERNEL_CACHE_LAYOUT = "v2/"
MAX_KERNEL_CACHE_BYTES = 512 * 1024**2  # an archive: Cycles' OptiX and CUDA caches are well under
MAX_KERNEL_CACHE_OFFERS = 1  # the archive of the driver earlier machines ran: an exact key, never "newest"
DRIVER_VERSION = re.compile(r"\d{1,4}(\.\d{1,4}){1,3}")
_SLUG_DROP = re.compile(r"[^a-z0-9]+")


def gpu_slug(model: str) -> str:
    """A GPU model as one safe key segment: "NVIDIA A10G" -> "nvidia-a10g"."""
    return _SLUG_DROP.sub("-", model.lower()).strip("-")[:64] or "unknown"


def kernel_cache_prefix(blender_version: str, gpu_model: str) -> str:
    """The folder of one Blender build's kernel caches on one GPU model (one archive per driver)."""
    version = _SLUG_DROP.sub("-", blender_version.lower()).strip("-")[:32] or "unknown"
    return f"{KERNEL_CACHE_PREFIX}{KERNEL_CACHE_LAYOUT}{version}/{gpu_slug(gpu_model)}/"


def spec_key(job_id: str) -> str:
    return f"jobs/{job_id}/worker-spec.json"


def record_key(job_id: str) -> str:
    """The job's shared summary (cloud/job/summary.py): what another computer lists and follows."""
    return f"jobs/{job_id}/job.json"


def cancel_key(job_id: str) -> str:
    """Written by the add-on that cancels a job, so the computer that submitted it (or any
    other following it) ends it as cancelled rather than as machines lost."""
    return control_key(job_id, "cancel.json")


# What a job id may be wherever one is read back from the bucket (a folder under jobs/): letters,
# digits, '-' and '_' (new_job_id writes "20261125-144501-3f2a9c"), so no '/', '.' or '..'.
JOB_ID_PATTERN = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,63}")


@dataclass
class InputChunk:
    """One piece of a chunked input, in file order."""

    sha256: str
    size: int
    url: str  # presigned GET of cas/chunks/<sha256>, or of cas/chunks/<sha256>.zlib
    encoding: str = ""  # "" the object is the chunk's bytes; "zlib" they are compressed


@dataclass
class InputFile:
    """One file the worker downloads: where it goes in the job directory and how to check it."""

    path: str  # relative POSIX path inside the job directory
    url: str  # presigned GET ("" when the file travels as chunks)
    sha256: str
    size: int
    chunks: list[InputChunk] = field(default_factory=list)  # contract 4: concatenated, in order
    encoding: str = ""  # how the object behind `url` is stored (ENCODINGS); each chunk says its own


@dataclass
class BlenderSource:
    """One place the worker may get Blender from, tried in the spec's order."""

    kind: str  # "bucket" (tarball in the artist's bucket), "pypi" (bpy wheel), "url"
    version: str
    url: str = ""  # presigned GET of the tarball ("bucket", "url")
    sha256: str = ""  # expected SHA-256 of the tarball
    package: str = ""  # "bpy==5.0.1" for "pypi"


@dataclass
class KernelArchive:
    """The kernel-cache archive in the bucket for the driver earlier machines ran."""

    driver: str  # the NVIDIA driver version in its name: only a machine with that driver takes it
    url: str  # presigned GET
    size: int


@dataclass
class KernelCacheOffer:
    """What the machine may restore before Blender starts and where it may keep what it filled."""

    blender_version: str
    gpu_model: str  # the catalog's GPU for the instance type (the machine checks nvidia-smi's)
    prefix: str  # kernel-cache/v2/<version>/<gpu slug>/
    archives: list[KernelArchive] = field(default_factory=list)
    # presigned POST limited to `prefix` and MAX_KERNEL_CACHE_BYTES; "" for a job whose scene
    # can run Python on the machine: what it compiled is never kept for other jobs
    upload_url: str = ""
    upload_fields: dict[str, str] = field(default_factory=dict)
    max_bytes: int = MAX_KERNEL_CACHE_BYTES
    not_kept_because: str = ""  # why there is no upload_url, for the machine's log


@dataclass
class StillPart:
    """Samples [offset, offset + length) of the still's total, rendered by whichever machine
    claims part `index`."""

    index: int
    offset: int
    length: int


@dataclass
class StillSpec:
    """One Cycles frame over many machines: its samples cut into parts, claimed like frames (a
    conditional write per part), each rendered with the sample-subset settings and uploaded as a
    multilayer EXR under out/parts/; the first machine to finish a part claims the merge, adds
    each part as it lands, merges exactly, denoises and composites once, and uploads the final
    image as the job's frame."""

    frame: int
    total_samples: int
    parts: list[StillPart]
    claim_urls: dict[str, str]  # part index (text) -> presigned PUT of its claim, If-None-Match: *
    part_urls: dict[str, str]  # part index (text) -> presigned GET of its EXR (for the merge)
    parts_list_url: str  # presigned ListObjectsV2 of out/parts/: is every part in?
    merge_claim_url: str  # presigned PUT of claims/merge: one machine merges
    # The merging machine renders a part itself once it is this many seconds overdue (plus twice
    # a part's time there): the part's machine is taken to be lost (still_gather.py).
    takeover_after_s: float = 120.0


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
    # One machine: the pages of a listing of out/marks/ (rendered-<f>, written after each frame's
    # upload), so a re-run skips every frame already uploaded however many there are (one
    # listing answers 1000 keys at most). Pages: see presign.presign_list_pages.
    mark_list_urls: list[str] = field(default_factory=list)
    blender_sources: list[BlenderSource] = field(default_factory=list)
    frame_order: str = "sequential"  # or "preview_first"
    device: str = "GPU"  # "GPU": OptiX, else CUDA, and fail if neither works; "CPU"
    samples: int | None = None
    resolution_percentage: int | None = None
    file_format: str | None = None
    movie_frames_format: str = "PNG"  # a movie job renders its frames as PNG or OPEN_EXR first
    # False where this machine will not hold every frame (a relaunch of missing frames, one of
    # many machines): frames only, the movie is made where they all are (Make Movie Here).
    encode_movie: bool = True
    max_seconds: int = 7200  # dead-man: the machine powers off after this, whatever happens
    heartbeat_seconds: float = 5.0
    log_chunk_seconds: float = 2.0
    scout_frames: list[int] = field(default_factory=list)  # "quote first": render these, then wait
    go_url: str = ""  # presigned GET of control/go.json, the answer to the quote
    # Many machines: frame (as text) -> presigned PUT of its claim, sent with If-None-Match: *;
    # the pages of a listing of every claim (their ETags say who holds each); machine index (as
    # text) -> the pages of a listing of its marks/. A retried machine reads both to find what
    # its lost attempt claimed and never uploaded. Pages: see presign.presign_list_pages.
    claim_urls: dict[str, str] = field(default_factory=dict)
    claim_list_urls: list[str] = field(default_factory=list)
    machine_list_urls: dict[str, list[str]] = field(default_factory=dict)
    machine_count: int = 1
    # Frame (as text) -> the seconds it is expected to take, where the estimate knows them
    # (relative weights do as well): with many machines the longest are handed out first, so a
    # long frame does not start last and keep one machine busy while the others idle.
    frame_seconds: dict[str, float] = field(default_factory=dict)
    # Farm equals local: add-ons that travelled (their files are inputs under ADDONS_DIR), the
    # artist's Auto Run setting and environment fingerprint, and whether to render on although
    # the machine's differs in ways that change pixels.
    addons: list[dict[str, Any]] = field(default_factory=list)  # module, version, preferences
    auto_run: bool = False
    fingerprint: dict[str, Any] = field(default_factory=dict)
    accept_differences: bool = False
    # The GPU kernel caches of earlier machines (None: no GPU, or nothing to offer).
    kernel_cache: KernelCacheOffer | None = None
    still: StillSpec | None = None  # engine "still": the parts of one frame's samples
    # The e-mail when the job ends (notice.py): {"label": the file's name, sanitised,
    # "usd_per_hour": the job's machines' price each, "keep_days": how long the bucket keeps
    # its data}. Empty: no notice is written.
    notice: dict[str, Any] = field(default_factory=dict)
    notice_claim_url: str = ""  # many machines: presigned PUT of mail_claim_key (If-None-Match)
    # Many machines: the pages of a listing of out/ended/ (each machine's end mark, `<index>`),
    # what the last machine to end reads to tell the job ended and send its e-mail.
    ended_list_urls: list[str] = field(default_factory=list)
    # One of ENGINES. Left empty, it is derived from the fields above (spec_engine), so a spec
    # built without it still names its engine when written.
    engine: str = ""
    spec_version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        self.engine = spec_engine({"engine": self.engine, "claim_urls": self.claim_urls})

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerSpec:
        data = dict(data)
        data["inputs"] = [parse_input(item) for item in data.get("inputs", [])]
        data["blender_sources"] = [BlenderSource(**item) for item in data.get("blender_sources", [])]
        if data.get("kernel_cache") is not None:
            data["kernel_cache"] = parse_kernel_cache_offer(data["kernel_cache"])
        return cls(**data)


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _sha256(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise ContractError(f"{what} is not a SHA-256 in hex")
    return value


def _url(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.startswith(("https://", "http://")) or len(value) > 8192:
        raise ContractError(f"{what} is not a link")
    return value


def _encoding(value: Any, what: str) -> str:
    if value is None:
        return ""
    if value not in ENCODINGS:
        raise ContractError(f"{what} is stored as {clean_text(value, 20)!r}, not one of {ENCODINGS}")
    return str(value)


def parse_input(item: Any) -> InputFile:
    """One entry of the spec's `inputs`, checked (on the machine, before any download): a safe
    path, a SHA-256, a size in range, a known encoding, and either a link or a chunk list whose
    sizes add up to the file's size, each chunk bounded. Anything else is refused with the reason."""
    if not isinstance(item, dict):
        raise ContractError("an input of the job spec is not an object")
    path = safe_relative_path(item.get("path"))
    sha = _sha256(item.get("sha256"), f"the checksum of {path}")
    size = int(_int(item.get("size"), f"the size of {path}", 0, MAX_INPUT_BYTES) or 0)
    raw = item.get("chunks") or []
    if not isinstance(raw, list) or len(raw) > MAX_CHUNKS:
        raise ContractError(f"the chunk list of {path} is not a list of at most {MAX_CHUNKS} chunks")
    chunks = []
    for number, chunk in enumerate(raw):
        what = f"chunk {number} of {path}"
        if not isinstance(chunk, dict):
            raise ContractError(f"{what} is not an object")
        chunks.append(
            InputChunk(
                sha256=_sha256(chunk.get("sha256"), f"the checksum of {what}"),
                size=int(_int(chunk.get("size"), f"the size of {what}", 1, MAX_CHUNK_BYTES) or 0),
                url=_url(chunk.get("url"), f"the link of {what}"),
                encoding=_encoding(chunk.get("encoding"), what),
            )
        )
    if chunks:
        total = sum(chunk.size for chunk in chunks)
        if total != size:
            raise ContractError(f"the chunks of {path} add up to {total} bytes, the file has {size}")
        url = ""
    else:
        url = _url(item.get("url"), f"the link of {path}")
    encoding = "" if chunks else _encoding(item.get("encoding"), path)
    return InputFile(path=path, url=url, sha256=sha, size=size, chunks=chunks, encoding=encoding)


# ---------------------------------------------------------------- reading what the machine wrote


class ContractError(ValueError):
    """A document or key from the machine that breaks the contract; the text says how."""


def _check_version(data: dict[str, Any], what: str) -> None:
    version = data.get("contract", CONTRACT_VERSION)
    if version != CONTRACT_VERSION:
        raise ContractError(
            f"{what} was written by a render machine of contract version {version!r}, "
            f"this add-on speaks version {CONTRACT_VERSION}"
        )


def load_document(body: bytes, what: str, max_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """Bytes from the bucket -> a JSON object, bounded in size and checked for its version."""
    if len(body) > max_bytes:
        raise ContractError(f"{what} is {len(body)} bytes, over the {max_bytes} allowed")
    try:
        data = json.loads(body.decode("utf-8"))
    except RecursionError as exc:  # "[[[[..." a few kB deep: the parser's own stack gives out
        raise ContractError(f"{what} is nested too deeply to read") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise ContractError(f"{what} is not valid JSON: {clean_text(exc, 200)}") from exc
    if not isinstance(data, dict):
        raise ContractError(f"{what} is a JSON {type(data).__name__}, not an object")
    if _depth(data) > MAX_JSON_DEPTH:  # comparing or printing it would recurse as deep
        raise ContractError(f"{what} is nested over {MAX_JSON_DEPTH} levels deep")
    _check_version(data, what)
    return data


def _depth(data: Any) -> int:
    """How deep lists and objects nest in a loaded document (counted without recursing)."""
    deepest, todo = 0, [(data, 1)]
    while todo:
        value, level = todo.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, level)
            if level <= MAX_JSON_DEPTH:
                todo.extend(
                    (item, level + 1) for item in (value.values() if isinstance(value, dict) else value)
                )
    return deepest


_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]?|[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LINE_BREAK = re.compile("\r\n|[\t\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# What changes or hides how the text around it reads: bidirectional controls (U+202E shows the
# rest of a line backwards), zero-width and every other format character (Unicode's Cf), and
# lone surrogates (which JSON's \ud800 yields and no UTF-8 string, Blender's included, holds).
_HIDDEN = re.compile(
    "[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f\ud800-\udfff]"
)


def shown_text(text: str) -> str:
    """Text from the machine as the artist may see it (panel, job log, tooltip): one line, terminal
    escapes and control characters removed, and what would reorder or hide text made visible
    as <U+202E>, so that a line reads as what it is."""
    if text.isascii() and text.isprintable():
        return text  # nearly every line: nothing to do
    text = _LINE_BREAK.sub(" ", text)
    text = _CONTROL.sub("", text)
    return _HIDDEN.sub(lambda found: f"<U+{ord(found.group()):04X}>", text)


def clean_text(value: Any, limit: int = MAX_TEXT_CHARS) -> str:
    """Any value as one safe line of text (shown_text), cut to `limit` characters."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    text = shown_text(text[: limit * 2])
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def clean_log_line(line: str) -> str:
    """A log line as it may be shown: no escapes or control characters, at most MAX_LOG_LINE_CHARS."""
    return clean_text(line, MAX_LOG_LINE_CHARS)


def _int(value: Any, what: str, low: int, high: int, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ContractError(f"{what} must be a whole number, not {type(value).__name__}")
    if not low <= value <= high:
        raise ContractError(f"{what} {value} is outside {low}..{high}")
    return value


def _float(value: Any, what: str, low: float, high: float, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ContractError(f"{what} must be a number, not {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # a whole number of hundreds of digits
        raise ContractError(f"{what} is too large a number") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise ContractError(f"{what} {value!r} is outside {low}..{high}")
    return number


def _frames(value: Any, what: str, allowed: set[int] | None) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 200_000:
        raise ContractError(f"{what} must be a list of frame numbers")
    frames = [int(_int(item, what, FRAME_MIN, FRAME_MAX) or 0) for item in value]
    if allowed is not None:
        strangers = [f for f in frames if f not in allowed]
        if strangers:
            raise ContractError(f"{what} names frames the job does not have: {strangers[:5]}")
    return frames


def parse_frame_seconds(value: Any, what: str, allowed: set[int], limit: int) -> dict[int, float]:
    """A document's `frame_seconds` (frame as text -> seconds Blender took for it), checked: an
    object of at most `limit` entries, each a frame of the job and a finite time within
    MIN_FRAME_SECONDS..MAX_SECONDS. Absent reads as nothing known; anything else is refused."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > limit:
        raise ContractError(f"{what} must be an object of at most {limit} frames")
    seconds: dict[int, float] = {}
    for key, number in value.items():
        if not isinstance(key, str) or len(key) > 8 or not re.fullmatch(r"-?[0-9]+", key):
            raise ContractError(f"{what} names {clean_text(key, 20)!r}, which is not a frame number")
        frame = int(key)
        if frame not in allowed:
            raise ContractError(f"{what} names frame {frame}, which the job does not have")
        seconds[frame] = float(
            _float(number, f"{what} of frame {frame}", MIN_FRAME_SECONDS, MAX_SECONDS) or 0.0
        )
    return seconds


def spec_frame_seconds(seconds: dict[int, float], frames: list[int]) -> dict[str, float]:
    """The spec's `frame_seconds`, bounded as the machine's reports are: the job's frames only,
    finite times within MIN_FRAME_SECONDS..MAX_SECONDS (others dropped: it is a hint), rounded."""
    allowed = set(frames)
    return {
        str(frame): round(float(value), 3)
        for frame, value in seconds.items()
        if frame in allowed
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and MIN_FRAME_SECONDS <= value <= MAX_SECONDS
    }


def _choice(value: Any, what: str, choices: tuple[str, ...], default: str) -> str:
    return value if isinstance(value, str) and value in choices else default


@dataclass(frozen=True)
class StatusReport:
    """status.json, as the add-on may use it."""

    state: str
    frame: int | None
    sample: int | None
    samples: int | None
    frames_done: list[int]
    seconds_per_frame: float
    device: str
    blender_build: str
    message: str
    frame_seconds: dict[int, float] = field(default_factory=dict)  # the most recent frames only
    part: int | None = None  # a still's machine: the part (index) it renders
    gpu_driver: str = ""  # the NVIDIA driver nvidia-smi named: the next job's kernel-cache key


def parse_status(data: dict[str, Any], job_frames: list[int]) -> StatusReport:
    state = data.get("state")
    if state not in ALL_STATES:
        raise ContractError(f"status.json has an unknown state {clean_text(state, 40)!r}")
    allowed = set(job_frames)
    frame = _int(data.get("frame"), "status frame", FRAME_MIN, FRAME_MAX, optional=True)
    if frame is not None and frame not in allowed:
        raise ContractError(f"status.json says frame {frame}, which the job does not have")
    samples = _int(data.get("samples"), "status samples", 0, MAX_SAMPLES, optional=True)
    sample = _int(data.get("sample"), "status sample", 0, MAX_SAMPLES, optional=True)
    if sample is not None and samples is not None and sample > samples:
        raise ContractError(f"status.json says sample {sample} of {samples}")
    return StatusReport(
        state=str(state),
        frame=frame,
        sample=sample,
        samples=samples,
        frames_done=_frames(data.get("frames_done"), "status frames_done", allowed),
        seconds_per_frame=_float(data.get("seconds_per_frame"), "seconds per frame", 0, MAX_SECONDS, True)
        or 0.0,
        device=clean_text(data.get("device"), 64),
        blender_build=clean_text(data.get("blender_build"), 200),
        message=clean_text(data.get("message")),
        frame_seconds=parse_frame_seconds(
            data.get("frame_seconds"), "status frame_seconds", allowed, MAX_STATUS_FRAME_SECONDS
        ),
        part=_int(data.get("part"), "status part", 0, MAX_STILL_PARTS - 1, optional=True),
        gpu_driver=_driver(data.get("gpu_driver")),
    )


def _driver(value: Any) -> str:
    """status.json's gpu_driver: absent or "", or a driver version (it becomes an object key)."""
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or not DRIVER_VERSION.fullmatch(value):
        raise ContractError(f"status.json gpu_driver {clean_text(value, 40)!r} is not a driver version")
    return value


@dataclass(frozen=True)
class DoneReport:
    frames_done: list[int]
    seconds: float
    movie: str = ""  # a movie job's movie, under out/movie/ (one file name)
    movie_seconds: float = 0.0
    movie_error: str = ""  # why the movie could not be made (the frames are there)


MOVIE_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".ogv", ".ogg", ".mpg", ".mpeg", ".dv", ".flv")


def parse_done(data: dict[str, Any], job_frames: list[int]) -> DoneReport:
    movie = data.get("movie")
    name, seconds = "", 0.0
    if movie is not None:
        if not isinstance(movie, dict):
            raise ContractError("done.json's movie is not an object")
        name = safe_relative_path(movie.get("name"))
        if "/" in name or not name.lower().endswith(MOVIE_EXTENSIONS):
            raise ContractError(f"movie name {clean_text(name, 80)!r} is not a movie file name")
        seconds = _float(movie.get("seconds"), "movie seconds", 0, MAX_SECONDS, True) or 0.0
    return DoneReport(
        frames_done=_frames(data.get("frames_done"), "done frames", set(job_frames)),
        seconds=_float(data.get("seconds"), "done seconds", 0, MAX_SECONDS, True) or 0.0,
        movie=name,
        movie_seconds=seconds,
        movie_error=clean_text(data.get("movie_error")),
    )


def movie_key(job_id: str, name: str) -> str:
    return f"jobs/{job_id}/out/movie/{name}"


def _frames_hint(value: Any, what: str, allowed: set[int]) -> tuple[list[int], str]:
    """An end document's frames left: a hint beside its cause, so a list that breaks the
    contract is dropped (with the reason, for the log) and the rest of the document still read."""
    try:
        return _frames(value, what, allowed), ""
    except ContractError as error:
        return [], str(error)


@dataclass(frozen=True)
class ErrorReport:
    kind: str
    cause: str
    frame: int | None
    last_lines: list[str]
    frames_left: list[int]
    dropped: str = ""  # what was left out as breaking the contract (for the job log)


def parse_error(data: dict[str, Any], job_frames: list[int]) -> ErrorReport:
    """error.json, read leniently: a failed machine's cause is what the artist needs, so no
    field of it can refuse the cause (each is checked on its own)."""
    lines = data.get("last_lines")
    if not isinstance(lines, list):
        lines = []
    allowed = set(job_frames)
    frame = data.get("frame")
    frames_left, dropped = _frames_hint(data.get("frames_left"), "error frames_left", allowed)
    return ErrorReport(
        kind=_choice(data.get("kind"), "error kind", ERROR_KINDS, "unknown"),
        cause=clean_text(data.get("cause")),
        frame=frame if isinstance(frame, int) and not isinstance(frame, bool) and frame in allowed else None,
        last_lines=[clean_log_line(line if isinstance(line, str) else "") for line in lines[-MAX_LOG_LINES:]],
        frames_left=frames_left,
        dropped=dropped,
    )


@dataclass(frozen=True)
class InterruptedReport:
    reason: str
    frames_left: list[int]
    dropped: str = ""  # what was left out as breaking the contract (for the job log)


def parse_interrupted(data: dict[str, Any], job_frames: list[int]) -> InterruptedReport:
    """interrupted.json, read as leniently as error.json: its reason chooses the words."""
    frames_left, dropped = _frames_hint(data.get("frames_left"), "interrupted frames_left", set(job_frames))
    return InterruptedReport(
        reason=_choice(data.get("reason"), "interruption reason", INTERRUPTION_REASONS, "spot"),
        frames_left=frames_left,
        dropped=dropped,
    )


@dataclass(frozen=True)
class QuoteReport:
    scout_frames: list[int]
    seconds_per_frame: float


def parse_quote(data: dict[str, Any], job_frames: list[int]) -> QuoteReport:
    scouts = _frames(data.get("scout_frames"), "quote scout frames", set(job_frames))
    seconds = _float(data.get("seconds_per_frame"), "quote seconds per frame", 0.001, MAX_SECONDS)
    if not scouts:
        raise ContractError("quote.json names no scout frames")
    return QuoteReport(scout_frames=scouts, seconds_per_frame=float(seconds or 0.0))


_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_relative_path(text: Any) -> str:
    """A relative POSIX path that stays inside the folder it is joined to, or ContractError.

    Refused: empty names, absolute paths, `..` and `.` parts, backslashes, drive letters,
    control characters, and names longer than MAX_PATH_CHARS.
    """
    if not isinstance(text, str) or not text or len(text) > MAX_PATH_CHARS:
        raise ContractError(f"unusable file name {clean_text(text, 80)!r}")
    if text.startswith("/") or "\\" in text or _DRIVE.match(text) or _CONTROL.search(text):
        raise ContractError(f"file name {clean_text(text, 80)!r} could leave the job's folder")
    parts = text.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ContractError(f"file name {clean_text(text, 80)!r} could leave the job's folder")
    return text


def parse_plan(data: dict[str, Any], job_frames: list[int]) -> dict[str, int]:
    """plan.json -> {frame file relative to out/frames/: frame number}."""
    items = data.get("frames")
    if not isinstance(items, list):
        raise ContractError("plan.json has no list of frames")
    allowed = set(job_frames)
    plan: dict[str, int] = {}
    for item in items:
        if not isinstance(item, dict):
            raise ContractError("plan.json has an entry that is not an object")
        name = safe_relative_path(item.get("name"))
        frame = _int(item.get("frame"), "plan frame", FRAME_MIN, FRAME_MAX)
        if frame not in allowed:
            raise ContractError(f"plan.json names frame {frame}, which the job does not have")
        plan[name] = int(frame or 0)
    return plan


MAX_MACHINES = 1000  # AWS Batch's largest array is 10,000; no job here needs more


def machine_index(text: Any) -> int:
    """A machine's array index as it appears in a key (`machines/<index>/`), or ContractError."""
    if not isinstance(text, str) or not text.isdigit() or len(text) > 4:
        raise ContractError(f"machine index {clean_text(text, 20)!r} is not a number")
    index = int(text)
    if index >= MAX_MACHINES:
        raise ContractError(f"machine index {index} is over the {MAX_MACHINES} allowed")
    return index


# Add-ons that travel lie under this folder of the job, as Blender's user resources
# (`scripts/addons/<module>/`, `extensions/<repo>/<id>/`).
ADDONS_DIR = "_cloud_render_user"
MAX_DIFFERENCES = 64
MAX_ADDONS = 256


@dataclass(frozen=True)
class EnvironmentReport:
    """environment.json: what the machine installed and how its Blender differs from the artist's."""

    installed: list[str]
    failed: list[str]
    differences: list[dict[str, str]]  # level ("stop"/"note"), what, artist, machine, message
    blender_version: str
    view_transform: str
    ocio_config: str


def parse_environment(data: dict[str, Any]) -> EnvironmentReport:
    def names(value: Any, what: str) -> list[str]:
        if not isinstance(value, list) or len(value) > MAX_ADDONS:
            raise ContractError(f"environment.json {what} is not a short list")
        return [clean_text(v, 200) for v in value]

    raw = data.get("differences")
    if not isinstance(raw, list) or len(raw) > MAX_DIFFERENCES:
        raise ContractError("environment.json differences is not a short list")
    differences = []
    for item in raw:
        if not isinstance(item, dict):
            raise ContractError("environment.json holds a difference that is not an object")
        differences.append(
            {
                "level": _choice(item.get("level"), "difference level", ("stop", "note"), "note"),
                "what": clean_text(item.get("what"), 40),
                "artist": clean_text(item.get("artist"), 200),
                "machine": clean_text(item.get("machine"), 200),
                "message": clean_text(item.get("message"), 400),
            }
        )
    fingerprint = data.get("fingerprint")
    fingerprint = fingerprint if isinstance(fingerprint, dict) else {}
    return EnvironmentReport(
        installed=names(data.get("installed", []), "installed"),
        failed=names(data.get("failed", []), "failed"),
        differences=differences,
        blender_version=clean_text(fingerprint.get("blender_version"), 64),
        view_transform=clean_text(fingerprint.get("view_transform"), 64),
        ocio_config=clean_text(fingerprint.get("ocio_config"), 200),
    )


MAX_STILL_PARTS = 256
MAX_STILL_SAMPLES = 1 << 24


def parse_still(data: Any) -> StillSpec:
    """The spec's still section, checked as the machine reads it: parts that tile the total
    exactly (each sample rendered once), a link for each part's claim and EXR."""
    if not isinstance(data, dict):
        raise ContractError("the job spec's still section is not an object")

    def whole(value: Any, what: str, low: int, high: int) -> int:
        return int(_int(value, what, low, high) or 0)

    total = whole(data.get("total_samples"), "still total samples", 1, MAX_STILL_SAMPLES)
    items = data.get("parts")
    if not isinstance(items, list) or not 0 < len(items) <= MAX_STILL_PARTS:
        raise ContractError("the job spec's still has no list of parts (or too many)")
    parts: list[StillPart] = []
    for item in items:
        if not isinstance(item, dict):
            raise ContractError("a still part is not an object")
        parts.append(
            StillPart(
                whole(item.get("index"), "part index", 0, MAX_STILL_PARTS - 1),
                whole(item.get("offset"), "part offset", 0, total - 1),
                whole(item.get("length"), "part samples", 1, total),
            )
        )
    covered = sorted((p.offset, p.offset + p.length) for p in parts)
    gaps = any(a[1] != b[0] for a, b in itertools.pairwise(covered))
    if (
        [p.index for p in parts] != list(range(len(parts)))
        or (covered[0][0], covered[-1][1]) != (0, total)
        or gaps
    ):
        raise ContractError("the still's parts do not cover its samples once each")
    urls = {}
    for name in ("claim_urls", "part_urls"):
        links = data.get(name)
        if not isinstance(links, dict) or set(links) != {str(p.index) for p in parts}:
            raise ContractError(f"the still's {name} do not name every part")
        urls[name] = {str(k): str(v) for k, v in links.items()}
    return StillSpec(
        frame=whole(data.get("frame"), "still frame", FRAME_MIN, FRAME_MAX),
        total_samples=total,
        parts=parts,
        claim_urls=urls["claim_urls"],
        part_urls=urls["part_urls"],
        parts_list_url=str(data.get("parts_list_url") or ""),
        merge_claim_url=str(data.get("merge_claim_url") or ""),
        takeover_after_s=_or(
            _float(data.get("takeover_after_s"), "still takeover seconds", 0.0, 86400.0, optional=True),
            StillSpec.takeover_after_s,
        ),
    )


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def spec_engine(data: dict[str, Any]) -> str:
    """The spec's engine (one of ENGINES); a spec written without one: "batch" where it hands
    out claims, else "ec2". Anything else is a ContractError."""
    engine = data.get("engine") or ("batch" if data.get("claim_urls") else "ec2")
    if engine not in ENGINES:
        raise ContractError(f"the job spec names engine {clean_text(engine, 40)!r}, not one of {ENGINES}")
    return str(engine)


def check_spec_version(data: dict[str, Any]) -> None:
    """On the machine: refuse a spec of another contract version before doing anything."""
    version = data.get("spec_version")
    if version != CONTRACT_VERSION:
        raise ContractError(
            f"the job spec is contract version {version!r}, this machine's worker speaks "
            f"{CONTRACT_VERSION}: the add-on and the worker it uploaded do not match"
        )


def parse_kernel_cache_offer(data: Any) -> KernelCacheOffer:
    """The spec's `kernel_cache` on the machine: checked before any of it is used.

    The machine turns the driver version into a key and the archive sizes into download
    limits, so a malformed offer is refused whole (the machine then renders without the cache).
    """
    if not isinstance(data, dict):
        raise ContractError(f"kernel_cache is a {type(data).__name__}, not an object")
    prefix = data.get("prefix")
    if not isinstance(prefix, str) or not re.fullmatch(
        r"kernel-cache/v2/[a-z0-9-]{1,32}/[a-z0-9-]{1,64}/", prefix
    ):
        raise ContractError(f"kernel_cache prefix {clean_text(prefix, 80)!r} is not a kernel-cache folder")
    max_bytes = _int(
        data.get("max_bytes", MAX_KERNEL_CACHE_BYTES), "kernel_cache max_bytes", 1, MAX_KERNEL_CACHE_BYTES
    )
    archives = data.get("archives") or []
    if not isinstance(archives, list) or len(archives) > MAX_KERNEL_CACHE_OFFERS:
        raise ContractError(f"kernel_cache offers more than {MAX_KERNEL_CACHE_OFFERS} archives")
    offered = []
    for item in archives:
        if not isinstance(item, dict):
            raise ContractError("a kernel_cache archive is not an object")
        driver, url = item.get("driver"), item.get("url")
        if not isinstance(driver, str) or not DRIVER_VERSION.fullmatch(driver):
            raise ContractError(f"kernel_cache driver {clean_text(driver, 40)!r} is not a driver version")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ContractError("a kernel_cache archive has no http(s) URL")
        size = _int(item.get("size"), "kernel_cache archive size", 1, int(max_bytes or 0))
        offered.append(KernelArchive(driver=driver, url=url, size=int(size or 0)))
    upload_url = data.get("upload_url", "")
    fields = data.get("upload_fields") or {}
    if not isinstance(upload_url, str) or not isinstance(fields, dict):
        raise ContractError("kernel_cache upload_url or upload_fields has the wrong type")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items()):
        raise ContractError("kernel_cache upload_fields must map text to text")
    for name in ("blender_version", "gpu_model"):
        if not isinstance(data.get(name), str):
            raise ContractError(f"kernel_cache {name} must be text")
    if not isinstance(data.get("not_kept_because", ""), str):
        raise ContractError("kernel_cache not_kept_because must be text")
    return KernelCacheOffer(
        blender_version=clean_text(data["blender_version"], 64),
        gpu_model=clean_text(data["gpu_model"], 128),
        prefix=prefix,
        archives=offered,
        upload_url=upload_url,
        upload_fields=dict(fields),
        max_bytes=int(max_bytes or 0),
        not_kept_because=clean_text(data.get("not_kept_because", ""), 200),
    )
