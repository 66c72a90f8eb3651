"""A file's SHA-256 and size, read once: what the hash cache (a miss) and the chunker (a file
that goes whole) both need, in a module of its own so neither imports the other for it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

READ_SIZE = 1 << 20


def hash_stream(path: Path, on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
    """SHA-256 and size of a file, read once in 1 MiB blocks (the hash releases the GIL)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as src:
        block = bytearray(READ_SIZE)
        view = memoryview(block)
        while n := src.readinto(block):
            digest.update(view[:n])
            size += n
            if on_bytes is not None:
                on_bytes(n)
    return digest.hexdigest(), size
