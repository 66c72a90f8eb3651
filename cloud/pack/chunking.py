"""Content-defined chunks of a large .blend, so a resubmit after a small edit sends only what changed.

A .blend is a file header and a sequence of blocks, each a small block header (code, size,
the block's old memory address, DNA index, count) and its payload. Blender 4.2 writes runtime
addresses into every header and every pointer of every struct on each save, so the headers and
the small struct blocks differ between two saves of an unchanged scene; the large payloads
(vertex positions, face indices, image pixels) hold no pointers and stay byte for byte the same.
So the file is cut at block boundaries first: the payload of every block of at least
`ChunkPolicy.block_min` bytes is a region of its own, and the headers and small blocks between
two such payloads form the regions in between. Each region is then cut by FastCDC (the
`pyfastcdc` wheel) with the policy's min/avg/max sizes, so an edit inside a large payload
(a mesh edited) moves only the chunks around the edit, and the chunk sizes stay bounded.

A compressed .blend (gzip or zstd, Blender's Compress option) changes everywhere after any
edit: it is not chunked, the caller sends it whole and says so. A file that is not a .blend
(or one this parser cannot walk) is cut by FastCDC alone.

One read of the file: it is memory-mapped; the chunks' SHA-256 and the whole file's are
computed from the same mapped pages (the whole one on a second thread).
"""

from __future__ import annotations

import hashlib
import itertools
import mmap
import os
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .file_hash import hash_stream

MiB = 1024 * 1024

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class ChunkPolicy:
    """Which files are chunked and how big their chunks are.

    threshold: files at least this large are chunked. 32 MiB: below it, re-sending the whole
    file costs seconds, while chunking adds a request per chunk (a HEAD each submit, a PUT
    for each new chunk) and a longer job spec.
    min/avg/max: FastCDC's bounds. 1 MiB on average keeps a 500 MB scene near 600 objects
    (the job spec carries one link per chunk) while one moved object costs a few MiB at most.
    block_min: a block payload at least this large starts its own region (see the module doc).
    """

    threshold: int = 32 * MiB
    min_size: int = 256 * 1024
    avg_size: int = 1 * MiB
    max_size: int = 4 * MiB
    block_min: int = 64 * 1024

    @property
    def key(self) -> str:
        """Names the policy in the hash cache: another policy gives other chunks."""
        return f"cdc1:{self.min_size}:{self.avg_size}:{self.max_size}:{self.block_min}"


@dataclass(frozen=True)
class Chunk:
    sha256: str
    size: int


@dataclass(frozen=True)
class Chunked:
    """A file's whole SHA-256 and size, and its chunks in order (empty: send it whole)."""

    sha256: str
    size: int
    chunks: tuple[Chunk, ...]
    note: str = ""  # why it was not chunked, for the job log


def compression_of(path: Path) -> str:
    """ "gzip", "zstd" or "" from the file's first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head == ZSTD_MAGIC:
        return "zstd"
    return ""


def _header(data: memoryview) -> tuple[int, str, int] | None:
    """(header size, struct format of a block header, offset of its length field) of a plain
    .blend, or None when the bytes are not one. Two header layouts exist: the classic 12 bytes
    (`BLENDER` + pointer size `_`/`-` + endianness `v`/`V` + version) and the 17-byte one of
    Blender 5.0 (`BLENDER17-01v` + version), whose block headers carry 64-bit lengths."""
    head = bytes(data[:17])
    if not head.startswith(b"BLENDER") or len(head) < 12:
        return None
    if head[7:8] in (b"_", b"-"):
        endian = {b"v": "<", b"V": ">"}.get(head[8:9])
        if endian is None:
            return None
        if head[7:8] == b"_":
            return 12, endian + "4siIii", 4  # code, len, old (32-bit), SDNAnr, nr
        return 12, endian + "4siQii", 4  # code, len, old (64-bit), SDNAnr, nr
    if head[7:9] == b"17" and head[9:12] == b"-01" and head[12:13] == b"v":
        return 17, "<4siQqq", 16  # code, SDNAnr, old, len (64-bit), nr
    return None


def block_regions(data: memoryview, block_min: int) -> list[tuple[int, int]] | None:
    """(start, end) regions that cover `data`: each large block's payload alone, everything
    between two of them together. None when the block sequence does not parse."""
    found = _header(data)
    if found is None:
        return None
    header_size, fmt, len_at = found
    head = struct.Struct(fmt)
    length = struct.Struct(fmt[0] + ("i" if len_at == 4 else "q"))
    total = len(data)
    pos = header_size
    cuts = [0]
    while pos + head.size <= total:
        code = bytes(data[pos : pos + 4])
        (size,) = length.unpack_from(data, pos + len_at)
        payload = pos + head.size
        if size < 0 or payload + size > total:
            return None
        if code == b"ENDB":
            break
        if size >= block_min:
            cuts += [payload, payload + size]
        pos = payload + size
    cuts.append(total)
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def _cutter(policy: ChunkPolicy):  # type: ignore[no-untyped-def]
    from pyfastcdc import FastCDC

    return FastCDC(policy.avg_size, min_size=policy.min_size, max_size=policy.max_size)


def _chunks_of(data: memoryview, regions: list[tuple[int, int]], policy: ChunkPolicy) -> Iterator[memoryview]:
    cdc = _cutter(policy)
    for start, end in regions:
        region = data[start:end]
        if end - start <= policy.min_size:
            yield region
            continue
        for piece in cdc.cut_buf(region):
            yield region[piece.offset : piece.offset + piece.length]


def chunk_file(path: Path, policy: ChunkPolicy, on_bytes: Callable[[int], None] | None = None) -> Chunked:
    """Hash `path` and cut it into chunks (one read). A compressed .blend, or no chunker,
    gives no chunks and a note; the whole-file hash is there either way."""
    path = Path(path)
    compression = compression_of(path)
    note = ""
    if compression:
        note = (
            f"{path.name} is saved compressed ({compression}), so it is uploaded whole after any "
            "change; turn off File > Save > Compress to upload only what changed."
        )
    else:
        try:
            _cutter(policy)
        except ImportError:
            note = f"{path.name} is uploaded whole: the chunking library is not installed."
    if note:
        sha, size = hash_stream(path, on_bytes)
        return Chunked(sha, size, (), note)
    whole = hashlib.sha256()
    chunks: list[Chunk] = []
    size = os.path.getsize(path)
    if size == 0:
        return Chunked(whole.hexdigest(), 0, ())
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        data = memoryview(mapped)
        # The whole file's hash on a second core (hashlib releases the GIL) while this thread
        # cuts and hashes the chunks: both read the same mapped pages, so the disk is read once.
        hasher = threading.Thread(target=whole.update, args=(data,), name="cloud-render-whole-hash")
        hasher.start()
        try:
            regions = block_regions(data, policy.block_min) or [(0, len(data))]
            for piece in _chunks_of(data, regions, policy):
                chunks.append(Chunk(hashlib.sha256(piece).hexdigest(), len(piece)))
                if on_bytes is not None:
                    on_bytes(len(piece))
                piece.release()
        finally:
            hasher.join()
            data.release()
    return Chunked(whole.hexdigest(), size, tuple(chunks))
