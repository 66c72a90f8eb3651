"""Dependency-complete pack of a saved .blend, built on blender-asset-tracer (BAT).

There is no shared storage on the render machine, so unlike Blender's farm manager we pack
every dependency, absolute paths included, and rewrite every path in every .blend so that
the pack renders from any directory. BAT reads the .blend files as data (no Blender needed),
traces linked libraries recursively and rewrites paths in copies; this module decides where
each file goes in the pack and returns the manifest that the content-addressed upload uses.
Only the .blend files whose paths BAT rewrote are written into the pack folder; every other
file is hashed where it lies (a local hash cache skips unchanged ones) and only linked there,
and `PackResult.sources` says where to upload each file from: no copy of the project per submit.
A .blend of at least `ChunkPolicy.threshold` bytes is also cut into content-defined chunks
(cloud/pack/chunking.py), uploaded and stored one by one, so a resubmit sends only changed chunks.

`pack()` is blocking and thread-safe; call it from a worker thread, never Blender's main one.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import logging
import os
import pathlib
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blender_asset_tracer import blendfile, bpathlib, trace
from blender_asset_tracer import pack as batpack
from blender_asset_tracer.pack import progress as batprogress
from blender_asset_tracer.trace import blocks2assets, expanders, file2blocks, file_sequence, result

from ..errors import Cancelled, CloudError, ErrorCode
from ..machine.contract import ADDONS_DIR
from .chunking import Chunk, ChunkPolicy, chunk_file
from .hash_cache import HashCache

CHUNK = 1 << 20
HASH_THREADS = min(4, os.cpu_count() or 2)
EXTERNAL_DIR = "_external"  # where files from outside the project go inside the pack
_TILE_TOKENS = ("<UDIM>", "<UVTILE>")
# BAT keeps a process-wide cache of open .blend files: one pack at a time.
_BAT_LOCK = threading.Lock()
_NODETREE_OWNERS = {b"MA", b"LA", b"WO", b"TE"}
# BAT warns on stderr about every missing file; we report those ourselves.
logging.getLogger("blender_asset_tracer").addHandler(logging.NullHandler())

# Two-letter ID codes to words, for "which data-block uses this file".
_ID_KINDS = {
    "IM": "Image",
    "LI": "Library",
    "MC": "Movie clip",
    "SO": "Sound",
    "VF": "Font",
    "CF": "Cache file",
    "VO": "Volume",
    "OB": "Object",
    "ME": "Mesh",
    "SC": "Scene",
    "LA": "Light",
}


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int
    chunks: tuple[Chunk, ...] = ()  # a large .blend: its chunks in order (uploaded instead of the file)


@dataclass
class PackManifest:
    """What the pack holds: relative POSIX path -> content hash and size, and the .blend to open."""

    blend: str
    files: dict[str, FileEntry] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files.values())

    def changed_since(self, older: PackManifest) -> list[str]:
        """Paths that are new or whose content differs from `older` (what a resubmit uploads)."""
        return sorted(path for path, entry in self.files.items() if older.files.get(path) != entry)

    def to_dict(self) -> dict[str, Any]:
        def entry(e: FileEntry) -> dict[str, Any]:
            data: dict[str, Any] = {"sha256": e.sha256, "size": e.size}
            if e.chunks:
                data["chunks"] = [[c.sha256, c.size] for c in e.chunks]
            return data

        return {"blend": self.blend, "files": {p: entry(e) for p, e in sorted(self.files.items())}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PackManifest:
        files = {
            p: FileEntry(
                str(e["sha256"]), int(e["size"]), tuple(Chunk(str(c), int(n)) for c, n in e.get("chunks", []))
            )
            for p, e in data["files"].items()
        }
        return cls(blend=str(data["blend"]), files=files)


@dataclass(frozen=True)
class MissingFile:
    """A dependency that is not on disk: the path as the file stores it, who uses it, where we looked."""

    path: str
    used_by: str
    looked_in: str


@dataclass(frozen=True)
class ExternalFile:
    """A dependency stored as an absolute path outside the project: packed, but worth listing."""

    path: str
    used_by: str
    packed_as: str


@dataclass(frozen=True)
class UnreadableFile:
    """A linked .blend that BAT could not parse: packed as it is, but what it links is not traced."""

    path: str
    reason: str


@dataclass
class PackResult:
    out_dir: Path
    manifest: PackManifest
    missing: list[MissingFile] = field(default_factory=list)
    absolute_outside_project: list[ExternalFile] = field(default_factory=list)
    unreadable: list[UnreadableFile] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # data-blocks whose files were left out on purpose
    # Where each packed file's bytes lie, to upload from: the artist's own file when packing did
    # not change it (the pack folder only links to it), the rewritten copy in the pack otherwise.
    sources: dict[str, Path] = field(default_factory=dict)
    # (size, mtime_ns) of each source outside the pack when it was hashed: the upload checks
    # them again, so a file edited after packing is never sent under its old hash.
    stamps: dict[str, tuple[int, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # for the job log (a large .blend sent whole, and why)

    @property
    def blend_path(self) -> Path:
        return self.out_dir / self.manifest.blend


@dataclass(frozen=True)
class PackProgress:
    """One progress report; `stage` is "tracing", "copying" (bytes copied and hashed) or "done"."""

    stage: str
    files_traced: int = 0
    files_done: int = 0
    files_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0


ProgressFn = Callable[[PackProgress], None]


def describe_block(usage: result.BlockUsage) -> str:
    """'Image "wood.png" in scene.blend' from a BAT block usage."""
    raw = usage.block_name
    name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    kind = _ID_KINDS.get(name[:2], "")
    if kind:
        label = f'{kind} "{name[2:]}"'
    elif name == "-unnamed-":
        label = f"a {usage.block.dna_type_name} block"
    else:
        label = f'"{name}"'
    return f"{label} in {usage.block.bfile.filepath.name}"


def expand_files(path: Path) -> list[Path]:
    """The files a (possibly sequence, glob or UDIM / UVTILE) dependency path stands for."""
    if any(token in path.name for token in _TILE_TOKENS):
        name = path.name
        for token in _TILE_TOKENS:
            name = name.replace(token, "*")
        return sorted(Path(p) for p in glob.glob(glob.escape(str(path.parent)) + "/" + name))
    try:
        return [p for p in file_sequence.expand_sequence(path) if p.is_file()]
    except file_sequence.DoesNotExist:
        return []


class _Progress(batprogress.Callback):
    """Turns BAT's tracing callbacks into PackProgress reports."""

    def __init__(self, report: ProgressFn | None) -> None:
        self.report = report
        self.traced = 0

    def trace_blendfile(self, filename: pathlib.Path) -> None:
        self._bump()

    def trace_asset(self, filename: pathlib.Path) -> None:
        self._bump()

    def _bump(self) -> None:
        self.traced += 1
        if self.report:
            self.report(PackProgress("tracing", files_traced=self.traced))


class _TolerantBlocks(file2blocks.BlockIterator):
    """BAT's block iterator, except that a linked library it cannot parse is noted, not fatal."""

    def __init__(self, unreadable: dict[Path, str]) -> None:
        super().__init__()
        self.unreadable = unreadable

    def _queue_dependencies(self, block: blendfile.BlendFileBlock) -> None:
        """BAT's expansion, plus the node trees of materials, lights, worlds and textures in 5.0 files.

        BAT 1.23 looks for the Scene-only `compositing_node_group` on every ID of a file saved by
        Blender 5.0 (subversion 4+), so for linked data it never reaches the images that a
        material's own `nodetree` uses. Local images are traced anyway (every block is visited).
        """
        super()._queue_dependencies(block)
        if block.code not in _NODETREE_OWNERS or block.bfile.header.version < 500:
            return
        try:
            ntree = block.get_pointer(b"nodetree", None)
        except KeyError:
            return
        if ntree is None:
            return
        for dependency in expanders._expand_generic_nodetree(ntree):
            if dependency and dependency.code != b"DATA":
                self.to_visit.put(dependency)

    def _visit_linked_blocks(self, blocks_per_lib):  # type: ignore[no-untyped-def]
        for lib_bpath, idblocks in blocks_per_lib.items():
            lib_path = bpathlib.make_absolute(lib_bpath.to_path())
            if not lib_path.exists() or lib_path in self.unreadable:
                continue  # missing libraries are reported by the packer
            try:
                libfile = self.open_blendfile(lib_path)
                yield from self.iter_blocks(libfile, idblocks)
            except Exception as exc:  # any parse failure of someone else's file
                self.unreadable[lib_path] = f"{type(exc).__name__}: {exc}"


def _trace(
    bfile: Path, progress_cb: batprogress.Callback, unreadable: dict[Path, str]
) -> Iterator[result.BlockUsage]:
    """BAT's trace.deps() over the tolerant iterator: every dependency, each reported once."""
    blocks = _TolerantBlocks(unreadable)
    blocks.progress_cb = progress_cb
    seen: set[int] = set()
    for block in trace.asset_holding_blocks(blocks.iter_blocks(blocks.open_blendfile(bfile))):
        for usage in blocks2assets.iter_assets(block):
            if hash(usage) not in seen:
                seen.add(hash(usage))
                yield usage


class _Packer(batpack.Packer):
    """BAT's Packer with our layout: nothing relative_only, every path made relative to the pack.

    BAT copies files on its own thread; we instead collect (source, destination) pairs and copy
    them while hashing, so every byte is read once.
    """

    def __init__(
        self,
        bfile: Path,
        original: Path,
        project: Path,
        target: Path,
        cancel: threading.Event | None,
        skip_images: tuple[str, ...] = (),
    ) -> None:
        super().__init__(bfile, project, str(target), relative_only=False)
        self.cancel = cancel
        self.skip_images = tuple(b"IM" + prefix.encode() for prefix in skip_images)
        self.skipped: list[str] = []  # "Image ..." descriptions of what was left out on purpose
        self.copies: dict[Path, Path] = {}  # packed path -> where to read it from
        self.missing: list[MissingFile] = []
        self.external: list[ExternalFile] = []
        self._project_abs = bpathlib.make_absolute(project)
        self._main = bpathlib.make_absolute(bfile)
        self._original = bpathlib.make_absolute(original)
        self.unreadable: dict[Path, str] = {}

    @property
    def rewrite_dir(self) -> Path:
        """Where BAT writes the .blend files whose paths it changed."""
        return Path(self._rewrite_in)

    # -- where files go -------------------------------------------------------------------
    def place(self, path: Path) -> Path:
        """Packed location of an absolute path: its place in the project, else under _external/.

        Outside the project the whole folder structure is mirrored (`_external/mnt/lib/...`), so
        files outside keep their positions relative to each other: a library and its textures,
        a .blend and its implicit `blendcache_<name>/` folder, which BAT cannot rewrite.
        """
        try:
            return Path(self._target_path) / path.relative_to(self._project_abs)
        except ValueError:
            return Path(self._target_path) / EXTERNAL_DIR / bpathlib.strip_root(path)

    def __enter__(self) -> _Packer:
        return self

    def _check_aborted(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled()
        super()._check_aborted()

    # -- strategy -------------------------------------------------------------------------
    def strategise(self) -> None:
        """BAT's strategise, with the main .blend placed where the artist's original lives.

        The copy we read may sit in a temporary folder; the pack is laid out as if it were the
        original, so paths relative to the original (and the implicit `//blendcache_<name>/`
        point-cache folders) keep working.
        """
        self._output_path = self.place(self._original)
        self._progress_cb.pack_start()
        act = self._actions[self._main]
        act.path_action = batpack.PathAction.KEEP_PATH
        act.new_path = self._output_path
        self._check_aborted()
        self._new_location_paths = set()
        for usage in _trace(self.blendfile, self._progress_cb, self.unreadable):
            self._check_aborted()
            if self._skipped(usage):
                continue
            asset_path = self._resolve(usage)
            if usage.is_sequence:
                self._visit_sequence(asset_path, usage)
            else:
                self._visit_asset(asset_path, usage)
        self._group_rewrites()

    def _skipped(self, usage: result.BlockUsage) -> bool:
        """An image whose name says it is not the scene's (the add-on's own frames view)."""
        name = usage.block_name if isinstance(usage.block_name, bytes) else str(usage.block_name).encode()
        if not self.skip_images or not name.startswith(self.skip_images):
            return False
        self.skipped.append(describe_block(usage))
        return True

    def _resolve(self, usage: result.BlockUsage) -> Path:
        """Where a dependency is: next to the copy, or failing that next to the original."""
        path = Path(usage.abspath)
        if (
            self._original == self._main
            or bpathlib.make_absolute(usage.block.bfile.filepath) != self._main
            or not usage.asset_path.is_blendfile_relative()
            or (expand_files(path) if usage.is_sequence else path.is_file())
        ):
            return path
        moved = Path(usage.asset_path.absolute(bpathlib.BlendPath(self._original.parent)).to_path())
        try:
            alt = bpathlib.make_absolute(moved.parent) / moved.name
        except FileNotFoundError:
            return path
        if expand_files(alt) if usage.is_sequence else alt.is_file():
            usage._abspath = alt  # BAT caches the resolved path here; rewriting reads it back
            return alt
        return path

    def _visit_sequence(self, asset_path: pathlib.Path, usage: result.BlockUsage) -> None:
        if not expand_files(asset_path):
            self._report_missing(asset_path, usage)
            return
        self._visit_asset(asset_path, usage)

    def _visit_asset(self, asset_path: pathlib.Path, usage: result.BlockUsage) -> None:
        if not usage.is_sequence and not asset_path.is_file():
            self._report_missing(asset_path, usage)
            return
        self._progress_cb.trace_asset(asset_path)
        act = self._actions[asset_path]
        act.usages.append(usage)
        act.new_path = self.place(asset_path)
        owner = bpathlib.make_absolute(usage.block.bfile.filepath)
        owner_packed = self._actions[owner].new_path if owner in self._actions else self.place(owner)
        assert owner_packed is not None
        # Compared as a whole path; for sequencer strips (directory and name apart) BAT then
        # rewrites the directory only, the name being the same.
        # A folder (a Geometry Nodes bake) is the same path with or without its trailing slash:
        # BAT cannot rewrite that field (a string pointer), so it must be left as it is.
        relative = bpathlib.BlendPath.mkrelative(act.new_path, owner_packed)
        needs_rewrite = relative.rstrip(b"/") != usage.asset_path.rstrip(b"/")
        if needs_rewrite:
            act.path_action = batpack.PathAction.FIND_NEW_LOCATION
            self._new_location_paths.add(asset_path)
        if not usage.asset_path.is_blendfile_relative() and not self._in_project(asset_path):
            self.external.append(
                ExternalFile(
                    path=usage.asset_path.to_path().as_posix(),
                    used_by=describe_block(usage),
                    packed_as=act.new_path.relative_to(self._target_path).as_posix(),
                )
            )

    def _in_project(self, path: Path) -> bool:
        try:
            path.relative_to(self._project_abs)
        except ValueError:
            return False
        return True

    def _find_new_paths(self) -> None:
        """Locations were set while visiting; nothing to add."""

    def _report_missing(self, asset_path: Path, usage: result.BlockUsage) -> None:
        self.missing_files.add(asset_path)
        self.missing.append(
            MissingFile(
                path=bytes(usage.asset_path).decode("utf-8", "replace"),
                used_by=describe_block(usage),
                looked_in=str(asset_path),
            )
        )

    # -- transfer: collect, then copy + hash ourselves ---------------------------------------
    def _start_file_transferrer(self) -> None:
        """No BAT transfer thread: `copy_all` does the copying."""

    def _perform_file_transfer(self) -> None:
        for asset_path, action in self._actions.items():
            self._check_aborted()
            self._collect(asset_path, action)

    def _collect(self, asset_path: Path, action: batpack.AssetAction) -> None:
        assert action.new_path is not None
        sequence = next((u for u in action.usages if u.is_sequence), None)
        if sequence is None:
            self.copies[Path(action.new_path)] = action.read_from or asset_path
            return
        base = asset_path if asset_path.is_dir() else asset_path.parent
        packed_base = Path(action.new_path) if asset_path.is_dir() else Path(action.new_path).parent
        for file_path in expand_files(asset_path):
            self.copies[packed_base / file_path.relative_to(base)] = file_path


def _hash_file(path: Path) -> FileEntry:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fin:
        while chunk := fin.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return FileEntry(digest.hexdigest(), size)


def _regzip(src: Path, dst: Path) -> FileEntry:
    """Re-gzip a .blend BAT rewrote, without the temp name and time BAT's gzip header holds.

    BAT recompresses a changed compressed .blend with gzip, stamping the header with its temp
    file name and the current time; an unchanged scene must hash the same on every pack.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    with (
        gzip.open(src, "rb") as fin,
        dst.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as fout,
    ):
        shutil.copyfileobj(fin, fout, CHUNK)
    return _hash_file(dst)


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fin:
        return fin.read(2) == b"\x1f\x8b"


def _hash_copy(
    src: Path, dst: Path, cancel: threading.Event | None, on_bytes: Callable[[int], None]
) -> FileEntry:
    """Copy `src` to `dst` in chunks, hashing what passes through."""
    digest = hashlib.sha256()
    size = 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as fin, dst.open("wb") as fout:
        while chunk := fin.read(CHUNK):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            digest.update(chunk)
            fout.write(chunk)
            size += len(chunk)
            on_bytes(len(chunk))
    return FileEntry(digest.hexdigest(), size)


def _link(src: Path, dst: Path) -> None:
    """Put `src` at `dst` without copying its bytes: a hard link (same disk), else a symbolic
    link, else (neither allowed, as on a Windows drive without links) a copy.

    Nothing writes into a pack after it is made, so a link never changes the artist's file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
        return
    except OSError:
        pass
    try:
        os.symlink(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _chunkable(path: Path, size: int, policy: ChunkPolicy | None) -> bool:
    """A .blend large enough that sending only its changed chunks pays off."""
    return policy is not None and size >= policy.threshold and path.name.lower().endswith(".blend")


def _place_unchanged(
    src: Path,
    dst: Path,
    hashes: HashCache,
    cancel: threading.Event | None,
    on_bytes: Callable[[int], None],
    chunking: ChunkPolicy | None = None,
    notes: list[str] | None = None,
) -> tuple[FileEntry, tuple[int, int]]:
    """A file packing did not change: hashed (a large .blend: chunked) where it lies, or known
    from the hash cache, and linked."""
    if cancel is not None and cancel.is_set():
        raise Cancelled()
    before = os.stat(src)
    if chunking is not None and _chunkable(dst, before.st_size, chunking):
        found = hashes.chunked(src, chunking, on_bytes)
        if found.note and notes is not None:
            notes.append(found.note)
        entry = FileEntry(found.sha256, found.size, found.chunks)
    else:
        sha, size = hashes.hash(src, on_bytes)
        entry = FileEntry(sha, size)
    _link(src, dst)
    return entry, (before.st_size, before.st_mtime_ns)


def _chunk_copy(entry: FileEntry, dst: Path, chunking: ChunkPolicy | None, notes: list[str]) -> FileEntry:
    """A .blend packing rewrote and copied in: chunked from the copy (just written, so read from
    memory) when it is large enough."""
    if not _chunkable(dst, entry.size, chunking):
        return entry
    assert chunking is not None
    found = chunk_file(dst, chunking)
    if found.note:
        notes.append(found.note)
    return FileEntry(found.sha256, found.size, found.chunks)


def _copy_all(
    packer: _Packer,
    out_dir: Path,
    cancel: threading.Event | None,
    report: ProgressFn | None,
    hashes: HashCache | None = None,
    sources: dict[str, Path] | None = None,
    stamps: dict[str, tuple[int, int]] | None = None,
    chunking: ChunkPolicy | None = None,
    notes: list[str] | None = None,
) -> dict[str, FileEntry]:
    """Lay out the pack: the .blend files BAT rewrote are copied in, every other file is only
    linked and hashed where it lies (its path in `sources`): no copy of an unchanged file."""
    hashes = hashes or HashCache(None)
    sources = sources if sources is not None else {}
    stamps = stamps if stamps is not None else {}
    notes = notes if notes is not None else []
    sizes = {dst: src.stat().st_size for dst, src in packer.copies.items()}
    total = sum(sizes.values())
    done = 0
    files: dict[str, FileEntry] = {}
    lock = threading.Lock()

    def on_bytes(n: int) -> None:
        nonlocal done
        with lock:
            done += n
        if report:
            report(
                PackProgress(
                    "copying",
                    files_done=len(files),
                    files_total=len(sizes),
                    bytes_done=done,
                    bytes_total=total,
                )
            )

    def place(item: tuple[Path, Path]) -> None:
        dst, src = item
        rel = dst.relative_to(out_dir.absolute()).as_posix()
        try:
            if src.is_relative_to(packer.rewrite_dir) and _is_gzip(src):
                entry, source, stamp = _regzip(src, dst), dst, None
                on_bytes(src.stat().st_size)
                if _chunkable(dst, entry.size, chunking):
                    notes.append(
                        f"{dst.name} is saved compressed (gzip), so it is uploaded whole after any change; "
                        "turn off File > Save > Compress to upload only what changed."
                    )
            elif src.is_relative_to(packer.rewrite_dir):
                entry = _hash_copy(src, dst, cancel, on_bytes)
                entry, source, stamp = _chunk_copy(entry, dst, chunking, notes), dst, None
            else:
                placed = _place_unchanged(src, dst, hashes, cancel, on_bytes, chunking, notes)
                (entry, stamp), source = placed, src
        except OSError as exc:
            raise CloudError(
                f"Could not read {src.name} while packing the scene.",
                "Check that the file is readable (not locked or on a disconnected drive) and try again.",
                code=ErrorCode.PACK_READ_FAILED,
                detail=f"{src}: {exc}",
            ) from exc
        with lock:
            files[rel], sources[rel] = entry, source
            if stamp is not None:
                stamps[rel] = stamp

    # Largest first over a few threads: hashlib releases the GIL, so hashing uses every core.
    order = sorted(packer.copies.items(), key=lambda item: (-sizes[item[0]], item[0]))
    with ThreadPoolExecutor(max_workers=HASH_THREADS, thread_name_prefix="cloud-render-pack") as pool:
        for _ in pool.map(place, order):
            pass
    files = dict(sorted(files.items()))
    if report:
        packed = sum(entry.size for entry in files.values())
        report(
            PackProgress(
                "done", files_done=len(files), files_total=len(files), bytes_done=packed, bytes_total=packed
            )
        )
    return files


def _refuse_reserved(files: dict[str, FileEntry], sources: dict[str, Path]) -> None:
    """No file of the scene may land in the machine's Blender user folder (`contract.ADDONS_DIR`
    at the job's root, `//_cloud_render_user/...` next to the .blend): Blender there runs what it
    finds under scripts/startup/ whatever Auto Run says, and only travelling add-ons go there."""
    reserved = sorted(rel for rel in files if rel.split("/", 1)[0] == ADDONS_DIR)
    if reserved:
        first = reserved[0]
        raise CloudError(
            f"The scene uses {first}, in a folder named {ADDONS_DIR}, which the render machine keeps "
            "for Blender's own settings and add-ons.",
            f"Rename the folder {ADDONS_DIR} next to your .blend (and relink its files), then submit again.",
            code=ErrorCode.PACK_RESERVED_PATH,
            detail=", ".join(f"{rel} <- {sources.get(rel, '')}" for rel in reserved[:10]),
        )


def _prepare_out_dir(blend_path: Path, out_dir: Path) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        raise CloudError(
            "The pack folder is not empty.",
            "Choose an empty folder for the pack.",
            code=ErrorCode.PACK_DIR_NOT_EMPTY,
            detail=str(out_dir),
        )
    blend_dir = blend_path.parent.absolute()
    if out_dir.absolute() == blend_dir:
        raise CloudError(
            "The pack cannot be written next to the scene file.",
            "Choose a pack folder away from your project folder.",
            code=ErrorCode.PACK_DIR_IS_PROJECT,
        )
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


def _check_readable(blend_path: Path) -> None:
    if not blend_path.is_file():
        raise CloudError(
            f"The scene file {blend_path.name} was not found.",
            "Save the scene and try again.",
            code=ErrorCode.BLEND_NOT_FOUND,
            detail=str(blend_path),
        )
    try:
        with blend_path.open("rb"):
            pass
    except OSError as exc:
        raise CloudError(
            f"The scene file {blend_path.name} cannot be read.",
            "Check the file's permissions, save the scene again and retry.",
            code=ErrorCode.BLEND_UNREADABLE,
            detail=str(exc),
        ) from exc


def pack(
    blend_path: Path,
    out_dir: Path,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    *,
    original: Path | None = None,
    project: Path | None = None,
    skip_images: tuple[str, ...] = (),
    hashes: HashCache | None = None,
    chunking: ChunkPolicy | None = None,
) -> PackResult:
    """Pack `blend_path` (a saved copy, never the artist's open file) and its dependencies into `out_dir`.

        `original` is where the artist's file is saved when `blend_path` is a copy elsewhere (give
        the copy the same file name): the pack is laid out as if it were the original, and paths
        that do not resolve next to the copy are looked up next to the original. `project` is the
        folder whose layout the pack keeps (default: the original's folder); files outside it go
        under `_external/`. Images whose names start with one of `skip_images` are not packed (their
        paths stay as they are). With `chunking`, each .blend of at least its threshold also gets
    its chunk list (FileEntry.chunks). Missing files are reported, not fatal. On error or cancel nothing is
        left in `out_dir`, which is made private to the user (0700). Blocking: run it off Blender's
        main thread.
    """
    blend_path = bpathlib.make_absolute(Path(blend_path))
    original = bpathlib.make_absolute(Path(original)) if original is not None else blend_path
    out_dir = Path(out_dir)
    project = bpathlib.make_absolute(Path(project)) if project is not None else original.parent
    if not original.is_relative_to(project):
        project = original.parent
    _check_readable(blend_path)
    created = not out_dir.exists()
    _prepare_out_dir(blend_path, out_dir)
    try:
        with _BAT_LOCK:
            try:
                return _pack_locked(
                    blend_path, original, out_dir, project, progress, cancel, skip_images, hashes, chunking
                )
            finally:
                blendfile.close_all_cached()
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        else:
            for child in out_dir.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise


def _pack_locked(
    blend_path: Path,
    original: Path,
    out_dir: Path,
    project: Path,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
    skip_images: tuple[str, ...] = (),
    hashes: HashCache | None = None,
    chunking: ChunkPolicy | None = None,
) -> PackResult:
    with _Packer(blend_path, original, project, out_dir, cancel, skip_images) as packer:
        packer.progress_cb = _Progress(progress)
        try:
            packer.strategise()
            packer.execute()
        except CloudError:
            raise
        except batpack.Aborted as exc:
            raise Cancelled() from exc
        except Exception as exc:  # BAT raises many kinds on a damaged file; all mean the same here
            culprit = getattr(exc, "filepath", None) or blend_path
            raise CloudError(
                f"{Path(culprit).name} could not be read as a Blender file; it may be damaged or from an unsupported Blender version.",
                "Open the scene in Blender, save it again (File > Save) and retry.",
                code=ErrorCode.BLEND_CORRUPT,
                detail=f"{type(exc).__name__}: {exc}",
            ) from exc
        sources: dict[str, Path] = {}
        stamps: dict[str, tuple[int, int]] = {}
        notes: list[str] = []
        files = _copy_all(packer, out_dir, cancel, progress, hashes, sources, stamps, chunking, notes)
        _refuse_reserved(files, sources)
        blend_rel = Path(packer.output_path).relative_to(out_dir.absolute()).as_posix()
        manifest = PackManifest(blend=blend_rel, files=files)
        return PackResult(
            out_dir=out_dir,
            manifest=manifest,
            missing=sorted(set(packer.missing), key=lambda m: (m.looked_in, m.used_by)),
            absolute_outside_project=packer.external,
            unreadable=[UnreadableFile(str(p), why) for p, why in sorted(packer.unreadable.items())],
            skipped=packer.skipped,
            sources=sources,
            stamps=stamps,
            notes=sorted(set(notes)),
        )
