"""Run Blender's command line with the `bpy` module: `python blender_launcher.py -b FILE --python SCRIPT -- ARGS`.

When the render machine gets Blender from the official `bpy` wheel on PyPI there is no
`blender` binary, only the module; this launcher accepts the flags the supervisor passes to a
real Blender, so both kinds of Blender run the same worker script the same way. It also
stands in for `blender` inside the simulator's small release tarball.

Standard library plus bpy; Python 3.9 syntax.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback

USAGE = "usage: blender [-b] [FILE] [--python SCRIPT] [--python-exit-code N] [-- SCRIPT ARGS]"


def parse_args(argv: list[str]) -> tuple[str, list[str], int, list[str]]:
    """(blend file, scripts, exit code on a script error, args after "--") from Blender's flags."""
    blend = ""
    scripts: list[str] = []
    error_code = 0
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest = argv[i + 1 :]
            break
        if arg in ("-b", "--background", "--factory-startup", "-noaudio", "--disable-autoexec"):
            i += 1
            continue
        if arg in ("-P", "--python", "--python-exit-code", "-t", "--threads"):
            if i + 1 >= len(argv):
                raise SystemExit(f"{arg} needs a value\n{USAGE}")
            value = argv[i + 1]
            if arg in ("-P", "--python"):
                scripts.append(value)
            elif arg == "--python-exit-code":
                error_code = int(value)
            i += 2
            continue
        if arg.startswith("-"):
            raise SystemExit(f"unsupported flag {arg}\n{USAGE}")
        blend = arg
        i += 1
    return blend, scripts, error_code, rest


def main(argv: list[str]) -> int:
    blend, scripts, error_code, _rest = parse_args(argv[1:])
    import bpy  # imported late so that `--help`-style failures do not pay for it

    print(f"Blender {bpy.app.version_string} (bpy module, hash {bpy.app.build_hash.decode()})", flush=True)
    if blend:
        bpy.ops.wm.open_mainfile(filepath=os.path.abspath(blend))
    # Scripts see the same sys.argv as under Blender, so they find their arguments after "--".
    sys.argv = ["blender", *argv[1:]]
    for script in scripts:
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (1 if exc.code else 0)
            if code:
                return code
        except Exception:
            traceback.print_exc()
            sys.stdout.flush()
            return error_code or 1
    return 0


if __name__ == "__main__":
    sys.stdout.flush()
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    try:  # Blender's own C output, which os._exit would not flush
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass
    # Skip interpreter teardown: bpy's exit handlers add seconds and nothing is left to save.
    os._exit(code)
