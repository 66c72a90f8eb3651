"""`make aws-check` against the emulated account: `dev/aws_check.py --emulated` as a process.

The check is for a real AWS account, which the suite cannot reach; here the same script runs
the same flow (an IAM user's Set Up, then the daily Render policy alone behind the strict
layer, the instance simulator rendering for real) and its output is read as a person would
paste it into an issue: every step timed, a RESULT line, no secret.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dev.aws_check import STEPS  # the step lines the check prints, in order

# The runs use the session's emulated account (through --moto-url) rather than a server of their
# own; Set Up's Batch step needs it to know AWS's managed policies.
pytestmark = [pytest.mark.slow, pytest.mark.iam_managed_policies]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "dev" / "aws_check.py"
# The least cap Cloud Render launches the cheapest catalog type with ($0.34/h: 15 minutes of boot
# allowance plus 5 of rendering): the check's default cap.
LAUNCHABLE_CAP = "0.12"
RESULT = re.compile(
    r"^RESULT ok=(true|false) seconds=([\d.]+) cost_usd=([\d.]+) instance_type=(\S+) region=(\S+)$",
    re.MULTILINE,
)
# An AWS secret access key: 40 base64 characters, standing alone.
SECRET_SHAPE = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])")


def run_check(
    tmp_path: Path, moto_url: str, *args: str, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """The script as `make aws-check` runs it, on the emulated account at `moto_url`, in a
    throwaway Blender user directory and temp dir."""
    env = {
        **os.environ,
        "BLENDER_USER_RESOURCES": str(tmp_path / "blender-user"),
        "TMPDIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--emulated",
            "--moto-url",
            moto_url,
            "--out",
            str(tmp_path / "out"),
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def output_of(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout + done.stderr


def assert_no_secret(out: str) -> None:
    """Neither the emulated artist's secret key nor the account's is printed: nothing shaped
    like a secret access key, and nothing key-like after the word "secret"."""
    found = SECRET_SHAPE.search(out)
    assert found is None, f"something shaped like a secret key was printed: {found.group(0)[:4]}..."
    assert not re.search(r"secret[^\n]{0,20}[A-Za-z0-9/+=]{20,}", out, re.IGNORECASE)


def test_one_frame_comes_back_timed_and_within_the_cap(tmp_path: Path, moto_url_managed: str) -> None:
    done = run_check(tmp_path, moto_url_managed)  # the default cap: the least the machine launches with
    out = output_of(done)
    assert done.returncode == 0, out
    assert f"Max Cost ${LAUNCHABLE_CAP}" in out, out
    for step in STEPS:
        assert re.search(rf"^{re.escape(step)}: \d+\.\d+  \S", out, re.MULTILINE), f"{step!r} missing:\n{out}"
    result = RESULT.search(out)
    assert result is not None, out
    ok, seconds, cost, instance_type, region = result.groups()
    assert ok == "true" and float(seconds) > 0
    assert float(cost) <= 0.05, out  # what the one frame cost, well within the check's $0.05
    assert instance_type == "c5.2xlarge" and region == "us-east-1"  # the cheapest CPU type (a tie, by name)
    assert "final stage: Done" in out and "machines left running: none" in out
    assert "Refused:" not in out and "Failed:" not in out
    frames = list((tmp_path / "out" / "scene" / "cloud_renders").rglob("*.png"))
    assert len(frames) == 1, out
    assert_no_secret(out)


def test_a_cap_that_cannot_be_met_is_refused_before_launch(tmp_path: Path, moto_url_managed: str) -> None:
    done = run_check(tmp_path, moto_url_managed, "--max-cost", "0.0001")
    out = output_of(done)
    assert done.returncode == 2, out
    assert "Refused:" in out and "Nothing was launched." in out
    assert "worst case is $0.03, over the check's cap of $0.0001" in out, out
    assert not re.search(r"^(upload|launch|boot to first frame|frame back): ", out, re.MULTILINE)
    assert "Cloud render" not in out  # Blender's report of a started job
    assert re.search(r"^RESULT ok=false .*cost_usd=0\.0000", out, re.MULTILINE)
    assert_no_secret(out)


def test_a_cap_under_the_launch_floor_is_refused_naming_the_cap_that_launches(
    tmp_path: Path, moto_url_managed: str
) -> None:
    """$0.05 is below what Cloud Render launches the cheapest type with (15 minutes of boot
    allowance and 5 of rendering): the check says so, and which --max-cost would run, before
    anything is launched."""
    done = run_check(tmp_path, moto_url_managed, "--max-cost", "0.05")
    out = output_of(done)
    assert done.returncode == 2, out
    assert f"Run again with --max-cost {LAUNCHABLE_CAP}" in out and "Nothing was launched." in out
    assert "Cloud render" not in out


def test_a_real_account_is_not_touched_without_yes(tmp_path: Path) -> None:
    """Without --emulated and --yes: what it would do and the most it may cost, then exit 2."""
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "blender-user"), "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--profile", "someone"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        "It costs at most the least Cloud Render launches" in done.stdout
        and "Run again with --yes" in done.stdout
    )
    assert "RESULT" not in done.stdout and not (tmp_path / "blender-user").exists()
