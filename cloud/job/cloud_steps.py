"""The AWS and disk steps a job runs whatever its engine, bound to the backend modules.

`JobRunner` holds the job's logic (order, states, caps, endings); this class does each step
(pack, upload, the spec and boot script, reads of what the machines wrote); where the machines
run is the job's engine (engine.py). Keeping them apart keeps the runner readable and lets a
test swap one step for a faulty one (through a subclass) without patching boto3.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..aws import blender_cache, bucket_registry, bucket_setup, kernel_cache, storage, uploads
from ..aws.kernel_drivers import FILE_NAME as KERNEL_DRIVERS_FILE
from ..aws.kernel_drivers import KernelDrivers
from ..aws.known_objects import FILE_NAME as KNOWN_OBJECTS_FILE
from ..aws.known_objects import KnownObjects
from ..aws.session import AwsSettings
from ..cost import caps
from ..cost.catalog import load_catalog
from ..errors import CloudError, ErrorCode
from ..machine import contract, worker_archive
from ..machine.notice import safe_label
from ..pack import FRAMES_IMAGE_PREFIX
from ..pack.chunking import ChunkPolicy
from ..pack.hash_cache import FILE_NAME as HASH_CACHE_FILE
from ..pack.hash_cache import HashCache
from . import phone_page
from .poll_bounds import MAX_LOG_CHUNKS_PER_POLL
from .records import JobRecord, JobRequest
from .summary import SUMMARY_VERSION, summary_of
from .user_data import build_user_data

if TYPE_CHECKING:
    from .engine import Engine

WORKER_FOLDER = "worker"  # in the state folder: the archive of machine files, read by the upload
BOOT_OVERHEAD_S = 15 * 60  # boot, Blender install and downloads, added to the dead-man timer


@dataclass
class PackedScene:
    """What was packed: paths inside the job directory -> (sha256, size), and where they lie locally."""

    blend_path: str
    files: dict[str, tuple[str, int]]
    root: Path | None  # None when reusing inputs already in the bucket (relaunch)
    missing: list[str] = field(default_factory=list)
    # Where to read each file from: the artist's own file when packing did not change it.
    sources: dict[str, Path] = field(default_factory=dict)
    stamps: dict[str, tuple[int, int]] = field(default_factory=dict)  # (size, mtime_ns) when hashed
    # A large .blend: its chunks in order, (sha256, size) each; uploaded and fetched instead of the file.
    chunks: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # for the job log
    # Plain key -> "zlib" for each input stored compressed (filled by the upload, or from the
    # record on a relaunch): the spec names that form for the machine.
    encodings: dict[str, str] = field(default_factory=dict)


def add_travelling_files(packed: PackedScene, request: JobRequest) -> None:
    """The add-ons that travel and the disk bakes beside the .blend, read from where they lie."""
    from ..pack.bakes import disk_bake_inputs

    extra = {rel: Path(local) for rel, local in request.addon_files.items()}
    extra.update(disk_bake_inputs(request.bake_folders, posixpath.dirname(packed.blend_path)))
    for rel, path in sorted(extra.items()):
        stat = path.stat()
        packed.files[rel] = (uploads.hash_file(path), stat.st_size)
        packed.sources[rel] = path
        packed.stamps[rel] = (stat.st_size, stat.st_mtime_ns)


def _check_unchanged(packed: PackedScene) -> None:
    """Files are uploaded from where they lie, not from a copy: one edited since it was hashed
    must not reach the machine under its old hash (the machine would refuse it)."""
    for rel, (size, mtime_ns) in packed.stamps.items():
        source = packed.sources.get(rel)
        if source is None:
            continue
        try:
            now = source.stat()
        except OSError:
            now = None
        if now is None or (now.st_size, now.st_mtime_ns) != (size, mtime_ns):
            raise CloudError(
                f"{source.name} changed while the scene was being uploaded.",
                "Render in Cloud again once it is saved; what was already uploaded is not sent twice.",
                code=ErrorCode.INPUT_CHANGED,
                detail=str(source),
            )


@dataclass
class Sent:
    bytes_sent: int
    files_sent: int
    files_skipped: int
    chunks_sent: int = 0
    chunks_total: int = 0
    chunk_bytes_sent: int = 0
    wire_bytes: int = 0  # what crossed the uplink: compressed objects at their compressed size


ProgressFn = Callable[[float, float, str], None]


class CloudSteps:
    # Which .blend files travel as chunks and how big those are (tests lower the threshold).
    chunking: ChunkPolicy = ChunkPolicy()

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)

    # --- pack and upload ------------------------------------------------------------------
    def pack(
        self, request: JobRequest, pack_dir: Path, progress: ProgressFn, cancel: threading.Event
    ) -> PackedScene:
        from ..pack import packer

        def report(step: packer.PackProgress) -> None:
            if step.stage == "tracing":
                progress(0.0, 1.0, f"Tracing dependencies ({step.files_traced} files)")
            else:
                progress(
                    step.bytes_done,
                    step.bytes_total or 1,
                    f"Packing {step.files_done}/{step.files_total} files",
                )

        original = Path(request.blend_name) if request.blend_name else None
        result = packer.pack(
            Path(request.blend_copy),
            pack_dir,
            report,
            cancel,
            original=original,
            skip_images=(FRAMES_IMAGE_PREFIX,),  # earlier jobs' frames, loaded for viewing
            hashes=self.hash_cache,
            chunking=self.chunking,
        )
        packed = PackedScene(
            blend_path=result.manifest.blend,
            files={path: (entry.sha256, entry.size) for path, entry in result.manifest.files.items()},
            root=result.out_dir,
            missing=[f"{m.path} (used by {m.used_by}, looked in {m.looked_in})" for m in result.missing]
            + [f"{u.path} (could not be read: {u.reason})" for u in result.unreadable],
            sources=result.sources,
            stamps=result.stamps,
            chunks={
                path: [(c.sha256, c.size) for c in entry.chunks]
                for path, entry in result.manifest.files.items()
                if entry.chunks
            },
            notes=list(result.notes),
        )
        add_travelling_files(packed, request)
        return packed

    @property
    def hash_cache(self) -> HashCache:
        """File hashes kept between submits (`<user folder>/state/`): a resubmit re-reads only
        the files that changed."""
        return HashCache(self.state_dir / bucket_registry.STATE_FOLDER / HASH_CACHE_FILE)

    @property
    def known_objects(self) -> KnownObjects:
        """What this computer saw in its buckets lately (`<user folder>/state/`): a resubmit asks
        S3 only about the files it has not seen there (cloud/aws/known_objects.py)."""
        return KnownObjects(self.state_dir / bucket_registry.STATE_FOLDER / KNOWN_OBJECTS_FILE)

    @property
    def kernel_drivers(self) -> KernelDrivers:
        """The NVIDIA driver earlier jobs' machines ran, per kernel-cache folder (`<user
        folder>/state/`): the one archive the next job offers (cloud/aws/kernel_drivers.py)."""
        return KernelDrivers(self.state_dir / bucket_registry.STATE_FOLDER / KERNEL_DRIVERS_FILE)

    def discard_pack(self, request: JobRequest) -> None:
        """Remove the scene copy and its pack (a copy of every texture) from the artist's disk.

        Called once the upload is over, whether it went through or the job ended before launch:
        a relaunch reuses the inputs in the bucket, never these. Only the job's own folder goes
        (the one `addon/submit.save_copy` made, named after the job), never any other.
        """
        folder = Path(request.blend_copy).parent
        if request.reuse_inputs_from or folder.name != request.job_id or not folder.is_dir():
            return
        shutil.rmtree(folder, ignore_errors=True)

    def reuse(self, record: JobRecord) -> PackedScene:
        """Inputs of an earlier job, already in the bucket: nothing to pack or upload."""
        files = {path: (str(sha), int(size)) for path, (sha, size) in record.pack_manifest.items()}
        chunks = {
            path: [(str(sha), int(size)) for sha, size in listing]
            for path, listing in record.pack_chunks.items()
            if path in files
        }
        encodings = {str(key): "zlib" for key, form in record.pack_encodings.items() if form == "zlib"}
        return PackedScene(
            blend_path=record.blend_in_pack, files=files, root=None, chunks=chunks, encodings=encodings
        )

    @property
    def buckets(self) -> bucket_registry.BucketRegistry:
        """The one bucket registry, the file Set Up writes too (`state_dir` is the add-on's user folder)."""
        return bucket_registry.bucket_registry(self.state_dir / bucket_registry.STATE_FOLDER)

    def ensure_bucket(self, settings: AwsSettings, retention_days: int) -> str:
        registry = self.buckets
        # Jobs once kept their own registry beside the state folder: its buckets stay in use.
        registry.adopt(self.state_dir / bucket_registry.BUCKETS_FILE)
        return bucket_setup.ensure_bucket(settings, registry, expire_days=retention_days)

    def worker_archive(self) -> tuple[Path, str, int]:
        """(local path, sha256, size) of the one archive of machine files the machine downloads.

        Written once per version into the state folder (the upload reads a file), under its
        SHA-256 like every input in the bucket, so an unchanged add-on uploads nothing; the
        archives of earlier versions are removed.
        """
        data = worker_archive()
        sha = hashlib.sha256(data).hexdigest()
        folder = self.state_dir / bucket_registry.STATE_FOLDER / WORKER_FOLDER
        path = folder / f"{sha}.tar.gz"
        if not path.is_file() or path.stat().st_size != len(data):
            folder.mkdir(parents=True, exist_ok=True)
            partial = folder / f"{sha}.{threading.get_ident()}.part"
            partial.write_bytes(data)
            partial.replace(path)
        for old in folder.glob("*.tar.gz"):
            if old != path:
                old.unlink(missing_ok=True)
        return path, sha, len(data)

    def upload(
        self,
        settings: AwsSettings,
        bucket: str,
        packed: PackedScene,
        progress: ProgressFn,
        cancel: threading.Event,
    ) -> Sent:
        triples: list[tuple[Path | str, str, int]] = [self.worker_archive()]
        pieces: list[uploads.ChunkSource] = []
        if packed.root is not None:
            for rel, (sha, size) in packed.files.items():
                source = packed.sources.get(rel, packed.root / rel)
                if rel not in packed.chunks:
                    triples.append((source, sha, size))
                    continue
                offset = 0
                for chunk_sha, chunk_size in packed.chunks[rel]:
                    pieces.append(uploads.ChunkSource(source, offset, chunk_size, chunk_sha))
                    offset += chunk_size

        def report(step: uploads.UploadProgress) -> None:
            progress(
                step.done, step.total or 1, f"Uploading {step.done / 1e6:.1f} of {step.total / 1e6:.1f} MB"
            )

        _check_unchanged(packed)
        # Asking S3 which files it holds already takes a while for a project of many files:
        # said, so the panel does not sit at "0%" with no word.
        progress(0, 1, f"Checking which of {len(triples)} files are uploaded already")
        try:
            result = uploads.upload_files(
                settings, bucket, triples, report, cancel, chunks=pieces, known=self.known_objects
            )
        except uploads.NotAsHashed as stale:
            if stale.path is not None:  # the next submit reads it afresh
                self.hash_cache.forget(stale.path)
            raise
        _check_unchanged(packed)  # an edit during the upload may have sent new bytes under the old hash
        packed.encodings.update(result.encodings)
        return Sent(
            result.bytes_sent,
            len(result.uploaded),
            len(result.skipped),
            chunks_sent=len(result.chunks_uploaded),
            chunks_total=len(result.chunks_uploaded) + len(result.chunks_skipped),
            chunk_bytes_sent=result.chunk_bytes_sent,
            wire_bytes=result.wire_bytes,
        )

    # --- launch -----------------------------------------------------------------------------
    # The bucket's Blender cache: cloud/aws/blender_cache.py (what is kept, and why it is trusted).
    blender_checksums_url = blender_cache.OFFICIAL_CHECKSUMS_URL  # tests point it at their server

    def blender_sources(
        self, settings: AwsSettings, bucket: str, version: str, expires: int
    ) -> list[contract.BlenderSource]:
        """Bucket cache first (in-region, checked by hash), then the official bpy wheel on PyPI."""
        return blender_cache.blender_sources(settings, bucket, version, expires)

    def stage_blender(
        self, settings: AwsSettings, bucket: str, version: str, tarball: Path, sha256: str
    ) -> None:
        """Put a Blender tarball from this computer in the bucket's cache (demo, tests, benchmarks)."""
        blender_cache.stage_build(settings, bucket, version, tarball, sha256)

    def credential_warning(self, settings: AwsSettings, machine_cap_s: int) -> str | None:
        """Before launch: a sentence when the credentials that sign the machine's links expire
        before the machine may be done (booting plus its time cap), else None."""
        return storage.credential_lifetime_warning(settings, machine_cap_s + BOOT_OVERHEAD_S)

    def boot_script(
        self,
        settings: AwsSettings,
        record: JobRecord,
        request: JobRequest,
        packed: PackedScene,
        engine: Engine,
    ) -> str:
        """Write the job spec and record to the bucket; return the boot script (EC2 user-data,
        or what each Batch child fetches and runs)."""
        bucket, job_id = record.bucket, record.job_id
        cap_s = engine.machine_cap_seconds(record)
        expires = storage.presign_expiry(cap_s)
        inputs = storage.presign_inputs(
            settings,
            bucket,
            [(rel, sha, size) for rel, (sha, size) in sorted(packed.files.items())],
            expires,
            chunks=packed.chunks,
            encodings=packed.encodings,
        )
        post = storage.presign_outputs(settings, bucket, job_id, expires)
        kernels = self.kernel_cache(settings, record, request, expires)
        record.kernel_cache_prefix = kernels.prefix if kernels and kernels.upload_url else ""
        spec = contract.WorkerSpec(
            job_id=job_id,
            engine=engine.name.value,  # which runner the machine starts (chosen at submit)
            blender_version=request.blender_version,
            blend_path=packed.blend_path,
            frames=list(request.frames),
            inputs=inputs,
            upload_url=post["url"],
            upload_fields=post["fields"],
            upload_prefix=contract.out_prefix(job_id),
            list_url=storage.list_link(settings, bucket, contract.frames_prefix(job_id), expires),
            blender_sources=self.blender_sources(settings, bucket, request.blender_version, expires),
            frame_order=request.frame_order,
            device=request.device,
            samples=request.samples,
            resolution_percentage=request.resolution_percentage,
            file_format=request.file_format,
            movie_frames_format=request.movie_frames_format,
            encode_movie=not request.reuse_inputs_from and engine.encodes_movie,
            max_seconds=cap_s,
            scout_frames=scout_frames(request.frames) if request.quote_first else [],
            go_url=storage.get_link(settings, bucket, contract.control_key(job_id, "go.json"), expires)
            if request.quote_first
            else "",
            addons=list(request.addons),
            auto_run=request.auto_run,
            fingerprint=dict(request.fingerprint),
            accept_differences=request.accept_differences,
            kernel_cache=kernels,
            frame_seconds=contract.spec_frame_seconds(request.frame_seconds, record.frames),
            notice=notice_settings(request),
            **engine.spec_extras(settings, record, expires),
        )
        storage.put_json(settings, bucket, contract.spec_key(job_id), json.loads(spec.to_json()))
        _path, worker_sha, _size = self.worker_archive()
        user_data = build_user_data(
            spec_url=storage.get_link(settings, bucket, contract.spec_key(job_id), expires),
            worker_url=storage.get_link(settings, bucket, contract.cas_key(worker_sha), expires),
            worker_sha256=worker_sha,
            max_minutes=caps.dead_man_minutes(cap_s),
            log_post=post,
        )
        self.write_summary(settings, record)
        return user_data

    def write_summary(self, settings: AwsSettings, record: JobRecord) -> None:
        """The job's shared summary in its bucket (cloud/job/summary.py): what another computer
        with the same keys lists, follows and cancels."""
        storage.put_json(settings, record.bucket, contract.record_key(record.job_id), summary_of(record))

    def mark_cancelled(self, settings: AwsSettings, record: JobRecord) -> None:
        """Say in the bucket that the job was cancelled, before its machines are stopped: the
        computer that submitted it (or another following it) then ends it as cancelled, not as
        machines lost."""
        storage.put_json(
            settings,
            record.bucket,
            contract.cancel_key(record.job_id),
            {"summary_version": SUMMARY_VERSION, "cancelled_at": time.time()},
        )

    def cancelled_elsewhere(self, settings: AwsSettings, record: JobRecord) -> bool:
        """Whether a computer marked the job cancelled (a HEAD: nothing read)."""
        return storage.etag(settings, record.bucket, contract.cancel_key(record.job_id)) is not None

    def job_page(self, settings: AwsSettings, record: JobRecord) -> phone_page.PageLink:
        """Write the job's page for a phone to the bucket; its presigned link."""
        return phone_page.write_page(settings, record)

    def kernel_cache(
        self, settings: AwsSettings, record: JobRecord, request: JobRequest, expires: int
    ) -> contract.KernelCacheOffer | None:
        """The GPU kernel cache an earlier job kept for this Blender, GPU and the driver its
        machines ran, and a way to keep this machine's unless its scene can run Python there
        (cloud/aws/kernel_cache.py); None for a CPU job. A cache is a saving, never a reason to
        fail: an error here is a job without one."""
        gpu_model = self.gpu_model(record, request)
        if not gpu_model:
            return None
        prefix = contract.kernel_cache_prefix(request.blender_version, gpu_model)
        try:
            return kernel_cache.offer(
                settings,
                record.bucket,
                request.blender_version,
                gpu_model,
                expires,
                driver=self.kernel_drivers.driver(record.region, record.bucket, prefix),
                not_kept_because=kernel_cache.why_not_kept(request.auto_run, len(request.addons)),
            )
        except CloudError:
            return None

    def gpu_model(self, record: JobRecord, request: JobRequest) -> str | None:
        """The catalog's GPU for the job's instance type (None: a CPU job or machine)."""
        if request.device == "CPU":
            return None
        facts = load_catalog().types.get(record.instance_type)
        return facts.gpu_model if facts else None

    # --- follow ---------------------------------------------------------------------------------
    def get_bytes(self, settings: AwsSettings, bucket: str, key: str, max_bytes: int) -> bytes | None:
        """An object the machine wrote, or None when absent; one over `max_bytes` is not read."""
        return storage.get_bytes(settings, bucket, key, max_bytes)

    def etag(self, settings: AwsSettings, bucket: str, key: str) -> str | None:
        """What an object the machine wrote is now (to read it again only when it changed)."""
        return storage.etag(settings, bucket, key)

    def put_json(self, settings: AwsSettings, bucket: str, key: str, data: Any) -> None:
        storage.put_json(settings, bucket, key, data)

    def list_objects(self, settings: AwsSettings, bucket: str, prefix: str) -> list[storage.StoredObject]:
        return storage.list_objects(settings, bucket, prefix)

    def new_log_chunks(
        self, settings: AwsSettings, bucket: str, job_id: str, marker: str, max_bytes: int
    ) -> list[tuple[str, str | None]]:
        """Log chunks after `marker`, in order (their names are zero-padded sequence numbers);
        a chunk over `max_bytes` comes back as (key, None), unread."""
        chunks: list[tuple[str, str | None]] = []
        listed = storage.list_objects(settings, bucket, contract.logs_prefix(job_id), start_after=marker)
        for obj in listed[:MAX_LOG_CHUNKS_PER_POLL]:  # the rest in the next poll
            body = storage.get_bytes(settings, bucket, obj.key, max_bytes) if obj.size <= max_bytes else None
            chunks.append((obj.key, body.decode("utf-8", "replace") if body is not None else None))
        return chunks

    def download(
        self,
        settings: AwsSettings,
        bucket: str,
        key: str,
        dest: Path,
        max_bytes: int,
        check: Callable[[Path], object] | None = None,
    ) -> None:
        """An output to `dest`; with `check`, a file it refuses never lands (storage.download)."""
        storage.download(settings, bucket, key, dest, max_bytes=max_bytes, check=check)

    def after_job(self, settings: AwsSettings, record: JobRecord) -> list[str]:
        """Keep a Blender build the machine fetched in the bucket's cache when it is an official
        release byte for byte (cloud/aws/blender_cache.py), and the GPU driver its machines ran
        when they could keep a kernel cache (the next job offers that archive); returns lines
        for the job log."""
        if record.kernel_cache_prefix and record.gpu_driver:
            self.kernel_drivers.remember(
                record.region, record.bucket, record.kernel_cache_prefix, record.gpu_driver
            )
        return blender_cache.keep_fetched_builds(
            settings, record.bucket, record.job_id, self.blender_checksums_url
        )

    def delete_job_data(self, settings: AwsSettings, bucket: str, job_id: str) -> int:
        return storage.delete_job_data(settings, bucket, job_id)


def scout_frames(frames: list[int]) -> list[int]:
    """First, middle and last: a quote that sees the start, the busiest middle and the end."""
    if len(frames) < 4:
        return []
    ordered = sorted(frames)
    return sorted({ordered[0], ordered[len(ordered) // 2], ordered[-1]})


def notice_settings(request: JobRequest) -> dict[str, Any]:
    """What the machine's e-mail notice says of the job (cloud/machine/notice.py): the file's
    name as the artist knows it, sanitised here (the machine does it again), the price of one
    machine-hour and how long the bucket keeps the frames."""
    name = request.blend_name.replace("\\", "/").rsplit("/", 1)[-1]
    return {
        "label": safe_label(name),
        "usd_per_hour": round(float(request.price_per_hour), 4),
        "keep_days": int(request.retention_days),
    }
