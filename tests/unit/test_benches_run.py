"""The distribution benchmarks still run end to end and end with their RESULT line.

They are not timed here (bench/README.md: figures come from a quiet machine), but they go through
the product's whole path with a stand-in Blender, so a change to that path (a check on what lands,
a new step) can break them silently: the frames-checked-on-arrival change did, and the figures of
the next stop could not be measured. Their --small modes take seconds.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def run_bench(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / args[0]), *args[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def result(output: str) -> dict[str, float]:
    line = [line for line in output.splitlines() if line.startswith("RESULT ")][-1]
    return {key: float(value) for key, value in re.findall(r"(\w+)=([\d.]+)", line)}


def test_still_split_renders_merges_and_lands_its_still():
    figures = result(run_bench("still_split.py", "--small", "--sets", "spot", "--no-merge-timing"))
    assert 0 < figures["efficiency_n2"] <= 1.0, figures


def test_scaleout_lands_every_frame_on_two_machines():
    output = run_bench("scaleout.py", "--small", "--sets", "even", "--machines", "2")
    figures = result(output)
    assert 0 < figures["even_eff_n2"] <= 1.0, figures
    assert figures["even_twice_n2"] == 0, output[-2000:]
