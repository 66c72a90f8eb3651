"""The PATH a stand-in machine runs with: its shims, then links to this computer's commands
without the ones that power a computer off.

The boot script calls `shutdown` and `poweroff` by name, as it must on a real machine. With the
host's folders on PATH, a shim that is missing (its folder removed while a dead-man timer still
sleeps) would let the name resolve to the host's own. Here every PATH folder lies inside the
simulator's work folder, and none of them holds a link to a power command: when the shims are
gone, the name resolves to nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

HOST_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
POWER_COMMANDS = frozenset(
    {"shutdown", "poweroff", "halt", "reboot", "systemctl", "init", "telinit", "kexec", "systemd", "busybox"}
)


def host_tools(folder: Path) -> Path:
    """`folder` filled with a link to each of this computer's commands (the first of a name on
    the usual PATH), except POWER_COMMANDS; made once, reused after."""
    folder = Path(folder)
    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for directory in HOST_DIRS:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            target = Path(directory, name)
            link = folder / name
            if name in POWER_COMMANDS or link.is_symlink() or not os.access(target, os.X_OK):
                continue
            if target.is_dir():
                continue
            os.symlink(target, link)
    done.touch()
    return folder


def machine_path(shims: Path, work_root: Path) -> str:
    """The PATH of a stand-in machine whose shims are in `shims`."""
    return f"{shims}{os.pathsep}{host_tools(Path(work_root) / 'host-tools')}"
