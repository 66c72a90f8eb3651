"""`make demo`: build the extension and bring up the emulated AWS account.

Prints each stage with its duration.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # dev tooling runs from a checkout, not from Blender

from dev.build import build  # noqa: E402
from tests.aws_emulator import moto_server  # noqa: E402


def stage(name: str, started: float) -> float:
    now = time.monotonic()
    print(f"[{now - started:6.1f}s] {name}")
    return now


def main() -> int:
    t0 = time.monotonic()
    zips = build()
    stage(f"built {len(zips)} extension zips into dist/", t0)
    with moto_server() as url:
        stage(f"emulated AWS is up at {url}", t0)
    stage("emulated AWS stopped", t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
