"""The AWS and disk steps a job runs, bound to the backend modules.

`JobRunner` holds the job's logic (order, states, caps, endings); this class does each step.
Keeping them apart keeps the runner readable and lets a test swap one step for a faulty one
(through a subclass) without patching boto3.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..aws import compute, quotas, storage
from ..aws.presign import presign_get, presign_list
from ..aws.session import AwsSettings, client
from ..cost import caps
from ..errors import CloudError
from ..machine import WORKER_FILES, contract
from .records import JobRecord, JobRequest
from .user_data import build_user_data

BOOT_OVERHEAD_S = 15 * 60  # boot, Blender install and downloads, added to the dead-man timer


@dataclass
class PackedScene:
    """What was packed: paths inside the job directory -> (sha256, size), and where they lie locally."""

    blend_path: str
    files: dict[str, tuple[str, int]]
    root: Path | None  # None when reusing inputs already in the bucket (relaunch)
    missing: list[str] = field(default_factory=list)


@dataclass
class Sent:
    bytes_sent: int
    files_sent: int
    files_skipped: int


ProgressFn = Callable[[float, float, str], None]


class CloudSteps:
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
            skip_images=(packer.FRAMES_IMAGE_PREFIX,),  # earlier jobs' frames, loaded for viewing
        )
        return PackedScene(
            blend_path=result.manifest.blend,
            files={path: (entry.sha256, entry.size) for path, entry in result.manifest.files.items()},
            root=result.out_dir,
            missing=[f"{m.path} (used by {m.used_by}, looked in {m.looked_in})" for m in result.missing]
            + [f"{u.path} (could not be read: {u.reason})" for u in result.unreadable],
        )

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
        return PackedScene(blend_path=record.blend_in_pack, files=files, root=None)

    @property
    def buckets(self) -> storage.BucketRegistry:
        """The one bucket registry, the file Set Up writes too (`state_dir` is the add-on's user folder)."""
        return storage.bucket_registry(self.state_dir / storage.STATE_FOLDER)

    def ensure_bucket(self, settings: AwsSettings, retention_days: int) -> str:
        registry = self.buckets
        # Jobs once kept their own registry beside the state folder: its buckets stay in use.
        registry.adopt(self.state_dir / storage.BUCKETS_FILE)
        return storage.ensure_bucket(settings, registry, expire_days=retention_days)

    def worker_files(self) -> list[tuple[str, Path, str, int]]:
        """(name, local path, sha256, size) of the scripts the machine downloads."""
        files = [(name, Path(path)) for name, path in sorted(WORKER_FILES.items())]
        return [(name, path, storage.hash_file(path), path.stat().st_size) for name, path in files]

    def upload(
        self,
        settings: AwsSettings,
        bucket: str,
        packed: PackedScene,
        progress: ProgressFn,
        cancel: threading.Event,
    ) -> Sent:
        triples: list[tuple[Path | str, str, int]] = [
            (path, sha, size) for _name, path, sha, size in self.worker_files()
        ]
        if packed.root is not None:
            triples += [(packed.root / rel, sha, size) for rel, (sha, size) in packed.files.items()]

        def report(step: storage.UploadProgress) -> None:
            progress(
                step.done, step.total or 1, f"Uploading {step.done / 1e6:.1f} of {step.total / 1e6:.1f} MB"
            )

        result = storage.upload_files(settings, bucket, triples, report, cancel)
        return Sent(result.bytes_sent, len(result.uploaded), len(result.skipped))

    # --- launch -----------------------------------------------------------------------------
    def blender_sources(
        self, settings: AwsSettings, bucket: str, version: str, expires: int
    ) -> list[contract.BlenderSource]:
        """Bucket cache first (in-region, checked by hash), then the official bpy wheel on PyPI."""
        sources = []
        name = f"blender-{version}-linux-x64.tar.xz"
        key = contract.blender_cache_key(version, name)
        digest = self.cached_digest(settings, bucket, key)
        if digest:
            s3 = client(settings, "s3")
            sources.append(
                contract.BlenderSource(
                    kind="bucket", version=version, url=presign_get(s3, bucket, key, expires), sha256=digest
                )
            )
        sources.append(contract.BlenderSource(kind="pypi", version=version, package=f"bpy=={version}"))
        return sources

    def cached_digest(self, settings: AwsSettings, bucket: str, key: str) -> str:
        """The SHA-256 kept beside a cached build (`<key>.sha256`, sha256sum format), or ''."""
        try:
            body = client(settings, "s3").get_object(Bucket=bucket, Key=key + ".sha256")["Body"].read()
        except Exception:
            return ""
        return body.decode("ascii", "replace").split()[0] if body.strip() else ""

    def stage_blender(
        self, settings: AwsSettings, bucket: str, version: str, tarball: Path, sha256: str
    ) -> None:
        """Put a Blender release tarball in the bucket's cache (what the first boot does for later ones)."""
        s3 = client(settings, "s3")
        key = contract.blender_cache_key(version, tarball.name)
        s3.upload_file(str(tarball), bucket, key)
        s3.put_object(Bucket=bucket, Key=key + ".sha256", Body=f"{sha256}  {tarball.name}\n".encode())

    def launch(
        self, settings: AwsSettings, record: JobRecord, request: JobRequest, packed: PackedScene
    ) -> Any:
        bucket, job_id = record.bucket, record.job_id
        cap_s = caps.cap_seconds(record.max_cost, record.max_hours, record.price_per_hour, BOOT_OVERHEAD_S)
        expires = storage.presign_expiry(cap_s)
        s3 = client(settings, "s3")
        inputs = storage.presign_inputs(
            settings, bucket, [(rel, sha, size) for rel, (sha, size) in sorted(packed.files.items())], expires
        )
        post = storage.presign_outputs(settings, bucket, job_id, expires)
        spec = contract.WorkerSpec(
            job_id=job_id,
            blender_version=request.blender_version,
            blend_path=packed.blend_path,
            frames=list(request.frames),
            inputs=inputs,
            upload_url=post["url"],
            upload_fields=post["fields"],
            upload_prefix=contract.out_prefix(job_id),
            list_url=presign_list(s3, bucket, contract.frames_prefix(job_id), expires),
            blender_sources=self.blender_sources(settings, bucket, request.blender_version, expires),
            frame_order=request.frame_order,
            device=request.device,
            samples=request.samples,
            resolution_percentage=request.resolution_percentage,
            file_format=request.file_format,
            max_seconds=cap_s,
            scout_frames=scout_frames(request.frames) if request.quote_first else [],
            go_url=presign_get(s3, bucket, contract.control_key(job_id, "go.json"), expires)
            if request.quote_first
            else "",
        )
        storage.put_json(settings, bucket, contract.spec_key(job_id), json.loads(spec.to_json()))
        worker_urls = {
            name: presign_get(s3, bucket, contract.cas_key(sha), expires)
            for name, _p, sha, _s in self.worker_files()
        }
        user_data = build_user_data(
            spec_url=presign_get(s3, bucket, contract.spec_key(job_id), expires),
            worker_urls=worker_urls,
            max_minutes=caps.dead_man_minutes(cap_s),
            log_post=post,
        )
        storage.put_json(settings, bucket, contract.record_key(job_id), _public_record(record))
        return compute.launch(
            settings, job_id=job_id, instance_type=record.instance_type, user_data=user_data, spot=record.spot
        )

    def check_capacity(self, settings: AwsSettings, instance_type: str, spot: bool) -> None:
        """Refuse before launching what AWS would refuse: a type not offered, a vCPU quota too low."""
        report = quotas.check_capacity(settings, instance_type, spot)
        if not report.fits:
            raise CloudError(report.message, report.action, code=report.code or "NoCapacity")

    # --- follow ---------------------------------------------------------------------------------
    def instance_state(self, settings: AwsSettings, instance_id: str) -> str:
        return str(compute.describe(settings, instance_id).state)

    def terminate(self, settings: AwsSettings, instance_id: str) -> None:
        compute.terminate(settings, instance_id)

    def get_bytes(self, settings: AwsSettings, bucket: str, key: str, max_bytes: int) -> bytes | None:
        """An object the machine wrote, or None when absent; one over `max_bytes` is not read."""
        return storage.get_bytes(settings, bucket, key, max_bytes)

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
        for obj in storage.list_objects(settings, bucket, contract.logs_prefix(job_id), start_after=marker):
            body = storage.get_bytes(settings, bucket, obj.key, max_bytes) if obj.size <= max_bytes else None
            chunks.append((obj.key, body.decode("utf-8", "replace") if body is not None else None))
        return chunks

    def download(self, settings: AwsSettings, bucket: str, key: str, dest: Path, max_bytes: int) -> None:
        storage.download(settings, bucket, key, dest, max_bytes=max_bytes)

    def after_job(self, settings: AwsSettings, record: JobRecord) -> None:
        """Keep a Blender build the machine fetched in the bucket's cache, so later boots fetch in-region."""
        prefix = contract.out_prefix(record.job_id) + "blender-cache/"
        s3 = client(settings, "s3")
        for obj in storage.list_objects(settings, record.bucket, prefix):
            name = obj.key[len(prefix) :]
            if not name.endswith(".tar.xz"):
                continue
            digest = self.cached_digest(settings, record.bucket, obj.key)
            if not digest:
                continue
            version = name.removeprefix("blender-").split("-linux")[0]
            target = contract.blender_cache_key(version, name)
            s3.copy_object(
                Bucket=record.bucket, Key=target, CopySource={"Bucket": record.bucket, "Key": obj.key}
            )
            s3.put_object(Bucket=record.bucket, Key=target + ".sha256", Body=f"{digest}  {name}\n".encode())

    def delete_job_data(self, settings: AwsSettings, bucket: str, job_id: str) -> int:
        return storage.delete_job_data(settings, bucket, job_id)


def scout_frames(frames: list[int]) -> list[int]:
    """First, middle and last: a quote that sees the start, the busiest middle and the end."""
    if len(frames) < 4:
        return []
    ordered = sorted(frames)
    return sorted({ordered[0], ordered[len(ordered) // 2], ordered[-1]})


def _public_record(record: JobRecord) -> dict[str, Any]:
    """The job record as stored in S3: no local paths beyond the output folder name."""
    return {
        "job_id": record.job_id,
        "instance_type": record.instance_type,
        "region": record.region,
        "frames": record.frames,
        "spot": record.spot,
        "max_cost": record.max_cost,
        "max_hours": record.max_hours,
        "price_per_hour": record.price_per_hour,
        "created": record.created,
    }
