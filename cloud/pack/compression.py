"""Which inputs travel zlib-compressed, and compressing them: fewer bytes on the artist's uplink.

A .blend saved without Compress, a cache (.vdb, .abc, .bphys), an uncompressed EXR or TIFF
shrinks by a half or more under zlib; a PNG, a JPEG, a compressed .blend, a video does not,
and compressing it again costs CPU for nothing. So a file is judged by its first bytes (the
formats that are compressed already, by their magic, never by their name: a texture called
.png may be a TIFF) and then by a sample: a few slices compressed at the fastest level, and
under `MIN_SAVING` saved it goes as it is. A chunk of a large .blend is judged the same way by
its own bytes. The machine inflates with the standard library (cloud/machine/inflate.py).

zlib level 1: about 77 MB/s on one core of the dev machine on a plain .blend (ratio 0.38; level
6: 41 MB/s, 0.35), faster than an artist's uplink, so it adds little time for what it saves.
Once the uploader has measured the link (cloud/aws/uploads.py's `LinkMeter`), the effort is
picked from it (`choose_level`): level 6 where the link is slow against compressing, none where
compressing would take longer than sending (a fast line to a nearby region, this computer's
loopback), level 1 between.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

ZLIB = "zlib"  # contract.ENCODINGS
LEVEL = 1  # the level where the link is not measured yet
HARD_LEVEL = 6  # where the link is slow against compressing
# A sample under TIMED_BYTES (a small file) compresses too fast to time: these speeds (one core
# of the dev machine on a plain .blend, bytes a second) stand in for it.
TIMED_BYTES = 64 * 1024
USUAL_SPEED1, USUAL_SPEED6 = 77e6, 41e6
SAMPLE_BYTES = 256 * 1024  # judged on this much, in SAMPLE_SLICES slices spread over the file
SAMPLE_SLICES = 4
MIN_SAVING = 0.10  # under a tenth smaller: sent as it is (the machine's inflate is not free either)
HEAD_BYTES = 64 * 1024  # enough for an EXR header's compression attribute

# Formats whose bytes are compressed already, by their first bytes.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x1f\x8b", "gzip"),  # a .blend saved with Compress before 3.0, .tar.gz
    (0, b"\x28\xb5\x2f\xfd", "zstd"),  # a .blend saved with Compress since 3.0
    (0, b"PK\x03\x04", "ZIP"),
    (0, b"PK\x05\x06", "ZIP"),
    (0, b"BZh", "bzip2"),
    (0, b"\xfd7zXZ\x00", "xz"),
    (0, b"7z\xbc\xaf\x27\x1c", "7z"),
    (0, b"Rar!\x1a\x07", "RAR"),
    (0, b"OggS", "Ogg"),
    (0, b"fLaC", "FLAC"),
    (0, b"ID3", "MP3"),
    (0, b"\xff\xfb", "MP3"),
    (0, b"\xff\xf3", "MP3"),
    (0, b"\xff\xf2", "MP3"),
    (4, b"ftyp", "MP4/MOV"),
    (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (0, b"GIF8", "GIF"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (0, b"\xff\x4f\xff\x51", "JPEG 2000"),
)
_EXR_MAGIC = b"\x76\x2f\x31\x01"
_RIFF_COMPRESSED = (b"WEBP", b"AVI ")  # WAVE is PCM: compressible
_DDS_MAGIC = b"DDS "
_DDS_FOURCC_FLAG = 0x4


def already_compressed(head: bytes) -> str:
    """The compressed format these first bytes begin, or "" for one worth a try."""
    for offset, magic, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return name
    if head[:4] == b"RIFF" and head[8:12] in _RIFF_COMPRESSED:
        return head[8:12].decode().strip()
    if head.startswith(_EXR_MAGIC):
        method = exr_compression(head)
        return "" if method == 0 else f"OpenEXR (compression {method})"
    if head.startswith(_DDS_MAGIC) and len(head) >= 84:
        (flags,) = struct.unpack_from("<I", head, 80)  # DDS_PIXELFORMAT.dwFlags: FOURCC = block-compressed
        return "DDS (block-compressed)" if flags & _DDS_FOURCC_FLAG else ""
    return ""


def exr_compression(head: bytes) -> int:
    """The `compression` attribute of an OpenEXR header (0 NONE, 1 RLE, 2 ZIPS, 3 ZIP, 4 PIZ, ...);
    -1 when the header cannot be read from `head`, which counts as compressed (not tried)."""
    pos = 8  # magic and version
    while pos < len(head):
        end = head.find(b"\x00", pos)
        if end < 0 or end == pos:
            return -1  # cut short, or the header's end without the attribute
        name = head[pos:end]
        type_end = head.find(b"\x00", end + 1)
        if type_end < 0 or type_end + 5 > len(head):
            return -1
        (size,) = struct.unpack_from("<i", head, type_end + 1)
        value = type_end + 5
        if size < 0 or value + size > len(head):
            return -1
        if name == b"compression" and size == 1:
            return head[value]
        pos = value + size
    return -1


def saves_enough(sample: bytes) -> bool:
    """Whether zlib at LEVEL makes `sample` at least MIN_SAVING smaller."""
    if not sample:
        return False
    return len(zlib.compress(sample, LEVEL)) <= (1 - MIN_SAVING) * len(sample)


def _slices(size: int) -> list[tuple[int, int]]:
    """(offset, length) of the sample's slices: the whole of a small file, else spread evenly."""
    if size <= SAMPLE_BYTES:
        return [(0, size)]
    step = SAMPLE_BYTES // SAMPLE_SLICES
    return [((size - step) * k // (SAMPLE_SLICES - 1), step) for k in range(SAMPLE_SLICES)]


def choose_bytes(data: bytes | memoryview) -> str:
    """ "zlib" or "" for bytes in memory (a chunk): its first bytes, then a sample of it."""
    return ZLIB if choose_bytes_level(data) else ""


GUESS_BYTES = 16 * 1024


def likely_form(path: Path | str) -> str:
    """The form a file is most likely stored in, from its first bytes alone (a format compressed
    already, or a first 16 KiB that does not compress: ""; else "zlib"): which key to ask for
    first, without sampling every file of a resubmit whose files are in the bucket already. A
    wrong guess costs one more HEAD, nothing else."""
    with open(path, "rb") as handle:
        head = handle.read(HEAD_BYTES)
    return "" if already_compressed(head) or not saves_enough(head[:GUESS_BYTES]) else ZLIB


def choose_file(path: Path | str) -> str:
    """ "zlib" or "" for a file: its first bytes, then a sample of SAMPLE_BYTES over the file."""
    return ZLIB if choose_file_level(path) else ""


def choose_file_level(
    path: Path | str, link_bytes_per_s: float | None = None, cores: int = 2, effort: Effort | None = None
) -> int:
    """The zlib level a file goes at (0: as it is): its first bytes, then a sample of
    SAMPLE_BYTES over the file, judged against the link (`sample_level`)."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(HEAD_BYTES)
        if already_compressed(head):
            return 0
        pieces = []
        for offset, length in _slices(size):
            handle.seek(offset)
            pieces.append(handle.read(length))
    return sample_level(b"".join(pieces), link_bytes_per_s, cores, effort)


def choose_bytes_level(
    data: bytes | memoryview,
    link_bytes_per_s: float | None = None,
    cores: int = 2,
    effort: Effort | None = None,
) -> int:
    """The zlib level for bytes in memory (a chunk), as `choose_file_level`."""
    if already_compressed(bytes(data[:HEAD_BYTES])):
        return 0
    sample = b"".join(bytes(data[offset : offset + length]) for offset, length in _slices(len(data)))
    return sample_level(sample, link_bytes_per_s, cores, effort)


class Effort:
    """Level 6's figures against level 1's, learnt from an upload's first samples: the first
    `learn` samples are compressed at both levels, later ones at level 1 only, level 6's speed
    and ratio estimated from theirs by the median factors seen (a project's data changes little
    in kind, and a 256 KiB sample at level 6 costs as much CPU as compressing a third of the
    1 MiB chunk it stands for at level 1)."""

    def __init__(self, learn: int = 4) -> None:
        self.learn = learn
        self.lock = threading.Lock()
        self.speed_factors: list[float] = []
        self.ratio_factors: list[float] = []

    def hard(self, sample: bytes, ratio1: float, speed1: float) -> tuple[float, float]:
        """(ratio, speed) of `sample` at HARD_LEVEL: measured, or estimated once learnt."""
        with self.lock:
            if len(self.speed_factors) >= self.learn:
                return ratio1 * _median(self.ratio_factors), speed1 * _median(self.speed_factors)
        ratio6, speed6 = _squeeze(sample, HARD_LEVEL)
        with self.lock:
            self.speed_factors.append(speed6 / speed1)
            self.ratio_factors.append(ratio6 / max(ratio1, 1e-9))
        return ratio6, speed6


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def sample_level(
    sample: bytes, link_bytes_per_s: float | None, cores: int = 2, effort: Effort | None = None
) -> int:
    """The level for the bytes `sample` stands for: 0 when level 1 saves under MIN_SAVING; level 1
    while the link is not measured; else `choose_level` on the sample's ratio and speed at levels
    1 and 6, measured here (a few milliseconds for 256 KiB; level 6's learnt by `effort`)."""
    if not sample:
        return 0
    ratio1, speed1 = _squeeze(sample, LEVEL)
    if ratio1 > 1 - MIN_SAVING:
        return 0
    if not link_bytes_per_s:
        return LEVEL
    if len(sample) < TIMED_BYTES:  # too small to time: its ratios, and this machine's usual speeds
        ratio6, _ = _squeeze(sample, HARD_LEVEL)
        return choose_level(link_bytes_per_s, USUAL_SPEED1, USUAL_SPEED6, ratio1, ratio6, cores)
    if effort is None:
        ratio6, speed6 = _squeeze(sample, HARD_LEVEL)
    else:
        ratio6, speed6 = effort.hard(sample, ratio1, speed1)
    return choose_level(link_bytes_per_s, speed1, speed6, ratio1, ratio6, cores)


def _squeeze(sample: bytes, level: int) -> tuple[float, float]:
    """(compressed / original, bytes compressed a second) of `sample` at `level`."""
    start = time.perf_counter()
    size = len(zlib.compress(sample, level))
    seconds = max(time.perf_counter() - start, 1e-6)
    return size / len(sample), len(sample) / seconds


def choose_level(
    link_bytes_per_s: float,
    speed1: float,
    speed6: float,
    ratio1: float,
    ratio6: float,
    cores: int = 2,
    margin: float = MIN_SAVING,
    hard_margin: float = 0.03,
) -> int:
    """The zlib level (0: none, 1 or 6) that sends bytes soonest over a link of
    `link_bytes_per_s`, given the sample's compression speed (bytes in a second, one core) and
    ratio (compressed / original) at levels 1 and 6, compressing on `cores` cores.

    A byte sent as it is takes 1/link; compressed at level L, 1/(speed_L x cores) to compress
    plus ratio_L/link to send. The two are counted one after the other, not overlapped: a file
    is compressed whole before it is sent (a large one is sent part by part as it is compressed,
    but its last part still waits for the compressor), and the CPU that compresses is the one
    that sends.
    Compressing must win by `margin` of the plain time (the machine inflates it too, and a
    sample's speed is a guess); level 6 must beat level 1 by `hard_margin` of level 1's time. So:
    a 50 Mbit/s home uplink takes a plain .blend at level 1, a slow one (20 Mbit/s) at level 6,
    a fast line to a nearby region or this computer's loopback takes poorly compressible bytes
    as they are."""
    if link_bytes_per_s <= 0 or ratio1 > 1 - margin:
        return 0
    cores = max(cores, 1)
    plain = 1 / link_bytes_per_s
    light = 1 / (max(speed1, 1.0) * cores) + ratio1 / link_bytes_per_s
    hard = 1 / (max(speed6, 1.0) * cores) + ratio6 / link_bytes_per_s
    if light > (1 - margin) * plain and hard > (1 - margin) * plain:
        return 0
    if hard < (1 - hard_margin) * light:
        return HARD_LEVEL
    return LEVEL if light <= (1 - margin) * plain else HARD_LEVEL


def compress_bytes(data: bytes, level: int = LEVEL) -> bytes:
    return zlib.compress(data, level)


@dataclass(frozen=True)
class Compressed:
    """A compressed copy of a file: where it lies, its size, the SHA-256 of its bytes (what S3
    checks the PUT against) and that of the bytes read (the content address, checked by the
    caller: the file may have changed since it was hashed)."""

    path: Path
    size: int
    sha256: str
    source_sha256: str


def compress_file(source: Path | str, dest: Path, block: int = 1 << 20, level: int = LEVEL) -> Compressed:
    """Compress `source` into `dest`, streamed (a few MiB of memory whatever the file's size)."""
    squeeze = zlib.compressobj(level)
    digest, read = hashlib.sha256(), hashlib.sha256()
    size = 0
    with open(source, "rb") as src, open(dest, "wb") as out:
        for data in iter(lambda: src.read(block), b""):
            read.update(data)
            piece = squeeze.compress(data)
            digest.update(piece)
            out.write(piece)
            size += len(piece)
        piece = squeeze.flush()
        digest.update(piece)
        out.write(piece)
        size += len(piece)
    return Compressed(dest, size, digest.hexdigest(), read.hexdigest())


def inflate_file(source: Path, dest: Path, size: int) -> str:
    """Inflate a zlib body into `dest`, refusing more than `size` bytes; returns the SHA-256 of
    what came out (the add-on's own reads of the bucket: cloud/job/local_movie.py)."""
    inflate = zlib.decompressobj()
    digest = hashlib.sha256()
    left = size
    with open(source, "rb") as src, open(dest, "wb") as out:
        for data in iter(lambda: src.read(1 << 20), b""):
            while data:
                piece = inflate.decompress(data, min(left + 1, 1 << 20))
                if len(piece) > left:
                    raise ValueError(f"{source.name} inflates past its {size} bytes")
                left -= len(piece)
                digest.update(piece)
                out.write(piece)
                data = inflate.unconsumed_tail
                if inflate.eof:
                    break
    if not inflate.eof or left:
        raise ValueError(f"{source.name} does not inflate to its {size} bytes")
    return digest.hexdigest()
