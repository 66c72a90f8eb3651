"""The GPU kernel caches, kept in the bucket between machines so that only the first one compiles.

With OptiX, Cycles' "Loading render kernels" has the NVIDIA driver compile its pipelines and
store them in the OptiX disk cache (`OPTIX_CACHE_PATH`); kernels JIT-compiled from PTX land in
the CUDA driver's compute cache (`CUDA_CACHE_PATH`, bounded by `CUDA_CACHE_MAXSIZE`; the
OptiX one by `OPTIX_CACHE_MAXSIZE`). A fresh
machine has both empty, so every boot pays the compile again, N times with N machines. Here:

- `prepare()` (before Blender starts): asks `nvidia-smi` for the GPU model and driver version
  (none: the cache is off, one log line), points both caches at folders under the machine's
  work folder, and restores the archive the job offers if it is for this driver; the driver
  goes into status.json (`gpu_driver`), which is how the add-on learns what to offer next;
- `save()` (after Blender rendered): packs both folders, with a manifest, and uploads them for
  this driver through the job's kernel-cache POST when none was restored or what was restored
  grew from this render; nothing else sends a restored cache back (of an AWS Batch array job's
  machines, only machine 0 uploads: they all compile the same). A job whose scene can run
  Python here (Auto Run, add-ons) has no POST: the log says why its cache is not kept.

The key is `kernel-cache/v2/<Blender version>/<GPU model>/<driver>.tar`: the add-on knows the
version and the GPU model at submit, only the machine knows the driver, so the add-on offers the
one archive of the driver earlier machines reported. The Blender build hash is known once
Blender runs, so it goes into the manifest. Both caches are keyed inside by what they compiled
(the driver rejects entries of another input or driver), so a mismatched archive costs misses,
never wrong pixels.

The archive was written by another render machine: it is untrusted. Only a plain tar of
regular files and folders under `optix/` and `cuda/` plus `manifest.json` is taken; absolute
names, `..`, links, devices and oversized members or totals refuse it whole before anything is
written (`installs.py`, the check the Blender archive gets too), and it is unpacked into a fresh folder inside the cache folder. Whatever goes wrong
costs only the cache: a log line, never a failed job.

Python 3.9 syntax; standard library only.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import posixpath
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from . import contract, installs
from .transport import Poster, with_retries

MANIFEST = "manifest.json"
FOLDERS = ("optix", "cuda")
MAX_MEMBERS = 20_000
MAX_MANIFEST_BYTES = 64 * 1024
GROWTH_SLACK = 256 * 1024  # a database rewritten in place may grow by a few pages without new kernels
# The drivers' own bounds (each evicts its oldest entries beyond it): together under the
# archive bound (contract.MAX_KERNEL_CACHE_BYTES) so that what they keep can travel.
CUDA_CACHE_MAXSIZE = 256 * 1024**2  # CUDA's documented default is 256 MiB as well
OPTIX_CACHE_MAXSIZE = 256 * 1024**2  # the OptiX database's high water mark (low: half of it)
NVIDIA_SMI = ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"]
_OPENER = urllib.request.build_opener()  # honours http_proxy, like transport.py


class ArchiveRefused(Exception):
    """A kernel-cache archive that is not taken; the text says why, in a few words."""


def identify_gpu(run: Callable[..., Any] = subprocess.run) -> tuple[str, str] | None:
    """(GPU model, driver version) of the first GPU as nvidia-smi says them, or None."""
    if shutil.which(NVIDIA_SMI[0]) is None:
        return None
    try:
        done = run(NVIDIA_SMI, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    for line in str(done.stdout).splitlines():
        name, _, driver = line.rpartition(",")
        name, driver = contract.clean_text(name.strip(), 128), driver.strip()
        if name and contract.DRIVER_VERSION.fullmatch(driver):
            return name, driver
    return None


def rules(limit: int) -> installs.TarRules:
    """A kernel cache holds plain files under optix/ and cuda/, its manifest beside them, no links."""
    return installs.TarRules(
        links=False,
        plain_names=True,
        folders=FOLDERS,
        loose=(MANIFEST,),
        max_member_bytes=limit,
        max_total_bytes=limit,
        max_members=MAX_MEMBERS,
        unique=True,
    )


def check_archive(archive: tarfile.TarFile, target: str, limit: int) -> list[tarfile.TarInfo]:
    """Every member, once each, checked (safe_tar); raises ArchiveRefused before anything is written."""
    members, problems = installs.check_members(archive, target, rules(limit), first_only=True)
    if problems:
        raise ArchiveRefused(problems[0])
    if MANIFEST not in {m.name.rstrip("/") for m in members}:
        raise ArchiveRefused("it has no manifest")
    return members


def read_manifest(archive: tarfile.TarFile, member: tarfile.TarInfo) -> dict[str, Any]:
    if member.size > MAX_MANIFEST_BYTES:
        raise ArchiveRefused("its manifest is too large")
    handle = archive.extractfile(member)
    try:
        data = json.loads(handle.read(MAX_MANIFEST_BYTES).decode("utf-8")) if handle else None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ArchiveRefused(f"its manifest is not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ArchiveRefused("its manifest is not an object")
    return data


def unpack(path: str, target: str, limit: int, expect: dict[str, str]) -> dict[str, Any]:
    """Unpack a kernel-cache archive into `target` (its optix/ and cuda/ made from the archive's).

    Checked whole first (check_archive), then written into a fresh folder inside `target`
    with files created new (never through an existing name or link) and moved into place.
    `expect` (gpu, driver) must match the manifest. Returns the manifest.
    """
    target = os.path.realpath(target)
    os.makedirs(target, exist_ok=True)
    try:
        with tarfile.open(path, "r:") as archive:  # plain tar only: no decompression bomb
            members = check_archive(archive, target, limit)
            manifest = read_manifest(archive, next(m for m in members if m.name == MANIFEST))
            for field in ("gpu", "driver"):
                if str(manifest.get(field, "")) != expect[field]:
                    raise ArchiveRefused(
                        f"it was made for {field} {contract.clean_text(manifest.get(field), 80)!r}, "
                        f"this machine has {expect[field]!r}"
                    )
            staging = tempfile.mkdtemp(prefix=".restore-", dir=target)
            try:
                for folder in FOLDERS:
                    os.mkdir(os.path.join(staging, folder), 0o700)
                for member in members:
                    if member.name == MANIFEST:
                        continue
                    dest = os.path.join(staging, *member.name.rstrip("/").split("/"))
                    if member.isdir():
                        os.makedirs(dest, 0o700, exist_ok=True)
                        continue
                    os.makedirs(os.path.dirname(dest), 0o700, exist_ok=True)
                    if not os.path.realpath(dest).startswith(staging + os.sep):
                        raise ArchiveRefused(f"{member.name[:120]!r} would land outside the folder")
                    source = archive.extractfile(member)
                    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                    with os.fdopen(os.open(dest, flags, 0o600), "wb") as out:
                        if source is not None:
                            shutil.copyfileobj(source, out, 1 << 20)
                for folder in FOLDERS:
                    final = os.path.join(target, folder)
                    shutil.rmtree(final, ignore_errors=True)
                    os.replace(os.path.join(staging, folder), final)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except tarfile.TarError as exc:
        raise ArchiveRefused(f"it is not a readable tar ({exc})") from exc
    return manifest


def snapshot(root: str) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime_ns) of every regular file under the cache folders."""
    found: dict[str, tuple[int, int]] = {}
    for folder in FOLDERS:
        base = os.path.join(root, folder)
        for here, dirs, files in os.walk(base):
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(here, d))]
            for name in files:
                path = os.path.join(here, name)
                info = os.lstat(path)
                if os.path.isfile(path) and not os.path.islink(path):
                    rel = os.path.relpath(path, root).replace(os.sep, "/")
                    found[rel] = (info.st_size, info.st_mtime_ns)
    return found


def grew(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> bool:
    """Whether the driver added to the caches: a new file, or more than GROWTH_SLACK bytes.

    Not "any change": the OptiX cache is a database the driver may rewrite in place on every
    use (its garbage collection keeps track of what was used), which would otherwise send the
    same cache back to the bucket from every machine.
    """
    if set(after) - set(before):
        return True
    return sum(s for s, _m in after.values()) - sum(s for s, _m in before.values()) > GROWTH_SLACK


def pack(root: str, files: list[str], manifest: dict[str, Any], dest: str) -> int:
    """A plain tar of `files` (relative to `root`) after the manifest; returns its size."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)

    def plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o600 if info.isfile() else 0o700
        return info

    body = json.dumps(manifest, indent=1, sort_keys=True).encode()
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mtime, info.mode = len(body), int(time.time()), 0o600
        archive.addfile(info, io.BytesIO(body))
        for rel in sorted(files):
            archive.add(os.path.join(root, *rel.split("/")), arcname=rel, recursive=False, filter=plain)
    return os.path.getsize(dest)


class KernelCache:
    """One machine's kernel caches: restored before Blender, kept after it (see the module doc)."""

    def __init__(self, offer: Any, work: str, say: Callable[[str], None]) -> None:
        self.raw_offer = offer
        self.work = work
        self.root = os.path.join(work, "kernel-cache")
        self.say = say
        self.offer: contract.KernelCacheOffer | None = None
        self.gpu: tuple[str, str] | None = None  # (model, driver)
        self.env: dict[str, str] = {}
        self.prepared = False
        self.saved = False
        self.restored: dict[str, Any] | None = None  # the manifest of what was restored
        self.restored_files: dict[str, tuple[int, int]] = {}
        self.build: tuple[str, str] | None = None  # (version, hash) as Blender reported it

    def note_build(self, version: str, build_hash: str) -> None:
        self.build = (str(version), str(build_hash))

    @property
    def driver(self) -> str:
        """The driver nvidia-smi named, once prepared ("" without a GPU): status.json's gpu_driver."""
        return self.gpu[1] if self.gpu else ""

    def prepare(self) -> dict[str, str]:
        """The variables Blender gets; the first call identifies the GPU and restores the cache."""
        if self.prepared:
            return dict(self.env)
        self.prepared = True
        if self.raw_offer is None:
            return {}
        try:
            self.offer = contract.parse_kernel_cache_offer(self.raw_offer)
        except contract.ContractError as exc:
            self.say(f"kernel cache: the job's offer is malformed ({exc}); Blender compiles its kernels")
            return {}
        self.gpu = identify_gpu()
        if self.gpu is None:
            self.offer = None
            self.say("kernel cache: no NVIDIA GPU found (nvidia-smi absent or silent); not kept")
            return {}
        model, driver = self.gpu
        if contract.gpu_slug(model) != contract.gpu_slug(self.offer.gpu_model):
            self.say(f"kernel cache: this machine has {model}, the job expected {self.offer.gpu_model}")
        for folder in FOLDERS:
            os.makedirs(os.path.join(self.root, folder), 0o700, exist_ok=True)
        self.env = {
            "OPTIX_CACHE_PATH": os.path.join(self.root, "optix"),
            "CUDA_CACHE_PATH": os.path.join(self.root, "cuda"),
            "CUDA_CACHE_MAXSIZE": str(CUDA_CACHE_MAXSIZE),
            "OPTIX_CACHE_MAXSIZE": str(OPTIX_CACHE_MAXSIZE),
        }
        self.restore(model, driver)
        return dict(self.env)

    def restore(self, model: str, driver: str) -> None:
        assert self.offer is not None
        offered = [a for a in self.offer.archives if a.driver == driver]
        if not offered:
            others = ", ".join(a.driver for a in self.offer.archives) or "none"
            self.say(
                f"kernel cache: none kept for {model} with driver {driver} (offered: {others}); "
                "Blender compiles its kernels"
            )
            return
        archive = offered[0]
        path = os.path.join(self.work, "downloads", f"kernel-cache-{driver}.tar")
        started = time.monotonic()
        try:
            self.fetch(archive.url, path, min(archive.size, self.offer.max_bytes))
            self.restored = unpack(path, self.root, self.offer.max_bytes, {"gpu": model, "driver": driver})
        except ArchiveRefused as exc:
            self.say(
                f"kernel cache: the archive for driver {driver} was refused: {exc}; nothing of it was used"
            )
            self.clear()
            return
        except (OSError, http.client.HTTPException) as exc:
            self.say(f"kernel cache: the archive for driver {driver} could not be fetched ({exc}); not used")
            self.clear()
            return
        finally:
            if os.path.exists(path):
                os.remove(path)
        self.restored_files = snapshot(self.root)
        size = sum(s for s, _m in self.restored_files.values())
        self.say(
            f"kernel cache restored for {model}, driver {driver}: {len(self.restored_files)} files, "
            f"{size / 1e6:.1f} MB in {time.monotonic() - started:.1f} s (before Blender starts)"
        )

    def clear(self) -> None:
        """Back to empty cache folders after a refused or broken restore."""
        self.restored, self.restored_files = None, {}
        for folder in FOLDERS:
            shutil.rmtree(os.path.join(self.root, folder), ignore_errors=True)
            os.makedirs(os.path.join(self.root, folder), 0o700, exist_ok=True)

    def fetch(self, url: str, dest: str, limit: int) -> None:
        """Download at most `limit` bytes; more refuses the archive."""
        os.makedirs(os.path.dirname(dest), exist_ok=True)

        def get() -> None:
            with _OPENER.open(url, timeout=60) as response, open(dest, "wb") as out:
                got = 0
                for block in iter(lambda: response.read(1 << 20), b""):
                    got += len(block)
                    if got > limit:
                        raise ArchiveRefused(f"it is larger than the {limit} bytes offered")
                    out.write(block)

        try:
            with_retries("download of the kernel cache", get, self.say, attempts=3)
        except urllib.error.HTTPError as exc:
            raise OSError(f"HTTP {exc.code}") from exc

    def save(self) -> None:
        """After Blender rendered: keep the caches for the next machines, once, when the job
        may keep them and none was restored or the restored ones grew."""
        if self.saved or self.offer is None or self.gpu is None:
            return
        self.saved = True
        model, driver = self.gpu
        version = self.offer.blender_version
        if self.build is not None and self.build[0].split()[0] != version:
            self.say(f"kernel cache: not kept, Blender {self.build[0]} ran where {version} was expected")
            return
        if not self.offer.upload_url:
            why = self.offer.not_kept_because or "the job offers no place to keep it"
            self.say(f"kernel cache: not kept for other jobs: {why}")
            return
        index = os.environ.get("AWS_BATCH_JOB_ARRAY_INDEX") or "0"
        if index != "0":  # N machines of one job compile the same kernels: one upload is enough
            self.say(f"kernel cache: machine 0 of this job keeps it, not machine {index}")
            return
        files = snapshot(self.root)
        total = sum(s for s, _m in files.values())
        # Only growth from this render sends a restored cache back: not another build's manifest,
        # not a rewrite in place, so an archive lives on only while it saves compiling.
        if self.restored is not None and not grew(self.restored_files, files):
            self.say("kernel cache has not grown since it was restored; not uploaded again")
            return
        if not files:
            self.say("kernel cache: the driver stored nothing (no GPU kernels compiled); nothing to keep")
            return
        if total > self.offer.max_bytes:
            self.say(
                f"kernel cache: {total / 1e6:.0f} MB is over the {self.offer.max_bytes / 1e6:.0f} MB kept; not uploaded"
            )
            return
        manifest = {
            "gpu": model,
            "driver": driver,
            "blender_version": version,
            "build_hash": self.build[1] if self.build else "",
            "files": len(files),
            "bytes": total,
            "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        dest = os.path.join(self.work, "downloads", f"kernel-cache-{driver}.upload.tar")
        name = f"{driver}.tar"
        started = time.monotonic()
        try:
            size = pack(self.root, list(files), manifest, dest)
            if size > self.offer.max_bytes:
                self.say(f"kernel cache: the archive is {size / 1e6:.0f} MB, over the bound; not uploaded")
                return
            with open(dest, "rb") as handle:
                body = handle.read()  # at most max_bytes: the POST sends it in one request
            poster = Poster(self.offer.upload_url, self.offer.upload_fields, self.offer.prefix)
            with_retries(
                "upload of the kernel cache", lambda: poster.put(name, body, 600), self.say, attempts=3
            )
        except (OSError, http.client.HTTPException) as exc:
            self.say(f"kernel cache: could not keep it in the bucket ({exc}); the job goes on")
            return
        finally:
            if os.path.exists(dest):
                os.remove(dest)
        why = "none was restored" if self.restored is None else "it grew from this render"
        self.say(
            f"kernel cache kept as {posixpath.join(self.offer.prefix, name)} ({len(files)} files, "
            f"{size / 1e6:.1f} MB in {time.monotonic() - started:.1f} s; {why})"
        )
