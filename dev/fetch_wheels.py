"""Fetch the wheels the extension bundles into vendor/, pinned by name, version and sha256.

Why a script and not committed wheels: the wheels are ~40 MB of third-party binaries; pinning
them by hash in dev/vendor.lock keeps the build reproducible without storing them in git.
Each file is fetched with `pip download` for the exact platform and Python tags in its name,
so one run on Linux fetches the macOS and Windows builds too.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "dev" / "vendor.lock"
VENDOR = ROOT / "vendor"


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """Map wheel filename -> expected sha256."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, digest = line.split()
        pins[name] = digest
    return pins


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pip_args_for(wheel: str) -> list[str]:
    """The `pip download` arguments that select exactly this wheel file."""
    stem = wheel[: -len(".whl")]
    parts = stem.split("-")
    dist, version = parts[0], parts[1]
    python_tag, abi_tag, platform_tag = parts[-3:]
    args = ["--no-deps", "--only-binary=:all:", f"{dist.replace('_', '-')}=={version}"]
    if platform_tag == "any":
        # Ask for the pure wheel explicitly; otherwise pip prefers a compiled one for this machine.
        return [*args, "--platform", "any", "--python-version", "3.11"]
    for platform in platform_tag.split("."):
        args += ["--platform", platform]
    py = python_tag.split(".")[0]
    return [*args, "--python-version", f"{py[2]}.{py[3:]}", "--implementation", "cp", "--abi", abi_tag]


def fetch(wheel: str, digest: str) -> None:
    target = VENDOR / wheel
    if target.exists() and sha256_of(target) == digest:
        return
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "-d", tmp]
        subprocess.run(cmd + pip_args_for(wheel), check=True, stdout=subprocess.DEVNULL)
        got = Path(tmp) / wheel
        if not got.exists():
            found = ", ".join(p.name for p in Path(tmp).iterdir())
            raise SystemExit(f"pip fetched {found or 'nothing'} instead of {wheel}")
        actual = sha256_of(got)
        if actual != digest:
            raise SystemExit(f"hash mismatch for {wheel}: expected {digest}, got {actual}")
        shutil.move(str(got), target)
    print(f"fetched {wheel}")


def main() -> int:
    VENDOR.mkdir(exist_ok=True)
    pins = read_lock()
    for wheel, digest in pins.items():
        fetch(wheel, digest)
    stale = [p for p in VENDOR.glob("*.whl") if p.name not in pins]
    for path in stale:
        path.unlink()
        print(f"removed unpinned {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
