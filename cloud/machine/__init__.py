"""Everything that ships to the render machine, as it lies in this folder.

On the machine the files sit in `<root>/worker/machine/` and the boot script runs
`python3 -m machine` (`__main__.py`), so the modules import each other relatively there exactly as
they do inside the add-on (as `cloud.machine`). Standard library only, Python 3.9+; the two
scripts that run inside Blender (`BLENDER_SCRIPTS`) may import bpy (and Blender's addon_utils and gpu) as well. `bootstrap.sh` is
not downloaded: it is the template of the user-data itself (`cloud/job/user_data.py`). Nor is
this file: the add-on's side of the folder (what to ship), while on the machine `machine/` is a
namespace package (PEP 420), which runs (`-m`) and imports relatively the same; every file
shipped is one presigned link in user-data that EC2 bounds at 16 KB.
"""

from __future__ import annotations

import os

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
