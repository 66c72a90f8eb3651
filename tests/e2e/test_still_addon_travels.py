"""A still on many machines with the artist's add-on: the add-on travels with the pack, and each
machine's part steps enable it (with the artist's preference) before they render, as a shot's
frames do (tests/e2e/test_farm_equals_local.py, whose scene, add-on and local render are used
here): the cube's emission is driven by the add-on's function, white-ish with it, red without.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud.aws.session import client
from cloud.job import proof_frame
from cloud.job.events import LogLines
from cloud.machine import contract, fingerprint
from cloud.pack.addons import EnabledAddon, plan_addons
from dev.batch_job import start_job
from tests.e2e import test_batch_job as batch_e2e
from tests.e2e.test_batch_job import finished, nothing_left
from tests.e2e.test_farm_equals_local import SCALE, local  # noqa: F401 (local is a fixture)

pytestmark = pytest.mark.slow

world, sim = batch_e2e.world, batch_e2e.sim  # the emulated account with Batch, fixtures

TOTAL = 32  # two parts of 16 (still_plan.MIN_PART_SAMPLES) on two machines


def environments(sim, record) -> dict[int, contract.EnvironmentReport]:  # type: ignore[no-untyped-def]
    """What each machine reported of its Blender (out/machines/<i>/environment.json), by index."""
    s3 = client(sim.settings, "s3")
    found = {}
    for index in range(record.machines):
        key = contract.out_prefix(record.job_id) + contract.machine_folder(index) + "environment.json"
        try:
            body = s3.get_object(Bucket=record.bucket, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            continue
        found[index] = contract.parse_environment(json.loads(body))
    return found


def test_a_stills_parts_render_with_the_addon_that_travelled(sim, local, tmp_path):  # noqa: F811
    plan = plan_addons(
        [EnabledAddon("cr_tint", str(local["folder"]), "1.2.0", {"scale": SCALE})],
        {"cr_tint"},
        "bl_ext.user_default.cloud_render",
    )
    assert [a.module for a in plan.travel] == ["cr_tint"]
    job = start_job(
        sim,
        local["scene"]["scene.blend"],
        [1],
        2,
        tmp_path / "work",
        still_samples=TOTAL,
        addons=[a.spec_entry() for a in plan.travel],
        addon_files={rel: str(path) for rel, path in plan.files.items()},
        auto_run=True,
        fingerprint=local["fingerprint"],
    )
    finished(job)
    rec = job.record
    lines = [line for e in job.events.drain(2.0, 100_000) if isinstance(e, LogLines) for line in e.lines]
    assert rec.stage == "done", (rec.message, rec.action, lines[-60:])
    assert (rec.cloud_engine, rec.still_parts) == ("still", [[0, 16], [16, 16]])

    # Every machine that rendered a part installed and enabled the add-on first, and found its
    # Blender as the artist's: said in its log once, and in its environment.json.
    rendered = [line for line in lines if "rendering part" in line]
    assert len(rendered) == 2, "\n".join(lines[-60:])
    reports = environments(sim, rec)
    assert reports, "no machine reported its environment"
    for index, report in reports.items():
        assert (report.installed, report.failed) == (["cr_tint 1.2.0"], []), (index, report)
        assert not fingerprint.stops(report.differences), (index, report.differences)
    installed = [line for line in lines if "add-on installed and enabled: cr_tint 1.2.0" in line]
    assert len(installed) == len(reports), "\n".join(lines[-60:])

    # The merged, finished still has the add-on's colour at the artist's preference: it matches
    # the local render, and neither the render without the add-on nor the one at its default.
    cloud = proof_frame.read_png(Path(rec.frame_paths["1"]).read_bytes())
    result = proof_frame.compare(proof_frame.read_png(local["png"].read_bytes()), cloud)
    assert result.match, result.words()
    for other in ("without", "default_scale"):
        assert not proof_frame.compare(proof_frame.read_png(local[other].read_bytes()), cloud).match, other
    nothing_left(sim, job)
