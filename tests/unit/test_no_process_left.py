"""No process outlives what started it, and a stand-in machine cannot power off this computer.

The boot script's dead-man timer, when `shutdown` fails as it does in a container, is
`(nohup sh -c 'sleep N; poweroff' &)`: a process re-parented to init that outlived whole test
runs here. These tests start such strays for real and check they are found and ended, and that
the names `shutdown`/`poweroff` on a stand-in machine's PATH only ever reach its shims.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from dev import process_sweep
from dev.batch_simulator import SHIMS as BATCH_SHIMS
from dev.simulator import SHIMS as EC2_SHIMS
from dev.standin_path import POWER_COMMANDS, machine_path
from tests import waiting

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

wait_for = functools.partial(waiting.wait_for, deadline_s=25.0)


def test_a_stray_of_this_run_is_found_by_its_mark_and_ended(tmp_path):
    """What the session fixture `_no_process_left` relies on: a process re-parented to init
    still carries the run's mark, is found, and is killed."""
    mark = os.environ[process_sweep.RUN_MARK]
    this_test = uuid.uuid4().hex  # so that only this test's stray is ended, not the run's servers
    env = {**os.environ, "STRAY_OF": this_test}
    subprocess.run(["sh", "-c", "(nohup sh -c 'sleep 600; true' >/dev/null 2>&1 &)"], env=env, check=True)
    mine = wait_for("the stray timer", lambda: process_sweep.marked("STRAY_OF", this_test))
    of_the_run = {p.pid for p in process_sweep.marked(process_sweep.RUN_MARK, mark)}
    assert {p.pid for p in mine} <= of_the_run
    assert any("sleep 600" in str(p) for p in mine)
    ended = process_sweep.end_marked("STRAY_OF", this_test)
    assert {p.pid for p in mine} <= {p.pid for p in ended}
    assert process_sweep.marked("STRAY_OF", this_test) == []


def _resolve(path: str, name: str) -> str:
    reply = subprocess.run(
        ["/bin/sh", "-c", f"command -v {name} || true"], env={"PATH": path}, capture_output=True, text=True
    )
    return reply.stdout.strip()


@pytest.mark.parametrize("shims", [EC2_SHIMS, BATCH_SHIMS], ids=["ec2", "batch"])
def test_power_commands_reach_the_shims_or_nothing(tmp_path, shims):
    """With its shims the machine's `poweroff` is the shim; with the shims' folder gone (a
    timer outliving its machine folder), the name resolves to nothing, never to the host's."""
    work = tmp_path / "sim"
    bin_dir = work / "machine" / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in shims.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    path = machine_path(bin_dir, work)
    assert _resolve(path, "poweroff") == str(bin_dir / "poweroff")
    assert _resolve(path, "shutdown") == str(bin_dir / "shutdown")
    assert _resolve(path, "sleep") and _resolve(path, "curl") != "/usr/bin/curl"  # a link, inside
    for name in sorted(shims):
        (bin_dir / name).unlink()
    for name in sorted(POWER_COMMANDS):
        assert _resolve(path, name) == "", name
    assert all(Path(folder).is_relative_to(work) for folder in path.split(os.pathsep))


def test_the_instance_shims_refuse_to_run_outside_their_machine_folder(tmp_path):
    machine = tmp_path / "i-0abc"
    (machine / "bin").mkdir(parents=True)
    elsewhere = tmp_path / "copied"
    elsewhere.mkdir()
    for folder in (machine / "bin", elsewhere):
        for name in ("shutdown", "poweroff"):
            (folder / name).write_text(EC2_SHIMS[name])
            (folder / name).chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "SIM_MACHINE": str(machine)}
    for name in ("shutdown", "poweroff"):
        refused = subprocess.run(
            [str(elsewhere / name), "-h", "now"], env=env, capture_output=True, text=True
        )
        assert refused.returncode == 1 and "refuses to run outside its machine folder" in refused.stderr
        assert not (machine / "power-off").exists()
        unset = subprocess.run([str(machine / "bin" / name), "-h", "now"], env={"PATH": "/usr/bin:/bin"})
        assert unset.returncode == 1 and not (machine / "power-off").exists()
    subprocess.run([str(machine / "bin" / "poweroff")], env=env, check=True)
    assert (machine / "power-off").read_text() == "poweroff\n"
