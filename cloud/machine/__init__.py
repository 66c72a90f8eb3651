"""Everything that ships to the render machine, as it lies in this folder.

On the machine the files sit in `<root>/worker/machine/` and the boot script runs
`python3 -m machine` (`__main__.py`), so the modules import each other relatively there exactly as
they do inside the add-on (as `cloud.machine`). Standard library only, Python 3.9+; the two
scripts that run inside Blender (`BLENDER_SCRIPTS`) may import bpy (and Blender's addon_utils and gpu) as well. `bootstrap.sh` is
not shipped: it is the template of the user-data itself (`cloud/job/user_data.py`). Nor is
this file: the add-on's side of the folder (what to ship, and how), while on the machine `machine/`
is a namespace package (PEP 420), which runs (`-m`) and imports relatively the same.

The files travel as one archive (`worker_archive`) behind one presigned link and its SHA-256 in
the user-data, which EC2 bounds at 16 KB: a link per file no longer fit once there were 13.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Mapping

HERE = os.path.dirname(os.path.abspath(__file__))
BOOT_TEMPLATE = os.path.join(HERE, "bootstrap.sh")
BLENDER_SCRIPTS = (
    "render_frames.py",
    "blender_launcher.py",
    "prepare_blender.py",
    "assemble_movie.py",
    "still_parts.py",
)


def shipped_files() -> dict[str, str]:
    """Machine file name -> local path: every Python file of this folder but this one."""
    return {
        name: os.path.join(HERE, name)
        for name in sorted(os.listdir(HERE))
        if name.endswith(".py") and name != "__init__.py"
    }


WORKER_FILES = shipped_files()


def worker_archive(files: Mapping[str, str] = WORKER_FILES) -> bytes:
    """The machine files as one gzipped tar, the same bytes for the same files.

    Names sorted, owner, mode and times fixed, gzip's own timestamp 0: the archive is
    content-addressed (uploaded once under its SHA-256, like any input), so a file touched but not
    changed must not make a new one. (Another zlib may compress differently: one more upload.)
    """
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            with open(files[name], "rb") as handle:
                data = handle.read()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, compresslevel=9, mtime=0) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()
