"""A frame's image header, read here before Blender ever decodes the file.

A frame comes from the render machine, so its bytes are untrusted: a 15 kB PNG whose header
claims 60000 x 60000 made `bpy.data.images.load` ask for 14.4 GB. Each format Blender writes
says its size in its first bytes (TIFF in an IFD the header points to); this reads only those,
with the standard library, and `check_frame` compares them with what the job asked for
(resolution x percentage, file format). Anything unreadable is not a frame.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..machine.contract import ContractError

HEAD_BYTES = 256 * 1024  # every header read here lies in the first bytes, but TIFF's IFD
MAX_SIDE = 65536  # Blender's largest resolution
# A frame of a job that does not know its size (a record from before it was kept): at most this many pixels.
MAX_UNKNOWN_PIXELS = 16384 * 16384

# Blender's image file formats (ImageFormatSettings.file_format) -> the kind its header reads as.
KIND_OF_FORMAT = {
    "PNG": "png",
    "JPEG": "jpeg",
    "OPEN_EXR": "exr",
    "OPEN_EXR_MULTILAYER": "exr",
    "TIFF": "tiff",
    "BMP": "bmp",
    "WEBP": "webp",
    "HDR": "hdr",
    "IRIS": "iris",
    "TARGA": "tga",
    "TARGA_RAW": "tga",
    "DPX": "dpx",
    "CINEON": "cineon",
    "JPEG2000": "jpeg2000",
}


@dataclass(frozen=True)
class ImageHeader:
    kind: str  # one of KIND_OF_FORMAT's values
    width: int
    height: int


@dataclass(frozen=True)
class FrameShape:
    """What a job's frames must be: the format's kind ("" unknown), and the size (0 unknown);
    `at_most` where the file may be smaller (crop to border) or views side by side."""

    kind: str
    width: int
    height: int
    at_most: bool = False


def read_header(path: Path) -> ImageHeader:
    """The kind and size an image file's header says, or ContractError."""
    with open(path, "rb") as handle:
        head = handle.read(HEAD_BYTES)
        try:
            header = _parse(head, handle)
        except (struct.error, IndexError, ValueError, UnicodeDecodeError) as error:
            raise ContractError(f"its image header is damaged ({error})") from None
    if header is None:
        raise ContractError("it is not an image file Blender writes")
    if not (0 < header.width <= MAX_SIDE and 0 < header.height <= MAX_SIDE):
        raise ContractError(f"its {header.kind} header says {header.width} x {header.height} pixels")
    return header


def check_frame(path: Path, shape: FrameShape) -> ImageHeader:
    """The frame at `path` is an image of the job's format and size, or ContractError saying how not."""
    header = read_header(path)
    if shape.kind and header.kind != shape.kind:
        raise ContractError(f"it is a {header.kind} image, the job renders {shape.kind}")
    size = f"{header.width} x {header.height}"
    if shape.width and shape.height:
        wanted = (shape.width, shape.height)
        fits = header.width <= wanted[0] and header.height <= wanted[1]
        if not fits or (not shape.at_most and (header.width, header.height) != wanted):
            raise ContractError(f"it is {size} pixels, the job renders {wanted[0]} x {wanted[1]}")
    elif header.width * header.height > MAX_UNKNOWN_PIXELS:
        raise ContractError(f"it claims {size} pixels")
    return header


def _parse(head: bytes, handle: BinaryIO) -> ImageHeader | None:
    found = _tiff(head, handle)  # the one header that points elsewhere in the file
    for parse in (_png, _jpeg, _exr, _bmp, _webp, _hdr, _iris, _dpx, _cineon, _jpeg2000, _tga):
        found = found or parse(head)
    return found


def _png(b: bytes) -> ImageHeader | None:
    if b[:8] != b"\x89PNG\r\n\x1a\n" or b[12:16] != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", b, 16)
    return ImageHeader("png", width, height)


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(b: bytes) -> ImageHeader | None:
    if b[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(b):
        if b[pos] != 0xFF:
            raise ValueError("a JPEG marker is missing")
        marker = b[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack_from(">H", b, pos + 2)
        if marker in _SOF:
            height, width = struct.unpack_from(">HH", b, pos + 5)
            return ImageHeader("jpeg", width, height)
        pos += 2 + length
    raise ValueError("no frame header in the first bytes")


def _exr(b: bytes) -> ImageHeader | None:
    """The first part's dataWindow (a box of inclusive pixel coordinates)."""
    if b[:4] != b"\x76\x2f\x31\x01":
        return None
    pos = 8
    while b[pos] != 0:
        name_end = b.index(b"\0", pos)
        type_end = b.index(b"\0", name_end + 1)
        (size,) = struct.unpack_from("<i", b, type_end + 1)
        value = type_end + 5
        if b[pos:name_end] == b"dataWindow" and size == 16:
            x0, y0, x1, y1 = struct.unpack_from("<iiii", b, value)
            return ImageHeader("exr", x1 - x0 + 1, y1 - y0 + 1)
        if size < 0:
            raise ValueError("an attribute of negative size")
        pos = value + size
    raise ValueError("no dataWindow")


def _tiff(b: bytes, handle: BinaryIO) -> ImageHeader | None:
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(b[:4])
    if order is None:
        return None
    (ifd,) = struct.unpack_from(order + "I", b, 4)
    handle.seek(ifd)
    (count,) = struct.unpack(order + "H", handle.read(2))
    entries = handle.read(12 * min(count, 512))
    size: dict[int, int] = {}
    for at in range(0, len(entries) - 11, 12):
        tag, kind = struct.unpack_from(order + "HH", entries, at)
        if tag in (256, 257):
            (size[tag],) = struct.unpack_from(order + ("H" if kind == 3 else "I"), entries, at + 8)
    if 256 not in size or 257 not in size:
        raise ValueError("no width or height tag")
    return ImageHeader("tiff", size[256], size[257])


def _bmp(b: bytes) -> ImageHeader | None:
    if b[:2] != b"BM" or len(b) < 26:
        return None
    (info,) = struct.unpack_from("<I", b, 14)
    if info == 12:
        width, height = struct.unpack_from("<HH", b, 18)
    else:
        width, height = struct.unpack_from("<ii", b, 18)
    return ImageHeader("bmp", width, abs(height))


def _webp(b: bytes) -> ImageHeader | None:
    if b[:4] != b"RIFF" or b[8:12] != b"WEBP":
        return None
    chunk = b[12:16]
    if chunk == b"VP8X":
        width = int.from_bytes(b[24:27], "little") + 1
        height = int.from_bytes(b[27:30], "little") + 1
    elif chunk == b"VP8L":
        (bits,) = struct.unpack_from("<I", b, 21)
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif chunk == b"VP8 ":
        width, height = struct.unpack_from("<HH", b, 26)
        width, height = width & 0x3FFF, height & 0x3FFF
    else:
        raise ValueError("an unknown WebP chunk")
    return ImageHeader("webp", width, height)


_HDR_SIZE = re.compile(rb"\n\n([-+])([XY]) (\d{1,6}) ([-+])([XY]) (\d{1,6})\n")


def _hdr(b: bytes) -> ImageHeader | None:
    if not b.startswith((b"#?RADIANCE", b"#?RGBE")):
        return None
    found = _HDR_SIZE.search(b)
    if found is None:
        raise ValueError("no resolution line")
    sizes = {found.group(2): int(found.group(3)), found.group(5): int(found.group(6))}
    return ImageHeader("hdr", sizes.get(b"X", 0), sizes.get(b"Y", 0))


def _iris(b: bytes) -> ImageHeader | None:
    if b[:2] != b"\x01\xda" or len(b) < 512:
        return None
    width, height = struct.unpack_from(">HH", b, 6)
    return ImageHeader("iris", width, height)


def _dpx(b: bytes) -> ImageHeader | None:
    order = {b"SDPX": ">", b"XPDS": "<"}.get(b[:4])
    if order is None:
        return None
    width, height = struct.unpack_from(order + "II", b, 772)
    return ImageHeader("dpx", width, height)


def _cineon(b: bytes) -> ImageHeader | None:
    order = {b"\x80\x2a\x5f\xd7": ">", b"\xd7\x5f\x2a\x80": "<"}.get(b[:4])
    if order is None:
        return None
    width, height = struct.unpack_from(order + "II", b, 200)
    return ImageHeader("cineon", width, height)


def _jpeg2000(b: bytes) -> ImageHeader | None:
    if b[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n":  # JP2: the ihdr box inside jp2h
        at = b.find(b"ihdr", 12, 4096)
        if at < 0:
            raise ValueError("no ihdr box")
        height, width = struct.unpack_from(">II", b, at + 4)
        return ImageHeader("jpeg2000", width, height)
    if b[:4] == b"\xff\x4f\xff\x51":  # a bare codestream: SIZ first
        x1, y1, x0, y0 = struct.unpack_from(">IIII", b, 8)
        return ImageHeader("jpeg2000", x1 - x0, y1 - y0)
    return None


def _tga(b: bytes) -> ImageHeader | None:
    """Targa has no magic: the fields Blender writes must each be a value the format allows."""
    if len(b) < 18 or b[1] > 1 or b[2] not in (1, 2, 3, 9, 10, 11) or b[16] not in (8, 15, 16, 24, 32):
        return None
    width, height = struct.unpack_from("<HH", b, 12)
    return ImageHeader("tga", width, height)
