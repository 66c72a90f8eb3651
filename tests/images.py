"""Image files as a render machine uploads them, made with the standard library: a real PNG of a
given size (what a healthy machine's frame is), and a PNG whose header claims another size."""

from __future__ import annotations

import hashlib
import struct
import zlib


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(width: int = 4, height: int = 4, rgba: tuple[int, int, int, int] = (200, 80, 40, 255)) -> bytes:
    """A valid 8-bit RGBA PNG of one colour."""
    row = b"\x00" + bytes(rgba) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(row * height))
        + _chunk(b"IEND", b"")
    )


def png_claiming(width: int, height: int, size: int = 15_000) -> bytes:
    """A small file whose header says `width` x `height`: what a decoder allocates for before it
    finds the data is short (60000 x 60000 made Blender ask for 14.4 GB)."""
    head = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
    length = max(0, size - len(head) - 24)
    body = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(length // 32 + 1))[:length]
    return head + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")
