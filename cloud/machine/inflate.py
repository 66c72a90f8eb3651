"""Inflating an input the add-on stored zlib-compressed, as it streams in, never past its size.

The object in the bucket is untrusted: anyone who can write there could put a zlib bomb under
an input's key (a few KB that inflate to terabytes). So output is produced piece by piece
(zlib's `max_length`) and refused the moment it would pass the size the spec declares, and the
compressed body is refused past zlib's own worst case for that size: neither the disk nor the
memory grows beyond what the artist's file needs. The SHA-256 of what comes out is the caller's
check (the input's content address), so a body that inflates cleanly to other bytes is refused too.

Shipped next to transport.py; Python 3.9+, standard library only.
"""

from __future__ import annotations

import zlib

PIECE = 1 << 20  # the most output one step produces


def compressed_bound(size: int) -> int:
    """The largest zlib stream of `size` bytes at any level (zlib's compressBound), plus room
    for a header: a longer body is not a compression of this input."""
    return size + (size >> 12) + (size >> 14) + (size >> 25) + 64


class Oversize(Exception):
    """The body inflates past its declared size (or is longer than any compression of it)."""


class Inflater:
    """Feed compressed blocks in, get the uncompressed bytes out, at most `size` of them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.left = size
        self.taken = 0
        self._inflate = zlib.decompressobj()

    def feed(self, data: bytes) -> bytes:
        """Inflate one block. Raises Oversize past the size, ValueError for a damaged stream or
        bytes after its end."""
        self.taken += len(data)
        if self.taken > compressed_bound(self.size):
            raise Oversize(f"the compressed body passed {compressed_bound(self.size)} bytes")
        pieces = []
        while data:
            if self._inflate.eof:
                raise ValueError("bytes after the end of the compressed stream")
            try:
                out = self._inflate.decompress(data, min(self.left + 1, PIECE))
            except zlib.error as exc:
                raise ValueError(f"damaged compressed stream ({exc})") from None
            if len(out) > self.left:
                raise Oversize(f"it inflates past its declared {self.size} bytes")
            self.left -= len(out)
            pieces.append(out)
            data = self._inflate.unconsumed_tail or self._inflate.unused_data
            if data and self._inflate.eof:
                raise ValueError("bytes after the end of the compressed stream")
        return b"".join(pieces)

    def finish(self) -> None:
        """The stream ended where it should: complete, and exactly `size` bytes."""
        if not self._inflate.eof:
            raise ValueError("the compressed stream is cut short")
        if self.left:
            raise ValueError(f"it inflates to {self.size - self.left} bytes, not {self.size}")


def inflate_bytes(data: bytes, size: int) -> bytes:
    """A whole compressed body (a chunk of a few MiB) inflated to exactly `size` bytes."""
    inflater = Inflater(size)
    out = inflater.feed(data)
    inflater.finish()
    return out
