"""What only the saved .blend on disk tells: which Geometry Nodes bakes hold packed data.

bpy does not say whether a bake stored in the file holds data, so BAT reads the saved file
(about 0.1 s for a small scene, more for a large one). That read is done at most once per
version of the file (keyed by its path, modification time and size), and the confirmation of
Render in Cloud starts it in a worker thread (`prefetch`), so that pressing Render finds it
done. Free of bpy: the caller says which file and whether it holds such bakes.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ..cloud.pack import bakes

Key = tuple[str, int, int]
KEEP = 8  # file versions remembered (an artist switching between a few files)
WAIT_S = 60.0  # the longest a caller waits for a read already under way

_lock = threading.Lock()
_found: dict[Key, dict[str, set[int]]] = {}
_reading: dict[Key, threading.Event] = {}
reads = 0  # BAT reads done in this session: tests check that one version is read once


def _key(path: str) -> Key | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (os.path.realpath(path), stat.st_mtime_ns, stat.st_size)


def packed_bakes(path: str) -> dict[str, set[int]]:
    """Object name -> ids of its bakes that hold packed data in the saved file at `path` (empty
    when there is no such file or it cannot be read: every packed bake then counts as not baked)."""
    key = _key(path)
    if key is None:
        return {}
    with _lock:
        if key in _found:
            return _found[key]
        busy = _reading.get(key)
        if busy is None:
            _reading[key] = threading.Event()
    if busy is not None:  # another thread reads this very version: take its answer
        busy.wait(WAIT_S)
        with _lock:
            if key in _found:
                return _found[key]
    return _read(path, key)


def _read(path: str, key: Key) -> dict[str, set[int]]:
    global reads
    try:
        found = bakes.packed_bakes(Path(path))
    except Exception:  # an unreadable or half-written file
        found = {}
    with _lock:
        reads += 1
        _found[key] = found
        while len(_found) > KEEP:
            del _found[next(iter(_found))]
        done = _reading.pop(key, None)
    if done is not None:
        done.set()
    return found


def is_known(path: str) -> bool:
    """Whether the file's current version has been read."""
    key = _key(path)
    with _lock:
        return key is not None and key in _found


def prefetch(path: str) -> None:
    """Read the file's packed bakes in a worker thread unless this version is known or being read."""
    key = _key(path)
    if key is None:
        return
    with _lock:
        if key in _found or key in _reading:
            return
        _reading[key] = threading.Event()
    threading.Thread(target=_read, args=(path, key), name="cloud-render-saved-file", daemon=True).start()
