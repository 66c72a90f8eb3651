"""One Cycles still on N machines: render a part by samples, merge the parts exactly, finish once.

Inside Blender (`blender -b scene.blend --python still_parts.py -- '<json>'`):

- "parts": what a machine of the still runs, one Blender for all its work, so the scene loads
  and the kernels compile once. It asks the supervisor for each next part it claimed ("next",
  answered on stdin, as render_frames.py asks for frames) and renders it as "part" below; the
  supervisor uploads it while the next renders. The machine that merges (the first to
  finish a part) is answered with the merge instead: the scene is opened again as the
  artist saved it (the parts changed its samples, denoising and output), each part is added to
  a running sum as it lands ("add": by threads of this process, while this machine and the
  others still render), and once the last is in, "merge" writes the sum and "finish" runs, in
  this process.
- "part": the frame's `total` samples cut into subsets; a part renders samples
  [offset, offset + length) with the scene's own seed, fixed samples (adaptive off, no time
  limit), no denoising, no compositing and the denoising data passes on, into a 32-bit float
  multilayer EXR. Blender 4.5 and newer render the subset (`use_sample_subset`); 4.2 has no
  subset settings, and there the Classic pattern (`TABULATED_SOBOL`, `samples = length`,
  `sample_offset = offset`) is the one that splits exactly, so the part says which it used.
- "merge": the parts averaged pass by pass, each weighted by the samples it rendered. The EXR
  header of a subset render records the total, not the part's length, so the weights are the
  lengths the caller knows. Passes that cannot be averaged (depth, indexes, Cryptomatte, the
  sample count) are taken from the longest part and listed, for the job log.
- "finish": the merged passes denoised with the scene's own denoiser settings (compositor
  Denoise node, fed the merged Denoising Albedo and Normal) and the scene's own compositor
  nodes re-linked from its Render Layers node onto the merged file, written in the scene's
  output format and colour management. Blender renders nothing there: a compositor without a
  Render Layers node only composites.

Why the merge reads EXR itself rather than `_cycles.merge`: Blender 5.x writes a multilayer EXR
as one EXR part per pass (multi-part), and Cycles' merge (OpenImageIO's first sub-image) sees the
first part only, Combined, and writes a file with Combined alone; that is why bpy 5.0.1 seemed
to write only Combined. The reader here takes scanline files, single- or multi-part, stored
uncompressed, ZIPS or ZIP (the parts are written with ZIP), and numpy (in every Blender) does
the arithmetic. The merged file is one part, as Blender 4.x and Cycles' merge write it, which
every Blender from 4.2 reads as multilayer.

Python 3.9 syntax; the standard library plus bpy and numpy, both only inside Blender's steps.
"""

from __future__ import annotations

import json
import os
import queue
import runpy
import struct
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------- OpenEXR, as far as the parts need

_MAGIC = b"\x76\x2f\x31\x01"
_MULTIPART = 0x1000
_LONG_NAMES = 0x400
_UNSUPPORTED = 0x200 | 0x800  # tiled, deep
_NO_COMPRESSION, _ZIPS, _ZIP = 0, 2, 3
_LINES_PER_CHUNK = {_NO_COMPRESSION: 1, _ZIPS: 1, _ZIP: 16}
_PIXEL_DTYPES = {0: "<u4", 1: "<f2", 2: "<f4"}  # UINT, HALF, FLOAT
_WRITE_BLOCK_BYTES = 8 * 1024 * 1024  # an uncompressed file is laid out and written this much at a time


class ExrError(ValueError):
    """A file this reader cannot read (not EXR, tiled, deep, or another compression)."""


@dataclass
class ExrImage:
    """Every channel of an EXR file (all parts), as float32 rows top to bottom."""

    width: int
    height: int
    channels: dict[str, Any]  # full channel name ("ViewLayer.Combined.R") -> numpy (height, width)
    strings: dict[str, str] = field(default_factory=dict)  # the string attributes (render metadata)


def _attributes(data: bytes | bytearray, pos: int) -> tuple[dict[str, tuple[str, bytes]], int]:
    """One header's attributes (name -> (type, raw value)) and the position after its end byte."""
    attrs: dict[str, tuple[str, bytes]] = {}
    while data[pos] != 0:
        end = data.index(b"\0", pos)
        name = data[pos:end].decode()
        type_end = data.index(b"\0", end + 1)
        kind = data[end + 1 : type_end].decode()
        (size,) = struct.unpack_from("<i", data, type_end + 1)
        value_at = type_end + 5
        attrs[name] = (kind, bytes(data[value_at : value_at + size]))
        pos = value_at + size
    return attrs, pos + 1


def _channel_list(raw: bytes) -> list[tuple[str, int]]:
    """(name, pixel type) of a `chlist` value, in file order (alphabetical)."""
    found, pos = [], 0
    while raw[pos] != 0:
        end = raw.index(b"\0", pos)
        (pixel_type,) = struct.unpack_from("<i", raw, end + 1)
        found.append((raw[pos:end].decode(), pixel_type))
        pos = end + 1 + 16
    return found


def _unzip(data: bytes | bytearray, size: int) -> bytes:
    """OpenEXR's ZIP: zlib, then a byte predictor, then two interleaved halves. The predictor's
    sums are taken in bytes (they wrap at 256, as the format's do): no wider copy of the chunk."""
    import numpy as np

    diff = np.frombuffer(zlib.decompress(data), dtype=np.uint8).copy()
    if diff.size != size:
        raise ExrError("a ZIP chunk does not hold the bytes its lines need")
    diff[1:] += 128  # minus 128, modulo 256
    joined = np.cumsum(diff, dtype=np.uint8)
    half = (size + 1) // 2
    out = np.empty(size, dtype=np.uint8)
    out[0::2], out[1::2] = joined[:half], joined[half:]
    return out.tobytes()


def _zip(raw: bytes) -> bytes:
    import numpy as np

    data = np.frombuffer(raw, dtype=np.uint8)
    joined = np.concatenate([data[0::2], data[1::2]]).astype(np.int16)
    diff = joined.copy()
    diff[1:] = (joined[1:] - joined[:-1] + 128) & 0xFF
    # Level 1: float renders barely shrink more at higher levels, and the merged Combined pass
    # is written while the artist waits for the still (level 4 took 1.2 s of a 1080p merge).
    return zlib.compress(diff.astype(np.uint8).tobytes(), 1)


def read_exr(path: str, into: bytearray | None = None) -> ExrImage:
    """Every channel of a scanline EXR (one part or many), as float32. With `into` (a buffer of
    the file's size, reused from part to part), the file is read into it, and the channels of
    a part stored as Cycles writes it (uncompressed, lines in order) are views of it, not
    copies: valid until the buffer is read into again (the merge's reads, BackgroundMerge)."""
    import numpy as np

    data: bytes | bytearray
    if into is None:
        with open(path, "rb") as handle:
            data = handle.read()
    else:
        data = into
        with open(path, "rb") as handle:
            if handle.readinto(data) != len(data) or handle.read(1):
                raise ExrError(f"{os.path.basename(path)} changed size while it was read")
    if data[:4] != _MAGIC:
        raise ExrError(f"{os.path.basename(path)} is not an OpenEXR file")
    (flags,) = struct.unpack_from("<i", data, 4)
    if flags & _UNSUPPORTED:
        raise ExrError(f"{os.path.basename(path)} is tiled or deep; only scanline images are read")
    headers, pos = [], 8
    while True:
        attrs, pos = _attributes(data, pos)
        headers.append(attrs)
        if not flags & _MULTIPART or data[pos] == 0:
            pos += 1 if flags & _MULTIPART else 0
            break
    image: ExrImage | None = None
    strings: dict[str, str] = {}
    channels: dict[str, Any] = {}
    for index, attrs in enumerate(headers):
        x0, y0, x1, y1 = struct.unpack("<4i", attrs["dataWindow"][1])
        width, height = x1 - x0 + 1, y1 - y0 + 1
        compression = attrs["compression"][1][0]
        if compression not in _LINES_PER_CHUNK:
            raise ExrError(f"{os.path.basename(path)}: compression {compression} is not read here")
        lines = _LINES_PER_CHUNK[compression]
        chunks = (height + lines - 1) // lines
        if "chunkCount" in attrs:
            (chunks,) = struct.unpack("<i", attrs["chunkCount"][1])
        offsets = struct.unpack_from(f"<{chunks}Q", data, pos)
        pos += 8 * chunks
        names = _channel_list(attrs["channels"][1])
        line_type = np.dtype([(str(i), _PIXEL_DTYPES[kind], (width,)) for i, (_n, kind) in enumerate(names)])
        prefix = 4 if flags & _MULTIPART else 0
        # A part as Cycles writes it: every line stored as it is, read in one piece.
        whole = (
            _read_uncompressed(data, offsets, prefix, line_type, y0, y1, into is not None)
            if lines == 1
            else None
        )
        if whole is not None:
            planes = whole
        else:
            planes = [np.empty((height, width), dtype=np.float32) for _ in names]
            _read_chunks(data, offsets, prefix, line_type, lines, y0, y1, planes)
        channels.update({name: planes[i] for i, (name, _kind) in enumerate(names)})
        for name, (kind, raw) in attrs.items():
            if kind == "string" and name not in strings:
                strings[name] = raw.decode("utf-8", "replace")
        if image is None or index == 0:
            image = ExrImage(width, height, channels, strings)
    assert image is not None
    return image


def _read_uncompressed(
    data: bytes | bytearray,
    offsets: tuple[int, ...],
    prefix: int,
    line_type: Any,
    y0: int,
    y1: int,
    views: bool = False,
) -> list[Any] | None:
    """Every line of an uncompressed part at once, when its chunks lie back to back, one line
    each, and every chunk is a whole stored line (None: read chunk by chunk instead): a plane a
    channel, float32 copies, or with `views` (lines in order) views of `data`. A 1080p part's
    1080 chunks of 12 channels were 13,000 small copies."""
    import numpy as np

    height = y1 - y0 + 1
    stride = prefix + 8 + line_type.itemsize
    if len(offsets) != height or np.any(np.diff(np.asarray(offsets, dtype=np.int64)) != stride):
        return None
    if offsets[0] + stride * height > len(data):
        raise ExrError("the chunks run past the end of the file")
    fields = [("part", "<i4")] if prefix else []
    chunk = np.dtype([*fields, ("y", "<i4"), ("size", "<i4"), ("row", line_type)])
    rows = np.frombuffer(data, dtype=chunk, count=height, offset=offsets[0])
    if np.any(rows["size"] != line_type.itemsize):
        return None  # some line was compressed after all (RLE/ZIPS keep what does not shrink)
    order = rows["y"] - y0
    if order.min() < 0 or order.max() >= height or np.unique(order).size != height:
        raise ExrError("the lines of an uncompressed part do not cover its image once")
    in_order = bool(np.all(order == np.arange(height)))  # as every writer stores them
    if in_order and views:
        return [rows["row"][str(i)] for i in range(len(line_type.names))]
    planes = []
    for i in range(len(line_type.names)):
        plane = np.empty((height, rows["row"][str(i)].shape[-1]), dtype=np.float32)
        if in_order:
            plane[...] = rows["row"][str(i)]
        else:
            plane[order] = rows["row"][str(i)]
        planes.append(plane)
    return planes


def _read_chunks(
    data: bytes | bytearray,
    offsets: tuple[int, ...],
    prefix: int,
    line_type: Any,
    lines: int,
    y0: int,
    y1: int,
    planes: list[Any],
) -> None:
    """Chunk by chunk: ZIP (16 lines a chunk), or lines laid out unevenly."""
    import numpy as np

    for offset in offsets:
        at = offset + prefix
        y, size = struct.unpack_from("<ii", data, at)
        count = min(lines, y1 - y + 1)
        payload = data[at + 8 : at + 8 + size]
        if size < count * line_type.itemsize:
            payload = _unzip(payload, count * line_type.itemsize)
        rows = np.frombuffer(payload, dtype=line_type, count=count)
        for i, plane in enumerate(planes):
            plane[y - y0 : y - y0 + count] = rows[str(i)]


def _attribute(name: str, kind: str, value: bytes) -> bytes:
    return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) + value


def write_exr(
    path: str,
    width: int,
    height: int,
    channels: dict[str, Any],
    strings: dict[str, str],
    compress: bool = True,
) -> None:
    """One scanline part, float32 channels (names sorted, as OpenEXR wants), string metadata kept;
    ZIP, or uncompressed for a file that never leaves the machine (zlib is most of a write)."""
    import numpy as np

    compression = _ZIP if compress else _NO_COMPRESSION

    names = sorted(channels)
    chlist = b"".join(n.encode() + b"\0" + struct.pack("<iB3xii", 2, 0, 1, 1) for n in names) + b"\0"
    window = struct.pack("<4i", 0, 0, width - 1, height - 1)
    header = b"".join(
        [
            _attribute("channels", "chlist", chlist),
            _attribute("compression", "compression", bytes([compression])),
            _attribute("dataWindow", "box2i", window),
            _attribute("displayWindow", "box2i", window),
            _attribute("lineOrder", "lineOrder", b"\0"),
            _attribute("pixelAspectRatio", "float", struct.pack("<f", 1.0)),
            _attribute("screenWindowCenter", "v2f", struct.pack("<2f", 0.0, 0.0)),
            _attribute("screenWindowWidth", "float", struct.pack("<f", 1.0)),
            *(_attribute(k, "string", v.encode()) for k, v in sorted(strings.items())),
        ]
    )
    if not compress:
        _write_uncompressed(path, width, height, [channels[n] for n in names], header)
        return
    stack = np.stack([np.asarray(channels[n], dtype="<f4") for n in names], axis=1)  # (height, nch, width)
    lines = _LINES_PER_CHUNK[compression]

    def chunk(y: int) -> bytes:
        raw = stack[y : y + lines].tobytes()
        packed = _zip(raw) if compress else raw
        payload = packed if len(packed) < len(raw) else raw
        return struct.pack("<ii", y, len(payload)) + payload

    starts = range(0, height, lines)
    if compress:  # zlib and numpy let go of the GIL: the chunks zip on every core at once
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            blocks = list(pool.map(chunk, starts))
    else:
        blocks = [chunk(y) for y in starts]
    start = 8 + len(header) + 1 + 8 * len(blocks)
    offsets, at = [], start
    for block in blocks:
        offsets.append(at)
        at += len(block)
    tmp = path + ".tmp"
    with open(tmp, "wb") as handle:
        handle.write(_MAGIC + struct.pack("<i", 2 | _LONG_NAMES) + header + b"\0")
        handle.write(struct.pack(f"<{len(offsets)}Q", *offsets))
        handle.write(b"".join(blocks))
    os.replace(tmp, path)


def _write_uncompressed(path: str, width: int, height: int, planes: list[Any], header: bytes) -> None:
    """Every line of an uncompressed file (line number, size, then each channel's row), laid out
    a block of lines at a time in one small buffer and written as it fills: the merged file is
    on the critical path, building each line's bytes apart and joining them copied a 1080p merge
    three times over, and laying out the whole file first took a copy of it in new memory
    (400 MB at 4K; 1.1-2.3 s of a 1080p write on this computer, where new memory is slow)."""
    import numpy as np

    row = np.dtype((np.dtype("<f4"), (len(planes), width)))
    chunk = np.dtype([("y", "<i4"), ("size", "<i4"), ("row", row)])
    block = np.empty(max(1, min(height, _WRITE_BLOCK_BYTES // chunk.itemsize)), dtype=chunk)
    block["size"] = row.itemsize
    start = 8 + len(header) + 1 + 8 * height
    offsets = start + chunk.itemsize * np.arange(height, dtype="<u8")
    tmp = path + ".tmp"
    with open(tmp, "wb") as handle:
        handle.write(_MAGIC + struct.pack("<i", 2 | _LONG_NAMES) + header + b"\0")
        handle.write(offsets.astype("<u8").tobytes())
        for y in range(0, height, len(block)):
            lines = block[: min(len(block), height - y)]
            lines["y"] = np.arange(y, y + len(lines), dtype="<i4")
            for i, plane in enumerate(planes):
                lines["row"][:, i, :] = plane[y : y + len(lines)]
            handle.write(lines.data)
    os.replace(tmp, path)


# ---------------------------------------------------------------- merging the parts

# Passes whose pixels are not sums of samples: an average of them means nothing.
_NOT_AVERAGED = ("Depth", "IndexMA", "IndexOB", "Object Index", "Material Index", "Debug Sample Count")


def pass_name(channel: str) -> str:
    """The pass of "Layer.Pass.Channel" ("Pass" for "Layer.Pass.View.Channel" too); the name itself otherwise."""
    parts = channel.split(".")
    return parts[1] if len(parts) >= 3 else channel


def can_average(name: str) -> bool:
    return name not in _NOT_AVERAGED and not name.startswith("Crypto")


@dataclass
class MergeReport:
    """What the merge did, for the job log."""

    averaged: list[str]
    taken_from_longest: list[str]
    samples: int
    seconds: float


class Merge:
    """The parts' running sum, one part added at a time, in any order: the machine that merges
    adds each part as it lands while the others still render, so after the last part only that
    one is read and added before the merged file is written. Each pass is weighted by the part's
    samples over the frame's total (known before any part lands), summed in float64; passes that
    cannot be averaged are kept from the longest part (of equal ones, the first of the frame's
    order, whatever order they were added in: the merge does not depend on which landed first)."""

    def __init__(self, total: int) -> None:
        if int(total) < 1:
            raise ValueError("a merge needs a total of one sample or more")
        self.total = int(total)
        self.added = 0  # samples added so far
        self.width = self.height = 0
        self.names: set[str] = set()
        self.sums: dict[str, Any] = {}
        self.kept: dict[str, Any] = {}  # the passes not averaged, from the longest part so far
        self.longest: tuple[int, int] = (0, 0)  # (samples, -index) of the part kept from
        self.strings: dict[str, str] = {}
        self.scratch: Any = None  # one float64 plane, reused for every weighted pass
        self.written = False

    def add(self, path: str, length: int, index: int = 0) -> float:
        """Part `index` (its place in the frame's order), `path`, of `length` samples into the
        sum; its seconds."""
        started = time.monotonic()
        self.check_fits(length)
        self.include(read_exr(path), path, length, index)
        return time.monotonic() - started

    def check_fits(self, length: int) -> None:
        if int(length) < 1 or self.added + int(length) > self.total:
            raise ValueError(f"a part of {length} samples does not fit the {self.total - self.added} left")

    def include(self, image: ExrImage, path: str, length: int, index: int = 0) -> None:
        """A part already read (`image`, from `path`) into the sum."""
        import numpy as np

        length = int(length)
        self.check_fits(length)
        if not self.names:
            self.width, self.height, self.names = image.width, image.height, set(image.channels)
        elif (image.width, image.height) != (self.width, self.height) or set(image.channels) != self.names:
            raise ExrError(f"{os.path.basename(path)} does not hold the same image as the other parts")
        weight = length / self.total
        longest = (length, -int(index)) > self.longest
        for channel, pixels in image.channels.items():
            if not can_average(pass_name(channel)):
                if longest:  # a copy: a part's pixels may be views of a buffer read into again
                    self.kept[channel] = np.array(pixels, dtype=np.float32)
            elif (
                channel in self.sums
            ):  # in float64, in place, through one scratch plane: no new memory a part
                if self.scratch is None:
                    self.scratch = np.empty((self.height, self.width), dtype=np.float64)
                np.multiply(pixels, weight, out=self.scratch, dtype=np.float64)
                np.add(self.sums[channel], self.scratch, out=self.sums[channel])
            else:
                self.sums[channel] = np.multiply(pixels, weight, dtype=np.float64)
        if longest:
            self.longest, self.strings = (length, -int(index)), dict(image.strings)
        self.added += length

    def write(self, output: str, combined: str = "") -> tuple[list[str], list[str]]:
        """The merged passes into one multilayer EXR at `output` (uncompressed: only the finish
        step on this machine reads it), and with `combined` the Combined pass alone there too
        (or later, write_combined: while the finish runs); (averaged, taken from the longest
        part). Every sample must have been added."""
        if self.added != self.total:
            raise ValueError(f"the parts added hold {self.added} samples of {self.total}")
        merged: dict[str, Any] = {**self.sums, **self.kept}  # float64 sums: made float32 as written
        strings = dict(self.strings)
        for key in [k for k in strings if k.startswith("cycles.") and k.endswith(".samples")]:
            strings[key] = str(self.total)
        for key in ("name", "type", "view"):
            strings.pop(key, None)  # a multi-part file's per-part names: the merged file is one part
        write_exr(output, self.width, self.height, merged, strings, compress=False)
        self.written = True
        if combined:
            self.write_combined(combined)
        return sorted({pass_name(c) for c in self.sums}), sorted({pass_name(c) for c in self.kept})

    def write_combined(self, path: str) -> None:
        """The merged Combined pass alone (after write)."""
        import numpy as np

        if not self.written:
            raise ValueError("the merge is not written yet")
        combined = {c: a.astype(np.float32) for c, a in self.sums.items() if pass_name(c) == "Combined"}
        write_combined(path, self.width, self.height, combined)


class BackgroundMerge:
    """The merging machine's running merge, fed from the loop that renders its own parts: each
    part handed over is read by one thread and added by another while Blender renders the next
    part (a render lets go of Python's lock: measured on 4.2, 5.0 and 5.3, a numpy thread kept
    half its speed beside a CPU render and would keep all of it beside a GPU one). So the
    merging machine's parts wait for no add, it claims ahead like the others, and once the last
    part lands its read overlaps the add of the one before. Parts are added in the order they
    were handed over (one adding thread): the sums do not depend on thread timing. Two buffers
    of a part's size are read into in turn and the passes added straight from them (no copy of
    a part, no new memory a part): two parts are in memory at once."""

    def __init__(self, total: int) -> None:
        self.merge = Merge(total)
        self.order: list[int] = []  # the parts added, in the order they were added
        self.seconds = 0.0  # reading and adding, summed (the two overlap)
        self.error: BaseException | None = None
        self._reads: queue.Queue[tuple[str, int, int] | None] = queue.Queue()
        self._read: queue.Queue[tuple[ExrImage, bytearray, str, int, int, float] | None] = queue.Queue()
        self._buffers: queue.Queue[bytearray] = queue.Queue()
        for _ in range(2):
            self._buffers.put(bytearray())
        self._threads = [
            threading.Thread(target=self._reader, name="merge-reader", daemon=True),
            threading.Thread(target=self._adder, name="merge-adder", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._closed = False

    def add(self, path: str, length: int, index: int) -> None:
        """Hand part `index` over to be added; raises what went wrong with an earlier one."""
        self.raise_error()
        if self._closed:
            raise ValueError("the merge takes no part after it was written")
        self._reads.put((path, int(length), int(index)))

    def finished(self) -> Merge:
        """Every part handed over, added: the merge, to write."""
        if not self._closed:
            self._closed = True
            self._reads.put(None)
            for thread in self._threads:
                thread.join()
        self.raise_error()
        return self.merge

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def _reader(self) -> None:
        while True:
            item = self._reads.get()
            if item is None or self.error is not None:
                break
            path, length, index = item
            buffer = self._buffers.get()  # free once the part read into it before was added
            started = time.monotonic()
            try:
                size = os.path.getsize(path)
                if len(buffer) != size:  # every part of a still is the same size: read once
                    buffer = bytearray(size)
                image = read_exr(path, into=buffer)
            except BaseException as exc:  # raised on the loop's thread, at the next part or the write
                self.error = exc
                break
            self._read.put((image, buffer, path, length, index, time.monotonic() - started))
        self._read.put(None)

    def _adder(self) -> None:
        while True:
            item = self._read.get()
            if item is None:
                return
            image, buffer, path, length, index, reading = item
            started = time.monotonic()
            try:
                if self.error is None:
                    self.merge.include(image, path, length, index)
                    self.order.append(index)
                    self.seconds += reading + time.monotonic() - started
            except BaseException as exc:
                self.error = exc
            finally:
                del image, item
                self._buffers.put(buffer)  # the reader may read into it again


def merge_parts(parts: list[tuple[str, int]], output: str, combined: str = "") -> MergeReport:
    """The parts' passes weighted by each part's samples into one multilayer EXR at `output`;
    with `combined`, the merged Combined pass alone (RGBA float, one layer) there as well.
    One part is read at a time (a 4K part with its passes is about 400 MB, and spot cuts a still
    into four parts a machine)."""
    if not parts or any(int(length) < 1 for _path, length in parts):
        raise ValueError("a merge needs at least one part, each with one sample or more")
    started = time.monotonic()
    merge = Merge(sum(int(length) for _path, length in parts))
    for index, (path, length) in enumerate(parts):
        merge.add(path, int(length), index)
    averaged, kept = merge.write(output, combined)
    return MergeReport(averaged, kept, merge.total, round(time.monotonic() - started, 3))


def write_combined(path: str, width: int, height: int, channels: dict[str, Any]) -> None:
    """The first view layer's Combined pass as a plain RGBA EXR, stored uncompressed: ZIP took
    4x as long as the write itself (1.3 s against 0.3 s at 1080p, on the merging machine while
    the artist waits) and kept 4% of the bytes (rendered noise does not shrink)."""
    layers = sorted({c.split(".")[0] for c in channels if pass_name(c) == "Combined"})
    if not layers:
        raise ExrError("the parts hold no Combined pass")
    prefix = f"{layers[0]}.Combined."
    rgba = {c: channels[prefix + c] for c in "RGBA" if prefix + c in channels}
    write_exr(path, width, height, rgba, {}, compress=False)


# ---------------------------------------------------------------- inside Blender


def subset_supported(cycles: Any) -> bool:
    """Blender 4.5 and newer render a subset of a frame's samples; 4.2 has no such setting."""
    return hasattr(cycles, "use_sample_subset")


def set_multilayer_exr(settings: Any) -> None:
    """32-bit float multilayer EXR, uncompressed; Blender 5.x needs the media type before the format.

    Uncompressed: a part goes only to the bucket in the machines' own region (no egress, the
    artist never downloads one), 32-bit float noise shrinks little with ZIP (a synthetic 1080p
    part: 99.6 MB as it is, 95.1 MB zipped), and unzipping was most of the merge the artist waits
    for (reading a 1080p part: 1.7 s zipped, 0.04 s as it is)."""
    if hasattr(settings, "media_type"):
        settings.media_type = "MULTI_LAYER_IMAGE"
    settings.file_format = "OPEN_EXR_MULTILAYER"
    settings.color_depth = "32"
    settings.exr_codec = "NONE"


def prepare_part(scene: Any, frame: int, total: int, offset: int, length: int) -> str:
    """Set the scene to render samples [offset, offset + length) of `total`; the method used."""
    if not 0 <= offset < offset + length <= total:
        raise ValueError(f"samples {offset}..{offset + length} are not inside 0..{total}")
    cycles = scene.cycles
    cycles.use_adaptive_sampling = False
    cycles.time_limit = 0
    cycles.use_denoising = False
    if subset_supported(cycles):
        cycles.samples = total
        cycles.use_sample_subset = True
        cycles.sample_offset = offset
        cycles.sample_subset_length = length
        method = "subset"
    else:
        cycles.sampling_pattern = "TABULATED_SOBOL"
        cycles.samples = length
        cycles.sample_offset = offset
        method = "classic"
    scene.render.use_compositing = False
    for layer in scene.view_layers:
        layer.cycles.denoising_store_passes = True
    set_multilayer_exr(scene.render.image_settings)
    scene.frame_set(frame)
    return method


def render_part(scene: Any, frame: int, total: int, offset: int, length: int, output: str) -> dict[str, Any]:
    """Render one part into `output` (a multilayer EXR); what the part_done event says."""
    import bpy

    if scene.render.engine != "CYCLES":
        raise ValueError("only Cycles renders a still by sample subsets")
    method = prepare_part(scene, frame, total, offset, length)
    scene.render.filepath = output
    scene.render.use_file_extension = True
    started = time.monotonic()
    bpy.ops.render.render(write_still=True, scene=scene.name)
    if not os.path.isfile(output):
        raise RuntimeError(f"Blender wrote no part file at {output}")
    return {
        "path": output,
        "method": method,
        "seconds": round(time.monotonic() - started, 3),
        "samples": length,
    }


def compositor_tree(scene: Any) -> Any:
    """The scene's compositor node tree, made if it has none (5.x: a node group; 4.x: scene nodes)."""
    import bpy

    if hasattr(scene, "compositing_node_group"):
        if scene.compositing_node_group is None:
            tree: Any = bpy.data.node_groups.new("Cloud Render Finish", "CompositorNodeTree")
            tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
            tree.nodes.new("NodeGroupOutput")
            scene.compositing_node_group = tree
        return scene.compositing_node_group
    if not scene.use_nodes:
        scene.use_nodes = True
        tree = scene.node_tree
        for node in list(tree.nodes):
            if node.bl_idname != "CompositorNodeComposite":
                tree.nodes.remove(node)
        if not tree.nodes:
            tree.nodes.new("CompositorNodeComposite")
    return scene.node_tree


def final_output(tree: Any) -> Any:
    """The node the composite ends in: the Group Output (5.x) or the Composite node (4.x)."""
    for kind in ("NodeGroupOutput", "CompositorNodeComposite"):
        for node in tree.nodes:
            if node.bl_idname == kind:
                return node
    return tree.nodes.new("CompositorNodeComposite")


def denoise_node(tree: Any, scene: Any, image: Any) -> Any:
    """A Denoise node set as the scene's Cycles denoiser, fed the merged passes it asks for."""
    cycles = scene.cycles
    node = tree.nodes.new("CompositorNodeDenoise")
    prefilter = getattr(cycles, "denoising_prefilter", "ACCURATE")
    quality = getattr(cycles, "denoising_quality", "HIGH")
    if "Prefilter" in node.inputs:  # Blender 5.x: the options are menu inputs, named as shown
        node.inputs["Prefilter"].default_value = prefilter.title()
        node.inputs["Quality"].default_value = quality.title()
        node.inputs["HDR"].default_value = True
    else:
        node.prefilter = prefilter
        node.use_hdr = True
        if hasattr(node, "quality"):
            node.quality = quality
    passes = cycles.denoising_input_passes
    tree.links.new(image.outputs["Combined"], node.inputs["Image"])
    if passes in ("RGB_ALBEDO", "RGB_ALBEDO_NORMAL"):
        tree.links.new(image.outputs["Denoising Albedo"], node.inputs["Albedo"])
    if passes == "RGB_ALBEDO_NORMAL":
        tree.links.new(image.outputs["Denoising Normal"], node.inputs["Normal"])
    return node


def relink_onto_merged(scene: Any, merged: str) -> tuple[bool, bool]:
    """The scene's compositor reads the merged file instead of rendering: (denoised, composited)."""
    import bpy

    tree = compositor_tree(scene)
    image = tree.nodes.new("CompositorNodeImage")
    image.image = bpy.data.images.load(merged, check_existing=False)
    layers = [n for n in tree.nodes if n.bl_idname == "CompositorNodeRLayers"]
    denoise = denoise_node(tree, scene, image) if scene.cycles.use_denoising else None
    beauty = denoise.outputs["Image"] if denoise is not None else image.outputs["Combined"]
    out = final_output(tree)
    composited = False
    if layers:
        for link in list(tree.links):
            if link.from_node not in layers:
                continue
            source = link.from_socket.name
            target = link.to_socket
            if source == "Image":
                socket = beauty
            elif source in image.outputs:
                socket = image.outputs[source]
            else:
                raise ValueError(f"the merged file has no {source} pass for the compositor")
            tree.links.new(socket, target)
            composited = composited or target.node != out
        for node in layers:
            tree.nodes.remove(node)
    if not out.inputs[0].is_linked:
        tree.links.new(beauty, out.inputs[0])
    return denoise is not None, composited


def final_path(scene: Any, output: str) -> str:
    """Where the finish writes the image: `output` with the extension of the scene's format."""
    return output + scene.render.file_extension


def finish_still(scene: Any, merged: str, frame: int, output: str) -> dict[str, Any]:
    """Denoise and composite the merged passes once; the image is written at final_path, in the
    scene's format and colour management."""
    import bpy

    started = time.monotonic()
    scene.frame_set(frame)
    denoised, composited = relink_onto_merged(scene, merged)
    scene.render.use_compositing = True
    bpy.ops.render.render(write_still=False, scene=scene.name)
    path = final_path(scene, output)
    bpy.data.images["Render Result"].save_render(path, scene=scene)
    if not os.path.isfile(path):
        raise RuntimeError(f"Blender wrote no image at {path}")
    return {
        "path": path,
        "denoised": denoised,
        "composited": composited,
        "seconds": round(time.monotonic() - started, 3),
    }


# ---------------------------------------------------------------- the supervisor's entry


def serve_parts(args: dict[str, Any], emit: Any, read_line: Any) -> None:
    """The "parts" step. Each "next" is answered with a line: a part's index (its samples and
    file in `args["parts"]`), nothing (no part left: Blender exits), or a JSON object for the
    machine that merges: {"reopen": true} opens the scene again as saved and says where the
    image will be ("output"); {"add": [{"index": k, "path": ..., "samples": n}, ...]} hands
    parts (or one part, an object) to the running merge (BackgroundMerge: added by its threads as the parts land, while this and
    the other machines still render; nothing is said back until the merge); {"steps": [...]}
    waits for every add, then runs those steps (merge, finish) here and ends."""
    import bpy

    frame, total = int(args["frame"]), int(args["total"])
    parts = {int(k): v for k, v in dict(args["parts"]).items()}
    gathered: BackgroundMerge | None = None  # the running merge, on the machine that merges
    while True:
        if gathered is not None:
            gathered.raise_error()  # a part that could not be added ends the step
        emit("next")
        line = read_line().strip()
        if not line:
            return
        if not line.startswith("{"):
            index = int(line)
            part = parts[index]
            emit("part", index=index)
            scene = bpy.context.scene
            done = render_part(scene, frame, total, int(part["offset"]), int(part["length"]), part["output"])
            emit("part_done", index=index, **done)
            continue
        command = json.loads(line)
        if command.get("reopen"):
            bpy.ops.wm.open_mainfile(filepath=bpy.data.filepath, use_scripts=bool(args.get("auto_run")))
            emit("output", path=final_path(bpy.context.scene, str(command["output"])))
            continue
        if "add" in command:  # added by the merge's own threads, while the next part renders
            if gathered is None:
                gathered = BackgroundMerge(total)
            adds = command["add"]
            for add in adds if isinstance(adds, list) else [adds]:
                gathered.add(str(add["path"]), int(add["samples"]), int(add["index"]))
            continue
        merge = gathered.finished() if gathered is not None else None
        said = {"added": gathered.order, "add_seconds": round(gathered.seconds, 3)} if gathered else {}
        with ThreadPoolExecutor(1) as later:  # the merged Combined pass, written while the finish runs
            for step in command["steps"]:
                run_step(step, emit, read_line, merge, later, said)
        return


_COMBINED_WRITES: list[Any] = []  # the merged Combined pass being written while the finish runs


def run_step(
    args: dict[str, Any],
    emit: Any,
    read_line: Any = None,
    gathered: Merge | None = None,
    later: ThreadPoolExecutor | None = None,
    said: dict[str, Any] | None = None,
) -> None:
    import bpy

    scene: Any = bpy.context.scene
    step = args.get("step")
    if step == "parts":
        serve_parts(args, emit, read_line or sys.stdin.readline)
    elif step == "part":
        done = render_part(
            scene,
            int(args["frame"]),
            int(args["total"]),
            int(args["offset"]),
            int(args["length"]),
            args["output"],
        )
        emit("part_done", **done)
    elif step == "merge":
        started = time.monotonic()
        if args.get("gathered"):  # every part was added as it landed: only the write is left
            if gathered is None:
                raise ValueError("no parts were gathered for this merge")
            combined = str(args.get("combined") or "")
            averaged, kept = gathered.write(args["output"], "" if later else combined)
            if later and combined:
                _COMBINED_WRITES.append(later.submit(gathered.write_combined, combined))
            report = MergeReport(averaged, kept, gathered.total, round(time.monotonic() - started, 3))
        else:
            parts = [(str(path), int(length)) for path, length in args["parts"]]
            report = merge_parts(parts, args["output"], args.get("combined", ""))
        emit(
            "merged",
            averaged=report.averaged,
            taken_from_longest=report.taken_from_longest,
            seconds=report.seconds,
            samples=report.samples,
            **(said or {}),  # gathered: the parts in the order added, and the adds' seconds
        )
    elif step == "finish":
        done = finish_still(scene, args["merged"], int(args["frame"]), args["output"])
        while _COMBINED_WRITES:  # the supervisor uploads the merged Combined pass on "finished"
            _COMBINED_WRITES.pop().result()
        emit("finished", **done)
    else:
        raise ValueError(f"unknown step {step!r}")


def main() -> None:
    # Run by path (`--python`), no package around it: the stdout protocol is the file beside it.
    protocol = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "blender_logs.py"))
    emit, fail = protocol["emit"], protocol["fail"]
    try:
        args = json.loads(sys.argv[-1])  # the last argument (prepare_blender.py may read one before it)
        run_step(args, emit)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        fail("internal", f"The still step could not run: {exc}")
    except (OSError, RuntimeError) as exc:
        fail("render_failed", f"The still step failed: {exc}")


if __name__ == "__main__":
    main()
