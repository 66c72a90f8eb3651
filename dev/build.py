"""Build and validate the extension zips with Blender's own extension tool.

Blender's builder ships inside the bpy wheel; using it (not a zip of our own) means the
package is exactly what "Install from Disk" expects, one zip per platform (--split-platforms)
because cryptography and cffi are compiled per platform.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"


def blender_ext_cli() -> Path:
    """Locate blender_ext.py inside the installed bpy module."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        raise SystemExit("bpy is not installed in this environment: run 'make venv' first")
    found = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise SystemExit("Blender's extension CLI was not found in the bpy module")
    return found[-1]


def run_cli(*args: str) -> str:
    proc = subprocess.run([sys.executable, str(blender_ext_cli()), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"blender_ext {args[0]} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def ensure_wheels() -> None:
    """Fetch the pinned wheels vendor/ lacks (dev/fetch_wheels.py, hashes checked), so a build
    after a change of dev/vendor.lock does not fail where `make wheels` was not run again."""
    sys.path.insert(0, str(ROOT / "dev"))
    try:
        import fetch_wheels
    finally:
        sys.path.pop(0)
    if any(not (fetch_wheels.VENDOR / name).is_file() for name in fetch_wheels.read_lock()):
        fetch_wheels.main()


def build(out_dir: Path = DIST) -> list[Path]:
    """Build one zip per platform into out_dir, validate each, and return their paths."""
    ensure_wheels()
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("cloud_render-*.zip"):
        old.unlink()
    run_cli("build", "--source-dir", str(ROOT), "--output-dir", str(out_dir), "--split-platforms")
    zips = sorted(out_dir.glob("cloud_render-*.zip"))
    if not zips:
        raise SystemExit("the build produced no zip")
    for path in zips:
        run_cli("validate", str(path))
    return zips


def zip_for_this_platform(zips: list[Path]) -> Path:
    """The zip a user on this machine would install."""
    import platform

    machine = {"x86_64": "x64", "amd64": "x64", "arm64": "arm64", "aarch64": "arm64"}[
        platform.machine().lower()
    ]
    system = {"linux": "linux", "darwin": "macos", "windows": "windows"}[platform.system().lower()]
    suffix = f"{system}_{machine}"
    for path in zips:
        if path.stem.endswith(suffix):
            return path
    raise SystemExit(f"no zip for {suffix} among {[p.name for p in zips]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DIST)
    args = parser.parse_args()
    for path in build(args.out):
        print(
            f"built and validated {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}"
            f" ({path.stat().st_size / 1e6:.1f} MB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
