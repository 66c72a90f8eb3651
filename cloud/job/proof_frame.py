"""Proof frame: is the machine's frame the artist's frame, give or take sampling noise?

Both sides render the same frame small and with few samples, so the two images differ by
Monte Carlo noise even when nothing else differs. Each image is blurred (a box over a few
pixels takes most of that noise out) before they are compared. A missing texture, an add-on
that did not run, another colour transform change whole areas; noise of a few samples at
32-64 px does not survive the blur. The metric is the share of pixels whose blurred colours
differ by more than a tolerance in any channel, so a small object that changed counts as much
as a large one. PNGs are read here with the standard library (8-bit and 16-bit, greyscale,
RGB, RGBA), since the images are tiny and no imaging library ships.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

THRESHOLD = 0.01  # the share of pixels that may differ (after the blur) for frames to match
PIXEL_TOLERANCE = 0.08  # a pixel differs when a colour channel differs by more (0-1 scale)
BLUR_RADIUS = 2


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    channels: int
    pixels: list[float]  # row-major, channels interleaved, 0-1


@dataclass(frozen=True)
class ProofResult:
    metric: float
    threshold: float
    match: bool

    def words(self) -> str:
        verdict = "matches" if self.match else "does not match"
        return (
            f"The cloud frame {verdict} the local one ({self.metric:.1%} of pixels differ, "
            f"{self.threshold:.0%} allowed)."
        )


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def read_png(data: bytes) -> Image:
    """An 8- or 16-bit, non-interlaced, non-palette PNG as floats; ValueError otherwise."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    pos, idat = 8, b""
    width = height = bits = channels = 0
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, bits, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", body[:13])
            if colour not in (0, 2, 4, 6) or bits not in (8, 16) or interlace:
                raise ValueError("only 8/16-bit grey, RGB or RGBA PNGs without interlacing are read")
            channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    if not width:
        raise ValueError("PNG without a header")
    raw = zlib.decompress(idat)
    step = channels * bits // 8
    stride = width * step
    rows: list[bytearray] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        filter_type, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            a = line[i - step] if i >= step else 0
            b = prev[i]
            c = prev[i - step] if i >= step else 0
            if filter_type == 1:
                line[i] = (line[i] + a) & 0xFF
            elif filter_type == 2:
                line[i] = (line[i] + b) & 0xFF
            elif filter_type == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif filter_type == 4:
                line[i] = (line[i] + _paeth(a, b, c)) & 0xFF
        rows.append(line)
        prev = line
    if bits == 8:
        pixels = [v / 255 for row in rows for v in row]
    else:
        pixels = [struct.unpack(">H", row[i : i + 2])[0] / 65535 for row in rows for i in range(0, stride, 2)]
    return Image(width, height, channels, pixels)


def blur(image: Image, radius: int = BLUR_RADIUS) -> list[float]:
    """A box blur of (2 * radius + 1) pixels each way, edges clamped."""
    w, h, ch, px = image.width, image.height, image.channels, image.pixels
    out = [0.0] * len(px)
    for y in range(h):
        ys = range(max(0, y - radius), min(h, y + radius + 1))
        for x in range(w):
            xs = range(max(0, x - radius), min(w, x + radius + 1))
            count = len(ys) * len(xs)
            for c in range(ch):
                total = sum(px[(yy * w + xx) * ch + c] for yy in ys for xx in xs)
                out[(y * w + x) * ch + c] = total / count
    return out


def resize(image: Image, width: int, height: int) -> Image:
    """A box-averaged copy at `width` x `height` (a full-size cloud frame beside a small proof)."""
    if (width, height) == (image.width, image.height):
        return image
    ch, px, out = image.channels, image.pixels, []
    for y in range(height):
        y0, y1 = (
            y * image.height // height,
            max(y * image.height // height + 1, (y + 1) * image.height // height),
        )
        for x in range(width):
            x0, x1 = (
                x * image.width // width,
                max(x * image.width // width + 1, (x + 1) * image.width // width),
            )
            count = (y1 - y0) * (x1 - x0)
            for c in range(ch):
                total = sum(
                    px[(yy * image.width + xx) * ch + c] for yy in range(y0, y1) for xx in range(x0, x1)
                )
                out.append(total / count)
    return Image(width, height, ch, out)


def compare(local: Image, cloud: Image, threshold: float = THRESHOLD) -> ProofResult:
    """The noise-tolerant difference of two renders of one frame; different sizes never match."""
    if (local.width, local.height) != (cloud.width, cloud.height):
        return ProofResult(1.0, threshold, False)
    channels = min(local.channels, cloud.channels, 3)  # colour only; alpha is compared through it
    a, b = blur(local), blur(cloud)
    pixels = local.width * local.height
    differ = sum(
        1
        for i in range(pixels)
        if max(abs(a[i * local.channels + c] - b[i * cloud.channels + c]) for c in range(channels))
        > PIXEL_TOLERANCE
    )
    metric = differ / pixels
    return ProofResult(round(metric, 5), threshold, metric <= threshold)


def likely_cause(differences: list[dict[str, str]], missing_files: list[str]) -> str:
    """The most likely reason for a mismatch, from the machine's fingerprint differences."""
    if missing_files:
        return f"A file the scene uses was missing on the machine: {missing_files[0]}."
    for key in (
        "addon",
        "ocio_config",
        "view_transform",
        "look",
        "display_device",
        "blender_version",
        "engine",
    ):
        for diff in differences:
            if diff.get("what") == key:
                return diff.get("message", "")
    return "No difference in Blender, add-ons or colour settings was found: check textures and caches."
