"""What the artist does, end to end: the installed extension in real bpy, the emulated
account, the instance simulator rendering for real, and the frames back in Blender.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import bpy
import numpy as np
import pytest
import requests

from cloud.aws.session import client
from cloud.job.records import FINAL_STAGE_IDS
from cloud.machine.contract import spec_key
from cloud.pack.chunking import ChunkPolicy
from dev import addon_harness as harness
from dev.aws_emulator import emulator_url
from dev.emulator import emulated_account
from dev.simulator import InstanceSimulator
from tests.factories import job_fields

pytestmark = pytest.mark.slow

FINAL = FINAL_STAGE_IDS
CPU_TYPE = "c5.2xlarge"  # the simulator renders on the CPU


@pytest.fixture
def cloud(installed, request, tarball, tmp_path):
    """An empty emulated account, connected in the add-on's preferences, Blender cached in its bucket."""
    with emulated_account(moto_url=emulator_url(request)) as account:
        harness.connect(account.url)
        module = harness.addon()
        manager = module.addon.pump.manager()
        settings = manager.settings_for()
        bucket = manager.steps.ensure_bucket(settings, 14)
        manager.steps.stage_blender(settings, bucket, tarball[0].name.split("-")[1], *tarball)
        module.cloud.aws.compute.ensure_security_group(settings)
        # Bucket and firewall are made (Set Up's work for one machine): from here the artist
        # holds the daily Render policy alone.
        account.detach("setup")
        with InstanceSimulator(account.url, work_root=tmp_path / "machines") as simulator:
            account.simulator = simulator  # type: ignore[attr-defined]
            account.bucket = bucket  # type: ignore[attr-defined]
            yield account
        for runner_id in list(manager._runners):
            runner = manager.runner(runner_id)
            if runner is not None and runner.is_alive():
                runner.cancel()
                runner.join(30)
        harness.disconnect()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def view():
    return harness.addon().addon.job_view.view()


def wait_final(timeout: float = 240) -> float:
    return harness.drain_until(lambda: view().state in FINAL, timeout)


def render_to_the_end():  # type: ignore[no-untyped-def]
    """Render in Cloud and drain the pump until the job ends: its id and its record."""
    assert bpy.ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
    job_id = view().job_id
    wait_final()
    return job_id, harness.addon().addon.pump.manager().store.load(job_id)


def measured_and_went_on(job_id: str) -> None:
    """The job log says the job was priced from the machine's scout frames, then went on."""
    log = harness.addon().addon.job_view.log_lines(job_id)
    assert any("Measured on the machine" in line for line in log)
    assert any("Going on with every frame" in line for line in log)


def instance_states(account) -> list[str]:
    reservations = client(account.settings, "ec2").describe_instances()["Reservations"]
    return [i["State"]["Name"] for r in reservations for i in r["Instances"]]


def write_png(path: Path, color) -> None:  # type: ignore[no-untyped-def]
    """An 8x8 PNG of one colour, through a data-block that is removed again (leaves no trace)."""
    image = bpy.data.images.new("paint-" + path.stem, 8, 8)
    image.pixels.foreach_set(np.tile(np.array([*color, 1.0], dtype=np.float32), 64))
    image.filepath_raw = str(path)
    image.file_format = "PNG"
    image.save()
    bpy.data.images.remove(image)


def textured_scene(tmp_path: Path, frames: int = 2, size: int = 48, color=(0.9, 0.1, 0.1)) -> Path:
    texture = tmp_path / "project" / "textures" / "paint.png"
    texture.parent.mkdir(parents=True, exist_ok=True)
    write_png(texture, color)
    path = harness.make_scene(
        tmp_path / "project" / "shot.blend", frames=frames, size=size, samples=2, texture=texture
    )
    scene = bpy.context.scene
    scene.cloud_render.instance_type = CPU_TYPE
    bpy.ops.wm.save_mainfile()
    return path


def mean_colour(path: Path) -> np.ndarray:
    image = bpy.data.images.load(str(path), check_existing=False)
    pixels = np.empty(image.size[0] * image.size[1] * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    return pixels.reshape(-1, 4)[:, :3].mean(axis=0)


def test_render_in_cloud_brings_frames_into_the_image_editor(cloud, tmp_path):
    scene_path = textured_scene(tmp_path)
    before = sha256(scene_path)
    assert bpy.ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
    job_id = view().job_id
    longest = wait_final()
    record = harness.addon().addon.pump.manager().store.load(job_id)
    assert view().state == "done", (view().message, harness.addon().addon.job_view.log_lines(job_id)[-30:])
    assert sorted(record.frames_done) == [1, 2]

    # The frames are one image sequence in bpy.data.images, shown in an Image Editor.
    assert bpy.ops.cloud_render.show_frames(job_id=job_id) == {"FINISHED"}
    image = bpy.data.images[harness.addon().addon.job_view.image_name(job_id)]
    assert image.source == "SEQUENCE"
    assert image["cloud_render_frames"] == 2
    editors = [
        a for w in bpy.context.window_manager.windows for a in w.screen.areas if a.type == "IMAGE_EDITOR"
    ]
    assert editors and editors[0].spaces.active.image == image

    # The texture is in the cloud frames: the same colours as a local render of the same frame.
    frames = sorted(Path(record.output_dir).rglob("*.png"))
    assert len(frames) == 2
    scene = bpy.context.scene
    scene.render.filepath = str(tmp_path / "local" / "frame_0001")
    scene.frame_set(1)
    bpy.ops.render.render(write_still=True)
    local = mean_colour(tmp_path / "local" / "frame_0001.png")
    remote = mean_colour(frames[0])
    assert np.allclose(local, remote, atol=0.02), (local, remote)
    assert remote[0] > remote[1] + 0.05  # the red paint is visible, not a pink "missing" texture

    # The artist's file was never touched, the machine is gone, the log arrived.
    assert sha256(scene_path) == before
    assert set(instance_states(cloud)) == {"terminated"}
    log = harness.addon().addon.job_view.log_lines(job_id)
    assert any("Saved:" in line for line in log)
    assert longest < 0.5  # no drain call blocked the main thread for long

    # The job's page for a phone: served from the bucket as HTML through the link the panel opens.
    page = requests.get(record.page_url, timeout=30)
    assert page.ok and page.headers["Content-Type"].startswith("text/html")
    assert record.page_expires > time.time() + 6 * 86400  # IAM-user keys: 7 days
    assert any("page for this job on a phone" in line for line in log)


def add_hidden_grid(side: int):  # type: ignore[no-untyped-def]
    """An embedded mesh that makes the .blend a few MB (not rendered: it only adds weight)."""
    bpy.ops.mesh.primitive_grid_add(x_subdivisions=side, y_subdivisions=side + 1, size=4)
    grid = bpy.context.active_object
    rng = np.random.default_rng(11)
    co = np.empty(len(grid.data.vertices) * 3, dtype=np.float32)
    grid.data.vertices.foreach_get("co", co)
    co[2::3] = rng.random(len(grid.data.vertices), dtype=np.float32)
    grid.data.vertices.foreach_set("co", co)
    grid.hide_render = True
    return grid


def chunk_line(log: list[str]) -> tuple[int, int, float]:
    """(chunks sent, chunks in all, MB sent) from the job log's upload line."""
    line = next(line for line in log if "Large scene files in chunks:" in line)
    found = re.search(r"chunks: (\d+) of (\d+) sent \(([\d.]+) MB\)", line)
    assert found, line
    return int(found.group(1)), int(found.group(2)), float(found.group(3))


def test_resubmit_after_touching_one_texture_uploads_only_that_file(cloud, tmp_path, monkeypatch):
    """The scene's .blend travels as chunks (the threshold lowered to fit a few-MB scene): the
    machine rebuilds it and renders, and a resubmit after repainting the texture and moving one
    object sends the texture and a small share of the .blend's chunks (Blender 4.2 also writes
    every save of it differently)."""
    steps = harness.addon().addon.pump.manager().steps
    small = ChunkPolicy(threshold=1 << 20, min_size=8 << 10, avg_size=32 << 10, max_size=128 << 10)
    monkeypatch.setattr(steps, "chunking", small)
    scene_path = textured_scene(tmp_path, frames=1)
    grid = add_hidden_grid(160)
    bpy.ops.wm.save_mainfile(compress=False)  # a compressed .blend cannot be chunked usefully
    blend_mb = scene_path.stat().st_size / 1e6
    assert bpy.ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
    first = view().job_id
    wait_final()
    assert view().state == "done", harness.addon().addon.job_view.log_lines(first)[-20:]
    log = harness.addon().addon.job_view.log_lines(first)
    sent, total, _mb = chunk_line(log)
    assert sent == total > 8  # all new: the .blend went in chunks, not whole
    assert any("rebuilt from" in line and "chunks and verified" in line for line in log), log[-30:]
    # The artist repaints the texture in another program: only the file on disk changes.
    texture = scene_path.parent / "textures" / "paint.png"
    write_png(tmp_path / "repainted.png", (0.1, 0.8, 0.1))
    texture.write_bytes((tmp_path / "repainted.png").read_bytes())
    grid.location.x += 1.0  # and moves one object (unsaved: the submit saves a copy as it is)
    assert bpy.ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
    second = view().job_id
    wait_final()
    assert view().state == "done"
    log = harness.addon().addon.job_view.log_lines(second)
    uploaded = [line for line in log if line.startswith("[cloud-render] Uploaded")]
    # Only the changed texture travelled whole: the worker scripts and the rest were there, and
    # of the .blend (saved again, so not the same bytes on 4.2) only a few changed chunks.
    assert uploaded and " in 1 files " in uploaded[0], uploaded
    sent, total, mb = chunk_line(log)
    assert 1 <= sent < total / 4 and mb < 0.1 * blend_mb, (uploaded, blend_mb)
    # The same shot again: the second job's machine was told each frame's time as the first
    # job's machine measured it (kept in the first job's record; same samples and size: unscaled).
    measured = harness.addon().addon.pump.manager().store.load(first).frame_seconds
    assert list(measured) == ["1"] and measured["1"] > 0, measured
    # One frame has no order to choose: the time travels in the spec, and no line says "longest first".
    assert not any(line.startswith("[cloud-render] Frame times") for line in log), log[-30:]
    s3 = client(cloud.settings, "s3")
    spec = json.loads(s3.get_object(Bucket=cloud.bucket, Key=spec_key(second))["Body"].read())
    assert spec["frame_seconds"] == measured


def test_cancel_mid_render_stops_the_machine_and_keeps_frames(cloud, tmp_path):
    harness.make_scene(tmp_path / "project" / "long.blend", frames=6, size=200, samples=400)
    bpy.context.scene.cloud_render.instance_type = CPU_TYPE
    bpy.ops.wm.save_mainfile()
    assert bpy.ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
    job_id = view().job_id
    harness.drain_until(lambda: view().frames_done >= 1 or view().state in FINAL, 240)
    assert view().state not in FINAL, view().message
    assert bpy.ops.cloud_render.cancel(job_id=job_id) == {"FINISHED"}
    wait_final(120)
    record = harness.addon().addon.pump.manager().store.load(job_id)
    assert view().state == "cancelled"
    assert 1 <= len(record.frames_done) < 6
    assert all(Path(p).exists() for p in record.frame_files)
    harness.drain_until(lambda: set(instance_states(cloud)) <= {"terminated", "shutting-down"}, 30)


def test_reattach_after_blender_restarts(cloud, tmp_path):
    scene_path = harness.make_scene(tmp_path / "project" / "reopen.blend", frames=3, size=64, samples=24)
    bpy.context.scene.cloud_render.instance_type = CPU_TYPE
    bpy.ops.wm.save_mainfile()
    assert bpy.ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
    job_id = view().job_id
    module = harness.addon()
    # The machine is launched (its id saved in the job's record; "Starting machine" shows just
    # before the launch request, which on a busy computer can still be on its way) ...
    harness.drain_until(lambda: module.addon.pump.manager().store.load(job_id).launch_id, 120)
    # ... then Blender is closed: the add-on stops following, nothing in the cloud stops.
    module.addon.pump.manager().stop_all()
    module.addon.pump._manager = None
    module.addon.job_view.forget()
    assert "running" in instance_states(cloud) or "pending" in instance_states(cloud)

    # A new session opens the same file: the job is found again and its frames come in.
    bpy.ops.wm.open_mainfile(filepath=str(scene_path))
    assert module.addon.pump.manager().is_running(job_id)
    harness.drain_until(lambda: module.addon.pump.manager().store.load(job_id).is_final, 240)
    record = module.addon.pump.manager().store.load(job_id)
    assert record.stage == "done", record.message
    assert sorted(record.frames_done) == [1, 2, 3]
    assert next(item.job_id for item in module.addon.jobs_list.items()) == job_id


def test_cost_cap_terminates_the_machine_and_keeps_frames(cloud, tmp_path):
    """Blender was closed for hours while a long job ran; when the file is opened again the
    add-on finds the job past its cost cap, terminates the machine and keeps the frames."""
    scene_path = harness.make_scene(tmp_path / "project" / "capped.blend", frames=8, size=200, samples=400)
    settings = bpy.context.scene.cloud_render
    settings.instance_type = CPU_TYPE
    settings.max_cost = 1.0
    settings.max_hours = 3.0
    bpy.ops.wm.save_mainfile()
    assert bpy.ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
    job_id = view().job_id
    harness.drain_until(lambda: view().frames_done >= 1 or view().state in FINAL, 240)
    assert view().state not in FINAL, view().message
    module = harness.addon()
    manager = module.addon.pump.manager()
    manager.stop_all()
    module.addon.pump._manager = None
    # Three hours pass (the machine bills $0.34/h: $1.02 > the $1.00 cap) ...
    record = manager.store.load(job_id)
    record.launched_at -= 3 * 3600
    manager.store.save(record)
    # ... and the artist opens the file again.
    bpy.ops.wm.open_mainfile(filepath=str(scene_path))
    manager = module.addon.pump.manager()
    harness.drain_until(lambda: manager.store.load(job_id).is_final, 120)
    record = manager.store.load(job_id)
    assert record.stage == "capped", (record.stage, record.message)
    assert "cap" in record.message and "Max Cost" in record.action
    assert 1 <= len(record.frames_done) < 8
    assert all(Path(p).exists() for p in record.frame_files)
    harness.drain_until(lambda: set(instance_states(cloud)) <= {"terminated", "shutting-down"}, 30)


def test_quota_zero_is_explained_before_anything_is_launched(cloud, tmp_path):
    """A new account cannot start the machine: say why in plain words, offer the fix, launch nothing."""
    harness.make_scene(tmp_path / "project" / "quota.blend", frames=1)
    bpy.context.scene.cloud_render.instance_type = "g4dn.xlarge"
    bpy.context.scene.cycles.device = "GPU"
    bpy.ops.wm.save_mainfile()
    cloud.quotas.set_quota("L-DB2E81BA", 0)  # on-demand G and VT: 0 vCPUs, as on a new account
    assert bpy.ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
    wait_final(120)
    assert view().state == "failed"
    assert "quota" in view().message.lower()
    assert view().action.startswith("Request quota increase")
    assert instance_states(cloud) == []

    failure = view().message
    # The button under the failed job (the panel sets from_job): the answer goes under what
    # happened. A quota request is Set Up's work: with the daily Render policy alone the answer
    # says which policy to attach (a stolen daily key cannot raise the account's limits).
    assert bpy.ops.cloud_render.request_quota(from_job=True) == {"FINISHED"}
    harness.drain_until(lambda: "CloudRenderSetUp" in view().action, 30)
    assert view().message == failure
    assert not [r for r in cloud.quotas.seen if r.target.endswith("RequestServiceQuotaIncrease")]
    cloud.attach("setup")
    assert bpy.ops.cloud_render.request_quota(from_job=True) == {"FINISHED"}
    harness.drain_until(lambda: view().action.startswith("Quota request"), 30)
    assert view().message == failure
    requested = [r for r in cloud.quotas.seen if r.target.endswith("RequestServiceQuotaIncrease")]
    assert requested and requested[0].body["QuotaCode"] == "L-DB2E81BA"
    assert requested[0].body["DesiredValue"] >= 4


def test_no_secret_lands_in_any_file_blender_or_the_add_on_wrote(cloud, tmp_path):
    scene_path = harness.make_scene(tmp_path / "project" / "secret.blend", frames=1, size=32, samples=1)
    bpy.context.scene.cloud_render.instance_type = CPU_TYPE
    bpy.ops.wm.save_mainfile()
    assert bpy.ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
    job_id = view().job_id
    wait_final()
    assert view().state == "done"
    bpy.ops.wm.save_mainfile()
    bpy.ops.wm.save_userpref()
    secret = harness.TEST_SECRET.encode()
    roots = [Path(bpy.utils.resource_path("USER")), tmp_path]
    files = [p for root in roots for p in root.rglob("*") if p.is_file()]
    assert scene_path in files and any(p.name == "userpref.blend" for p in files)
    leaked = [str(p) for p in files if secret in p.read_bytes()]
    assert leaked == []
    # The job log and the job record in S3 are clean too.
    assert all(harness.TEST_SECRET not in line for line in harness.addon().addon.job_view.log_lines(job_id))
    s3 = client(cloud.settings, "s3")
    record = s3.get_object(Bucket=cloud.bucket, Key=f"jobs/{job_id}/job.json")["Body"].read()
    assert secret not in record


@pytest.mark.iam_managed_policies  # Set Up's Batch step attaches AWS's managed ECS policy
def test_setup_walks_a_new_account_to_ready_or_to_what_is_missing(cloud):
    prefs = harness.preferences()
    cloud.attach("setup")  # as the README says: the Set Up policy is attached for Set Up
    cloud.quotas.set_quota("L-DB2E81BA", 0)
    bpy.context.scene.cloud_render.instance_type = "g4dn.xlarge"
    view().setup_summary = ""  # an earlier test's summary must not pass for this one's
    assert bpy.ops.cloud_render.setup() == {"FINISHED"}
    harness.drain_until(lambda: bool(view().setup_summary), 60)
    summary = view().setup_summary
    assert summary.startswith("Not ready to render yet")
    assert "quota" in summary.lower() and "(CPU, " in summary  # a CPU machine it can run meanwhile
    # Request Quota Increase in Preferences answers there: the current job's words stay.
    view().message, view().action = "The last job's message.", "Its action."
    view().account_status = ""
    assert bpy.ops.cloud_render.request_quota() == {"FINISHED"}
    harness.drain_until(lambda: view().account_status.startswith("Quota request for "), 60)
    assert (view().message, view().action) == ("The last job's message.", "Its action.")
    # Pressed under a job that failed for want of quota, the answer goes under what happened.
    assert bpy.ops.cloud_render.request_quota(from_job=True) == {"FINISHED"}
    harness.drain_until(lambda: view().action.startswith("Quota request for "), 60)
    assert view().message == "The last job's message."

    cloud.quotas.set_quota("L-DB2E81BA", 16)
    view().setup_summary = ""
    assert bpy.ops.cloud_render.setup() == {"FINISHED"}
    harness.drain_until(lambda: bool(view().setup_summary), 60)
    assert view().setup_summary.splitlines()[0] == "Ready to render"
    assert prefs.default_region == "us-east-1"


def test_forgotten_machine_is_found_and_terminated_from_the_panel(cloud, tmp_path):
    # In a region the simulator does not watch, so the machine just sits there, billing. The
    # scene now renders in us-east-1; an earlier job of this add-on ran in us-west-2, so the
    # search covers that region too.
    west = cloud.settings.in_region("us-west-2")
    ec2 = client(west, "ec2")
    image = ec2.register_image(Name="forgotten", Architecture="x86_64", RootDeviceName="/dev/xvda")["ImageId"]
    bpy.context.scene.cloud_render.region = "us-east-1"
    records = harness.addon().cloud.job.records
    earlier = records.JobRecord(
        **job_fields(
            tmp_path / "old",
            job_id="20250101-000000-west00",
            blend_name="/elsewhere/old.blend",
            region="us-west-2",
            instance_type="g4dn.xlarge",
            stage="done",
        )
    )
    harness.addon().addon.pump.manager().store.save(earlier)
    forgotten = ec2.run_instances(
        ImageId=image,
        InstanceType="g4dn.xlarge",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [
                    {"Key": "cloud-render:job", "Value": "20250101-000000-lost00"},
                    {"Key": "cloud-render:managed", "Value": "true"},
                ],
            }
        ],
    )["Instances"][0]["InstanceId"]
    results = harness.addon().addon.panel_results
    results.forget()
    shown = results.results()
    view().message, view().action = "The last job's message.", "Its action."
    assert bpy.ops.cloud_render.find_orphans() == {"FINISHED"}
    harness.drain_until(lambda: bool(shown.forgotten), 30)
    engine = harness.addon().cloud.job.engine
    assert shown.forgotten == [
        engine.ForgottenMachine(engine.EngineName.EC2, "us-west-2", forgotten, "20250101-000000-lost00")
    ]
    # The search is said by the panel's red line and Jobs; the job's own words stay.
    assert (view().message, view().action) == ("The last job's message.", "Its action.")
    assert bpy.ops.cloud_render.terminate_orphan(launch_id=forgotten, region="us-west-2") == {"FINISHED"}
    harness.drain_until(lambda: not shown.forgotten, 30)
    # Said under the Jobs list, where the button is; the current job's words stay.
    assert view().jobs_status == f"Terminated {forgotten}."
    assert (view().message, view().action) == ("The last job's message.", "Its action.")
    state = ec2.describe_instances(InstanceIds=[forgotten])["Reservations"][0]["Instances"][0]["State"][
        "Name"
    ]
    assert state in {"shutting-down", "terminated"}


def test_quote_first_measures_on_the_machine_and_goes_on_under_the_cap(cloud, tmp_path):
    harness.make_scene(tmp_path / "project" / "quote.blend", frames=5, size=48, samples=8)
    settings = bpy.context.scene.cloud_render
    settings.instance_type = CPU_TYPE
    settings.quote_first = True
    settings.max_cost = 5.0
    bpy.ops.wm.save_mainfile()
    job_id, record = render_to_the_end()
    assert record.stage == "done", record.message
    assert sorted(record.frames_done) == [1, 2, 3, 4, 5]
    assert record.quote["under_cap"] is True and record.quote["seconds_per_frame"] > 0
    measured_and_went_on(job_id)


def test_a_network_cut_on_the_artists_side_only_pauses_following(cloud, tmp_path):
    from dev.relay import FlakyLink

    link = FlakyLink(cloud.url)
    harness.connect(link.url)  # the add-on reaches AWS through the artist's flaky network
    try:
        harness.make_scene(tmp_path / "project" / "flaky.blend", frames=6, size=160, samples=300)
        bpy.context.scene.cloud_render.instance_type = CPU_TYPE
        bpy.ops.wm.save_mainfile()
        assert bpy.ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
        job_id = view().job_id
        harness.drain_until(lambda: view().frames_done >= 1 or view().state in FINAL, 240)
        # Cut until the add-on says it lost contact (however long its retries take on a busy
        # machine), then the network comes back.
        link.cut(600)

        def lines() -> list[str]:
            return list(harness.addon().addon.job_view.log_lines(job_id))

        harness.drain_until(lambda: any("Lost contact with AWS" in line for line in lines()), 240)
        link.restore()
        wait_final()
        record = harness.addon().addon.pump.manager().store.load(job_id)
        log = harness.addon().addon.job_view.log_lines(job_id)
        assert record.stage == "done", (record.message, log[-25:])
        assert sorted(record.frames_done) == [1, 2, 3, 4, 5, 6]
        assert link.refused > 0
        assert any("Lost contact with AWS" in line for line in log), log[-40:]
        assert any("Back in contact" in line for line in log), log[-40:]
    finally:
        link.close()


def test_camera_switching_colour_management_and_file_names_come_back_as_set(cloud, tmp_path):
    """The farm must not change what the artist set up: marker camera switches, the view
    transform, look and exposure, the output name pattern. Each cloud frame must match a local
    render of the same frame."""
    harness.make_scene(tmp_path / "project" / "look.blend", frames=2, size=40, samples=4)
    scene = bpy.context.scene
    scene.render.resolution_y = 24
    scene.render.filepath = "//render/shot_v2_####"
    first = scene.camera
    second = bpy.data.objects.new("Side Camera", bpy.data.cameras.new("Side Camera"))
    scene.collection.objects.link(second)
    second.location = (0.0, -6.0, 1.0)
    second.rotation_euler = (1.45, 0.0, 0.0)
    scene.timeline_markers.new("Side", frame=2).camera = second
    scene.timeline_markers.new("Main", frame=1).camera = first
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.exposure = 1.5
    scene.view_settings.gamma = 0.8
    scene.cloud_render.instance_type = CPU_TYPE
    bpy.ops.wm.save_mainfile()
    _, record = render_to_the_end()
    assert record.stage == "done", record.message
    names = sorted(Path(p).name for p in record.frame_files)
    assert names == ["shot_v2_0001.png", "shot_v2_0002.png"]
    cloud_frames = {Path(p).name: Path(p) for p in record.frame_files}
    for frame in (1, 2):
        scene.frame_set(frame)
        scene.render.filepath = str(tmp_path / "local" / f"shot_v2_{frame:04d}")
        bpy.ops.render.render(write_still=True)
        local = mean_colour(tmp_path / "local" / f"shot_v2_{frame:04d}.png")
        remote = mean_colour(cloud_frames[f"shot_v2_{frame:04d}.png"])
        assert np.allclose(local, remote, atol=0.02), (frame, local, remote)
    # The two cameras see different pictures, so the switch really happened on the machine.
    one, two = (mean_colour(cloud_frames[f"shot_v2_000{n}.png"]) for n in (1, 2))
    assert not np.allclose(one, two, atol=0.01)


def test_movie_output_comes_back_as_frames_and_a_movie_blender_opens(cloud, tmp_path):
    """A 12-frame H.264/MP4 scene: frames as PNG, the movie encoded on the machine, Show Movie."""
    harness.make_scene(tmp_path / "movie" / "shot.blend", frames=12, size=32, samples=1)
    scene = bpy.context.scene
    scene.render.resolution_x = 48  # a movie size other than a square, even for H.264
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):  # Blender 5.0 and newer
        settings.media_type = "VIDEO"
    settings.file_format = "FFMPEG"
    scene.render.ffmpeg.format = "MPEG4"
    scene.render.ffmpeg.codec = "H264"
    scene.cloud_render.instance_type = CPU_TYPE
    scene.cloud_render.movie_frames = "OPEN_EXR"  # the artist's choice of frames for grading later
    bpy.ops.wm.save_mainfile()
    job_id, record = render_to_the_end()
    assert view().state == "done", (view().message, harness.addon().addon.job_view.log_lines(job_id)[-30:])
    assert sorted(record.frames_done) == list(range(1, 13))
    assert all(path.endswith(".exr") for path in record.frame_paths.values())
    assert "movie" in view().message
    movie = Path(record.movie_path)
    assert movie.is_file() and movie.parent == Path(record.output_dir) / "movie" and movie.suffix == ".mp4"

    assert bpy.ops.cloud_render.show_movie(job_id=job_id, open_as="CLIP") == {"FINISHED"}
    clip = bpy.data.movieclips[f"cloud-render {job_id}"]
    assert clip.frame_duration == 12 and tuple(clip.size) == (48, 32)
    assert bpy.ops.cloud_render.show_movie(job_id=job_id, open_as="SEQUENCER") == {"FINISHED"}
    editor = scene.sequence_editor
    every = editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all
    strip = next(s for s in every if s.type == "MOVIE")
    assert strip.frame_final_duration == 12

    # The movie made again on this computer from the downloaded frames (as after many machines).
    movie.unlink()
    store = harness.addon().addon.pump.manager().store
    record = store.load(job_id)
    record.movie_path = ""
    store.save(record)
    movie_view = harness.addon().addon.movie_view
    movie_view.forget(job_id)
    assert movie_view.can_make_here(job_id)
    assert bpy.ops.cloud_render.make_movie(job_id=job_id) == {"FINISHED"}
    # The record is saved on the background thread before the work returns, and the panel says
    # so at the next drain after it: wait for the words, not the record (under a 2-core load the
    # record was read between the two, and the panel still showed the job's own message).
    harness.drain_until(lambda: "Movie made here" in view().message, 120)
    made = Path(store.load(job_id).movie_path)
    assert made.parent == Path(record.output_dir) / "movie" and made.suffix == ".mp4"
    clip = bpy.data.movieclips.load(str(made), check_existing=False)
    assert clip.frame_duration == 12 and tuple(clip.size) == (48, 32)
