"""The render worker end to end: emulated S3/EC2, the instance simulator, real bpy renders.

Each test stages a job the way the add-on will (inputs and the worker archive under cas/, the
Blender tarball in the bucket's cache, a WorkerSpec, presigned URLs), launches a tagged instance
with plain `run_instances`, and checks what the machine left in the bucket.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cloud.aws import job_mail, storage, uploads
from cloud.aws.presign import presign_get, presign_list, presign_list_pages, presign_post
from cloud.aws.session import client
from cloud.job.user_data import build_user_data
from cloud.machine import contract, worker_archive
from cloud.machine.contract import (
    BlenderSource,
    InputFile,
    WorkerSpec,
    blender_cache_key,
    cas_key,
    control_key,
    frame_marks_prefix,
    frames_prefix,
    logs_prefix,
    out_prefix,
    rendered_mark,
    spec_key,
)
from dev.simulator import Faults, InstanceSimulator, make_blender_tarball
from tests.factories import CHECKER_TEXTURE
from tests.mail_delivery import deliver

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "cloud-render-e2e"
SIZE = 64
FRAMES = [1, 2, 3]

SCENE_SCRIPT = (
    CHECKER_TEXTURE
    + r"""
import sys, os
import bpy
out, heavy = sys.argv[-2], int(sys.argv[-1])
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
image = checker_texture(out)
bpy.ops.mesh.primitive_cube_add()
obj = bpy.context.active_object
if heavy:  # evaluated again for every frame: slower frames without a bigger file
    subsurf = obj.modifiers.new("subsurf", "SUBSURF")
    subsurf.levels = subsurf.render_levels = heavy
    obj.modifiers.new("wave", "WAVE")
mat = bpy.data.materials.new("checker")
mat.use_nodes = True
tex = mat.node_tree.nodes.new("ShaderNodeTexImage")
tex.image = image
mat.node_tree.links.new(tex.outputs["Color"], mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"])
obj.data.materials.append(mat)
obj.rotation_euler = (0, 0, 0)
obj.keyframe_insert("rotation_euler", frame=1)
obj.rotation_euler = (0, 0, 1.5)
obj.keyframe_insert("rotation_euler", frame=3)
cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
scene.collection.objects.link(cam)
cam.location = (5, -5, 4)
cam.rotation_euler = (1.1, 0, 0.78)
scene.camera = cam
sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
scene.collection.objects.link(sun)
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 4
scene.cycles.use_denoising = False
scene.render.resolution_x = scene.render.resolution_y = 64
scene.render.resolution_percentage = 100
scene.render.image_settings.file_format = "PNG"
scene.frame_start, scene.frame_end = 1, 3
scene.render.filepath = "//render/shot_"
# A File Output node writing a pass next to each frame ("pass_Image0001.png").
if hasattr(scene, "compositing_node_group"):  # Blender 5.x compositor
    tree = bpy.data.node_groups.new("Compositing", "CompositorNodeTree")
    scene.compositing_node_group = tree
    layers = tree.nodes.new("CompositorNodeRLayers")
    file_output = tree.nodes.new("CompositorNodeOutputFile")
    file_output.directory = "//passes/"
    file_output.file_name = "pass_"
    file_output.format.media_type = "IMAGE"
    file_output.format.file_format = "PNG"
    file_output.file_output_items.new("RGBA", "Image")
    group_output = tree.nodes.new("NodeGroupOutput")
    tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    tree.links.new(layers.outputs["Image"], group_output.inputs[0])
else:  # Blender 4.x
    scene.use_nodes = True
    tree = scene.node_tree
    layers = tree.nodes["Render Layers"]
    file_output = tree.nodes.new("CompositorNodeOutputFile")
    file_output.base_path = "//passes/"
    file_output.format.file_format = "PNG"
    file_output.file_slots[0].path = "pass_Image"
tree.links.new(layers.outputs["Image"], file_output.inputs[0])
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(out, "scene.blend"), relative_remap=True)
"""
)


def jpeg_size(data: bytes) -> tuple[int, int]:
    """Width and height from a baseline or progressive JPEG's frame header (SOF0-SOF2)."""
    assert data[:3] == b"\xff\xd8\xff" and data[-2:] == b"\xff\xd9", "not a whole JPEG"
    pos = 2
    while pos + 9 < len(data):
        assert data[pos] == 0xFF, f"no marker at {pos}"
        marker, (length,) = data[pos + 1], struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in (0xC0, 0xC1, 0xC2):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    raise AssertionError("no frame header")


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG after checking every chunk's CRC and inflating the image data."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, size = 8, b"", (0, 0)
    bits = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            width, height, bits, color = struct.unpack(">IIBB", body[:10])
            size, channels = (width, height), {0: 1, 2: 3, 4: 2, 6: 4}[color]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
        if kind == b"IEND":
            break
    raw = zlib.decompress(idat)
    assert len(raw) == size[1] * (1 + size[0] * channels * bits // 8)
    return size


@dataclass
class Staged:
    """A job staged in the emulated bucket, with what a test needs to launch and inspect it."""

    job_id: str
    user_data: str
    s3: object
    ec2: object
    inputs: dict[str, Path] = field(default_factory=dict)

    def get(self, name: str) -> bytes | None:
        try:
            return self.s3.get_object(Bucket=BUCKET, Key=out_prefix(self.job_id) + name)["Body"].read()  # type: ignore[attr-defined]
        except self.s3.exceptions.NoSuchKey:  # type: ignore[attr-defined]
            return None

    def get_json(self, name: str) -> dict | None:
        body = self.get(name)
        return json.loads(body) if body is not None else None

    def keys(self, prefix: str) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)  # type: ignore[attr-defined]
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def frames(self) -> dict[str, bytes]:
        prefix = frames_prefix(self.job_id)
        return {k[len(prefix) :]: self.get("frames/" + k[len(prefix) :]) or b"" for k in self.keys(prefix)}

    def log_text(self) -> str:
        return "".join(
            self.s3.get_object(Bucket=BUCKET, Key=k)["Body"].read().decode()  # type: ignore[attr-defined]
            for k in self.keys(logs_prefix(self.job_id))
        )

    def launch(self) -> str:
        images = self.ec2.describe_images()["Images"]  # type: ignore[attr-defined]
        reservation = self.ec2.run_instances(  # type: ignore[attr-defined]
            ImageId=images[0]["ImageId"],
            InstanceType="g5.xlarge",
            MinCount=1,
            MaxCount=1,
            UserData=self.user_data,
            InstanceInitiatedShutdownBehavior="terminate",
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": "cloud-render:job", "Value": self.job_id}]}
            ],
        )
        return str(reservation["Instances"][0]["InstanceId"])

    def state(self, instance_id: str) -> str:
        found = self.ec2.describe_instances(InstanceIds=[instance_id])  # type: ignore[attr-defined]
        return str(found["Reservations"][0]["Instances"][0]["State"]["Name"])


def env_for(python: str) -> dict[str, str]:
    """The environment for `python`: another interpreter has its own bpy, so the suite's
    PYTHONPATH (Blender 4.2's under `make test-bpy42`) stays out of it."""
    if python == sys.executable:
        return dict(os.environ)
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def make_scene(dest: Path, heavy: int, python: str = sys.executable) -> dict[str, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [python, "-c", SCENE_SCRIPT, str(dest), str(heavy)],
        check=True,
        capture_output=True,
        env=env_for(python),
    )
    return {"scene.blend": dest / "scene.blend", "textures/checker.png": dest / "textures" / "checker.png"}


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_scene(tmp_path_factory.mktemp("scene"), heavy=0)


@pytest.fixture(scope="module")
def heavy_scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Frames slower (a subdivided, deforming mesh: about 0.3 s each) so that a fault lands mid-job."""
    return make_scene(tmp_path_factory.mktemp("heavy"), heavy=7)


def stage(
    aws,
    files: dict[str, Path],
    tarball: tuple[Path, str],
    job_id: str = "job-1",
    uploader: bool = False,
    **overrides,
) -> Staged:
    # S3 as the artist (the links are signed as the product signs them); EC2 the harness's own.
    s3, ec2 = client(aws.settings, "s3"), client(aws.admin, "ec2")
    if BUCKET not in [b["Name"] for b in client(aws.admin, "s3").list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    inputs = []
    if uploader:  # as the add-on sends them: compressed where that pays (cloud/pack/compression.py)
        triples = [(local, uploads.hash_file(local), local.stat().st_size) for local in files.values()]
        sent = uploads.upload_files(aws.settings, BUCKET, triples)
        listed = [(path, sha, size) for path, (_local, sha, size) in zip(files, triples, strict=True)]
        inputs = storage.presign_inputs(aws.settings, BUCKET, listed, 3600, encodings=sent.encodings)
    for path, local in files.items() if not uploader else ():
        data = local.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        s3.put_object(Bucket=BUCKET, Key=cas_key(digest), Body=data)
        inputs.append(InputFile(path, presign_get(s3, BUCKET, cas_key(digest), 3600), digest, len(data)))
    archive = worker_archive()  # the machine files, as the add-on uploads them
    worker_sha = hashlib.sha256(archive).hexdigest()
    s3.put_object(Bucket=BUCKET, Key=cas_key(worker_sha), Body=archive)
    worker_url = presign_get(s3, BUCKET, cas_key(worker_sha), 3600)
    path, sha = tarball
    version = path.name.split("-")[1]
    cache = blender_cache_key(version, path.name)
    s3.put_object(Bucket=BUCKET, Key=cache, Body=path.read_bytes())
    post = presign_post(s3, BUCKET, out_prefix(job_id), 3600, 1 << 30)
    spec = WorkerSpec(
        job_id=job_id,
        blender_version=version,
        blend_path="scene.blend",
        frames=list(FRAMES),
        inputs=inputs,
        upload_url=post["url"],
        upload_fields=post["fields"],
        upload_prefix=out_prefix(job_id),
        list_url=presign_list(s3, BUCKET, frames_prefix(job_id), 3600),
        blender_sources=[BlenderSource("bucket", version, presign_get(s3, BUCKET, cache, 3600), sha)],
        device="CPU",
        heartbeat_seconds=1.0,
        log_chunk_seconds=0.5,
        max_seconds=600,
    )
    for name, value in overrides.items():
        setattr(spec, name, value)
    if "mark_list_urls" not in overrides:  # pages of 2 marks: a stand-in for S3's 1000 keys a listing
        marks = [rendered_mark(f) for f in spec.frames]
        spec.mark_list_urls = presign_list_pages(s3, BUCKET, frame_marks_prefix(job_id), marks, 3600, page=2)
    s3.put_object(Bucket=BUCKET, Key=spec_key(job_id), Body=spec.to_json().encode())
    spec_url = presign_get(s3, BUCKET, spec_key(job_id), 3600)
    user_data = build_user_data(spec_url, worker_url, worker_sha, 10, post)
    return Staged(job_id, user_data, s3, ec2, dict(files))


class StatusRecorder:
    """Polls status.json while a job runs, as the add-on does, and keeps what it saw."""

    def __init__(self, job: Staged) -> None:
        self.job = job
        self.seen: list[dict] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.15):
            status = self.job.get_json("status.json")
            if status and (not self.seen or status != self.seen[-1]):
                self.seen.append(status)

    def close(self) -> list[dict]:
        self.stop.set()
        self.thread.join()
        return self.seen


def run_job(sim: InstanceSimulator, job: Staged, timeout: float = 120) -> tuple[str, list[dict]]:
    recorder = StatusRecorder(job)
    instance_id = job.launch()
    try:
        machine = sim.wait_terminated(instance_id, timeout)
    finally:
        seen = recorder.close()
    assert machine.terminated.is_set()
    assert job.state(instance_id) == "terminated"
    assert not (machine.dir / "halted").exists(), "the machine used halt, which keeps billing"
    return instance_id, seen


def assert_frames(job: Staged, names: list[str]) -> None:
    frames = job.frames()
    assert sorted(frames) == sorted(names)
    for name, data in frames.items():
        assert png_size(data) == (SIZE, SIZE), name


ALL = [f"render/shot_{f:04d}.png" for f in FRAMES]


def test_renders_every_frame_and_terminates(aws, scene, tarball, tmp_path):
    job = stage(aws, scene, tarball, notice=NOTICE)
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim") as sim:
        _, seen = run_job(sim, job)
    assert_frames(job, ALL)
    done = job.get_json("done.json")
    assert done is not None and done["frames_done"] == FRAMES
    assert done["device"] == "CPU" and done["blender_build"].startswith(tarball[0].name.split("-")[1])
    assert job.get("error.json") is None
    # Each frame's render time, as the add-on reads it (through the contract) for the next job.
    seconds = contract.parse_frame_seconds(done["frame_seconds"], "done", set(FRAMES), len(FRAMES))
    assert sorted(seconds) == FRAMES and all(0.001 <= s < 600 for s in seconds.values())
    passes = job.keys(out_prefix(job.job_id) + "files/")
    assert [k.rsplit("/", 1)[-1] for k in passes] == [f"pass_Image{f:04d}.png" for f in FRAMES]
    assert all("/files/File Output/passes/" in k for k in passes)
    assert png_size(job.get(passes[0][len(out_prefix(job.job_id)) :]) or b"") == (SIZE, SIZE)
    # The latest frame, small, for the job's phone page: a JPEG Blender wrote after each frame.
    preview = job.get(contract.PREVIEW_NAME) or b""
    assert jpeg_size(preview) == (SIZE, SIZE) and len(preview) <= contract.MAX_PREVIEW_BYTES

    # Status: states in the documented order, rewritten with an increasing sequence number.
    states = [s["state"] for s in seen]
    order = ["booting", "installing", "downloading", "rendering", "done"]
    assert [s for s in order if s in states] == [s for s in dict.fromkeys(states)], states
    assert states[-1] == "done"
    seqs = [s["seq"] for s in seen if "seq" in s]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert seen[-1]["frames_done"] == FRAMES and seen[-1]["device"] == "CPU"
    assert contract.parse_status(seen[-1], FRAMES).frame_seconds == seconds

    # Log: numbered chunks from 000000 without gaps, boot script first, frames in order.
    keys = job.keys(logs_prefix(job.job_id))
    assert [k.rsplit("/", 1)[-1] for k in keys] == [f"{i:06d}.log" for i in range(len(keys))]
    log = job.log_text()
    marks = ["Cloud Render boot script", "supervisor started", "tarball verified", "render device: CPU"]
    marks += [f"frame {f} uploaded" for f in FRAMES] + ["final state: done"]
    positions = [log.find(m) for m in marks]
    assert -1 not in positions and positions == sorted(positions), dict(zip(marks, positions, strict=True))
    assert "Sample 4/4" in log
    # The e-mail notice (cloud/machine/notice.py), written once the job's end is.
    notices = job.keys(out_prefix(job.job_id) + "notice/")
    assert len(notices) == 1, notices
    words = r"forest\.blend_is_done_3_of_3_frames_" + DOLLARS + "_frames_kept_14_days"
    assert re.fullmatch(f"jobs/{job.job_id}/out/notice/done/{words}", notices[0]), notices
    assert log.find("e-mail notice written") < log.find("final state: done")


def test_a_scene_sent_compressed_is_inflated_checked_and_rendered(aws, scene, tarball, tmp_path):
    """The add-on's uploader sends the .blend zlib-compressed (the PNG as it is); the machine
    fetches each in the form the spec names, inflates, checks and renders every frame."""
    plain = tmp_path / "plain" / "scene.blend"  # the fixture's scene is saved zstd-compressed
    plain.parent.mkdir()
    resave = (
        "import sys, bpy; bpy.ops.wm.open_mainfile(filepath=sys.argv[-2]); "
        "bpy.ops.wm.save_as_mainfile(filepath=sys.argv[-1], compress=False, copy=True, relative_remap=False)"
    )
    subprocess.run(
        [sys.executable, "-c", resave, str(scene["scene.blend"]), str(plain)], check=True, capture_output=True
    )
    assert plain.read_bytes().startswith(b"BLENDER")
    files = {**scene, "scene.blend": plain}
    job = stage(aws, files, tarball, job_id="job-zlib", uploader=True)
    spec = json.loads(job.s3.get_object(Bucket=BUCKET, Key=spec_key("job-zlib"))["Body"].read())
    forms = {item["path"]: item.get("encoding", "") for item in spec["inputs"]}
    assert forms == {"scene.blend": "zlib", "textures/checker.png": ""}
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim") as sim:
        run_job(sim, job)
    assert_frames(job, ALL)
    assert job.get("error.json") is None and job.get_json("done.json") is not None


@pytest.mark.parametrize("venv", [".venv-bpy42", ".venv-bpy5x"])
def test_other_blender_releases(aws, tmp_path, venv):
    """The same worker with Blender 4.2 LTS (4.x log format, 4.x compositor) and the newest 5.x."""
    python = ROOT / venv / "bin" / "python"
    assert python.exists(), f"{python} missing: run 'make venv-compat' (make test does)"
    version = subprocess.run(
        [str(python), "-c", "import bpy; print(bpy.app.version_string.split()[0])"],
        check=True,
        capture_output=True,
        text=True,
        env=env_for(str(python)),
    ).stdout.split()[-1]
    files = make_scene(tmp_path / "scene", heavy=0, python=str(python))
    job = stage(aws, files, make_blender_tarball(version, tmp_path / "blender", str(python)))
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim") as sim:
        _, seen = run_job(sim, job)
    assert_frames(job, ALL)
    done = job.get_json("done.json")
    assert done is not None and done["blender_build"].startswith(version), job.get_json("error.json")
    passes = job.keys(out_prefix(job.job_id) + "files/")
    assert [k.rsplit("/", 1)[-1] for k in passes] == [f"pass_Image{f:04d}.png" for f in FRAMES]
    assert "Sample 4/4" in job.log_text() and seen[-1]["state"] == "done"
    assert jpeg_size(job.get(contract.PREVIEW_NAME) or b"") == (SIZE, SIZE)  # the page's preview


def test_relaunch_renders_only_missing_frames(aws, scene, tarball, tmp_path):
    job = stage(aws, scene, tarball)
    # An earlier run left frame 2 in the bucket.
    job.s3.put_object(Bucket=BUCKET, Key=frames_prefix(job.job_id) + ALL[1], Body=b"earlier run")  # type: ignore[attr-defined]
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim") as sim:
        run_job(sim, job)
    done = job.get_json("done.json")
    assert done is not None and done["frames_done"] == [1, 3] and done["frames_skipped"] == [2]
    assert job.frames()[ALL[1]] == b"earlier run"


LONG = list(range(1, 9))  # fault tests: enough frames that a fault lands mid-job
LONG_NAMES = [f"render/shot_{f:04d}.png" for f in LONG]


def relaunch_finishes(sim: InstanceSimulator, job: Staged, frames: list[int], kept: list[int]) -> None:
    """A second machine for the same job renders exactly the frames the first one did not keep."""
    sim.faults = Faults()
    run_job(sim, job)
    done = job.get_json("done.json")
    assert done is not None, job.get_json("error.json")
    assert sorted(done["frames_skipped"]) == kept
    assert sorted(done["frames_done"]) == [f for f in frames if f not in kept]
    assert_frames(job, [f"render/shot_{f:04d}.png" for f in frames])


@pytest.mark.parametrize(
    ("fault", "kind", "words"),
    [
        (Faults(kill_render=True), "killed", "SIGKILL"),
        (Faults(crash_render=True), "crash", "SIGSEGV"),
    ],
)
def test_render_killed_or_crashed_mid_frame(aws, heavy_scene, tarball, tmp_path, fault, kind, words):
    job = stage(aws, heavy_scene, tarball, job_id="long-kill", frames=LONG)
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim", faults=fault) as sim:
        run_job(sim, job)
        error = job.get_json("error.json")
        assert error is not None and error["kind"] == kind, error
        assert words in error["cause"] and f"frame {error['frame']}" in error["cause"]
        assert error["cause"].startswith("Blender") and error["cause"].count(".") == 1
        assert error["last_lines"] and len(error["last_lines"]) <= 50
        kept = sorted(error["frames_done"])
        assert 1 <= len(kept) < len(LONG) and error["frame"] not in kept
        assert sorted(job.frames()) == [f"render/shot_{f:04d}.png" for f in kept]
        assert job.get_json("status.json")["state"] == "failed"
        assert job.get("done.json") is None
        relaunch_finishes(sim, job, LONG, kept)


def test_spot_interruption_uploads_what_is_done(aws, heavy_scene, tarball, tmp_path):
    # No listing of the frames themselves: the relaunch finds what is uploaded through the pages
    # of the marks alone (4 pages of 2 for 8 frames).
    job = stage(
        aws, heavy_scene, tarball, job_id="long-spot", frames=LONG, frame_order="preview_first", list_url=""
    )
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim", faults=Faults(spot_notice=True)) as sim:
        run_job(sim, job)
        interrupted = job.get_json("interrupted.json")
        assert interrupted is not None, job.get_json("error.json")
        assert interrupted["reason"] == "spot" and interrupted["notice"]["action"] == "terminate"
        kept = sorted(interrupted["frames_done"])
        assert set(kept) <= {int(f) for f in interrupted["frame_seconds"]}  # each frame it rendered
        assert 1 <= len(kept) < len(LONG)
        assert sorted(kept + interrupted["frames_left"]) == LONG
        # Preview first: every 8th frame, then every 4th, every 2nd, then the rest.
        assert "rendering 8 frames in this order: [1, 5, 3, 7, 2, 4, 6, 8]" in job.log_text()
        assert interrupted["frames_left"] == [f for f in [1, 5, 3, 7, 2, 4, 6, 8] if f not in kept]
        assert sorted(job.frames()) == [f"render/shot_{f:04d}.png" for f in kept]
        assert job.get_json("status.json")["state"] == "interrupted"
        assert job.get("error.json") is None
        relaunch_finishes(sim, job, LONG, kept)


def test_network_cut_is_ridden_out(aws, heavy_scene, tarball, tmp_path):
    job = stage(aws, heavy_scene, tarball, job_id="long-net", frames=LONG)
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim", faults=Faults(cut_network_s=4)) as sim:
        instance_id, _ = run_job(sim, job)
        assert sim.machines[instance_id].proxy.refused > 0
    done = job.get_json("done.json")
    assert done is not None, job.get_json("error.json")
    assert done["frames_done"] == LONG
    assert_frames(job, LONG_NAMES)
    assert "failed (" in job.log_text() and "retry 1/" in job.log_text()


def test_missing_texture_fails_clearly(aws, scene, tarball, tmp_path):
    job = stage(aws, scene, tarball)
    with InstanceSimulator(
        aws.url, work_root=tmp_path / "sim", faults=Faults(missing_input="textures/checker.png")
    ) as sim:
        run_job(sim, job)
        error = job.get_json("error.json")
        assert error is not None and error["kind"] == "missing_file", error
        assert error["cause"] == "The file textures/checker.png is missing from the bucket."
        assert error["frames_done"] == [] and job.frames() == {}
        # The artist's add-on uploads the file again; a relaunch renders everything.
        data = scene["textures/checker.png"].read_bytes()
        job.s3.put_object(Bucket=BUCKET, Key=cas_key(hashlib.sha256(data).hexdigest()), Body=data)  # type: ignore[attr-defined]
        relaunch_finishes(sim, job, FRAMES, [])


def test_gpu_job_without_gpu_fails_at_first_frame(aws, scene, tarball, tmp_path):
    job = stage(aws, scene, tarball, device="GPU")
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim") as sim:
        run_job(sim, job)
    error = job.get_json("error.json")
    assert error is not None and error["kind"] == "no_gpu", error
    assert "no usable GPU" in error["cause"]
    assert job.frames() == {}
    assert "render device: CPU" in job.log_text()


def test_blender_source_order_and_cache(aws, scene, tarball, tmp_path):
    """A cache tarball that fails its checksum is refused; the next source is used and handed back."""
    path, sha = tarball
    version = path.name.split("-")[1]
    s3 = client(aws.settings, "s3")
    sources = [
        BlenderSource(
            "bucket", version, presign_get(s3, BUCKET, blender_cache_key(version, path.name), 3600), "0" * 64
        ),
        BlenderSource("url", version, presign_get(s3, BUCKET, f"staging/{path.name}", 3600), sha),
    ]
    wanted = version.rsplit(".", 1)[0] + ".99"  # a patch release that does not exist
    job = stage(
        aws,
        scene,
        tarball,
        job_id="sources",
        blender_sources=sources,
        blender_version=wanted,
        samples=1,
        resolution_percentage=50,
        file_format="BMP",
    )
    s3.put_object(Bucket=BUCKET, Key=f"staging/{path.name}", Body=path.read_bytes())
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim") as sim:
        run_job(sim, job)
    done = job.get_json("done.json")
    assert done is not None, job.get_json("error.json")
    assert done["blender_build"].startswith(version)
    # The job's overrides: BMP at half size with one sample; the file names keep the scene's pattern.
    frames = job.frames()
    assert sorted(frames) == [f"render/shot_{f:04d}.bmp" for f in FRAMES]
    for data in frames.values():
        assert data[:2] == b"BM" and struct.unpack("<ii", data[18:26]) == (SIZE // 2, SIZE // 2)
    log = job.log_text()
    assert "Sample 1/1" in log and "Sample 4/4" not in log
    assert "Blender from bucket not usable" in log and "checksum mismatch" in log
    assert f"Blender {wanted} is not available; using {version}" in log
    assert job.get(f"blender-cache/{path.name}") == path.read_bytes()
    # No checksum of the machine's own: the add-on keeps the build only if its official one matches.
    assert job.get(f"blender-cache/{path.name}.sha256") is None


def crafted_tarball(version: str, dest: Path, outside: Path) -> tuple[Path, str]:
    """A "Blender release" that also tries to write outside its folder: `../escape`, an absolute
    path, a symlink to /etc and a character device."""
    dest.mkdir(parents=True, exist_ok=True)
    top = f"blender-{version}-linux-x64"
    path = dest / f"{top}.tar.xz"
    with tarfile.open(path, "w:xz") as archive:
        for name, kind, data, link in [
            (f"{top}/blender", tarfile.REGTYPE, b"#!/bin/sh\nexit 0\n", ""),
            ("../escape", tarfile.REGTYPE, b"escaped", ""),
            (str(outside / "absolute"), tarfile.REGTYPE, b"absolute", ""),
            (f"{top}/etc", tarfile.SYMTYPE, b"", "/etc"),
            (f"{top}/null", tarfile.CHRTYPE, b"", ""),
        ]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size, info.mode = kind, link, len(data), 0o755
            info.devmajor, info.devminor = (1, 3) if kind == tarfile.CHRTYPE else (0, 0)
            archive.addfile(info, io.BytesIO(data) if data else None)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_unsafe_blender_archive_is_refused(aws, scene, tarball, tmp_path):
    """The build's checksum matches what the spec names, yet its archive would write outside its
    folder: the machine refuses it whole, says so in error.json, and renders nothing."""
    version = tarball[0].name.split("-")[1]
    outside = tmp_path / "outside"
    outside.mkdir()
    path, sha = crafted_tarball(version, tmp_path / "crafted", outside)
    s3 = client(aws.settings, "s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=f"staging/{path.name}", Body=path.read_bytes())
    url = presign_get(s3, BUCKET, f"staging/{path.name}", 3600)
    job = stage(
        aws, scene, tarball, job_id="unsafe", blender_sources=[BlenderSource("bucket", version, url, sha)]
    )
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim") as sim:
        instance_id, _ = run_job(sim, job)
        machine = sim.machines[instance_id]
    error = job.get_json("error.json")
    assert error is not None and error["kind"] == "unsafe_archive", error
    assert error["cause"].startswith(
        f"The Blender archive {path.name} was refused: '../escape' is a path outside"
    )
    assert "is an absolute path" in error["cause"] and "is a link to an absolute path" in error["cause"]
    assert "Nothing of it was unpacked." in error["cause"] and error["frames_done"] == []
    assert list(outside.iterdir()) == [] and not (machine.root / "run" / "escape").exists()
    assert not (machine.root / "run" / "blender").exists() and job.frames() == {}
    assert "Blender from bucket not usable" in job.log_text()


def test_refused_uploads_stop_the_render_and_power_off(aws, heavy_scene, tarball, tmp_path):
    """Mid-job, the sign-in behind the job's links expires (S3's clock passes the POST policy's
    expiration): every upload is refused, so the machine stops Blender instead of rendering the
    remaining frames until its cap, keeps its error on its own disk, and powers off."""
    frames = list(range(1, 25))
    job = stage(aws, heavy_scene, tarball, job_id="long-expired", frames=frames)
    fault = Faults(after_frames=1, clock_jump_s=3 * 3600)  # the links were signed for one hour
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim", faults=fault) as sim:
        instance_id, _ = run_job(sim, job)
        machine = sim.machines[instance_id]
    assert machine.fault_fired == "clock_jump" and machine.proxy.denied
    assert set(machine.proxy.denied) <= {
        "Invalid according to Policy: Policy expired.",
        "Request has expired",
    }
    run = machine.root / "run"
    error = json.loads((run / "error.json").read_text())
    assert error["kind"] == "credentials_expired", error
    assert error["cause"].startswith(
        "The bucket refused the render machine's uploads (HTTP 403 Policy expired)"
    )
    log = (run / "render.log").read_text()
    saved = len(re.findall(r"Saved: '[^']*shot_\d{4}\.png'", log))
    assert 1 <= saved < len(frames) - 4, (
        f"{saved} of {len(frames)} frames rendered after uploads were refused"
    )
    assert "the bucket refuses every upload (HTTP 403 Policy expired)" in log and "stopping Blender" in log
    assert "final state: failed; powering off" in log and (machine.dir / "power-off").exists()
    # What reached the bucket is what was uploaded before the links expired; nothing after.
    assert job.get("error.json") is None and job.get("done.json") is None
    assert sorted(job.frames()) in ([], ["render/shot_0001.png"])  # the links expired at frame 1


def test_texture_left_out_of_the_pack_stops_before_rendering(aws, scene, tarball, tmp_path):
    """A texture the pack missed is named in error.json before a frame is rendered with it pink."""
    job = stage(aws, {"scene.blend": scene["scene.blend"]}, tarball)
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim") as sim:
        run_job(sim, job)
    error = job.get_json("error.json")
    assert error is not None and error["kind"] == "missing_file", error
    assert error["cause"] == "Files the scene needs are missing: //textures/checker.png"
    assert job.frames() == {} and error["frames_left"] == FRAMES


def test_terminated_from_outside_stops_the_machine(aws, heavy_scene, tarball, tmp_path):
    """Cancel: the add-on terminates the instance; the machine stops at once, uploaded frames stay."""
    job = stage(aws, heavy_scene, tarball, job_id="long-cancel", frames=LONG)
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim") as sim:
        instance_id = job.launch()
        deadline = time.monotonic() + 60
        while not job.frames() and time.monotonic() < deadline:
            time.sleep(0.1)
        job.ec2.terminate_instances(InstanceIds=[instance_id])  # type: ignore[attr-defined]
        machine = sim.wait_terminated(instance_id, 30)
        assert "terminated through the EC2 API" in machine.console.read_text()
        kept = sorted(int(name[-8:-4]) for name in job.frames())
        time.sleep(1.5)  # nothing arrives after the machine is gone
        assert sorted(int(name[-8:-4]) for name in job.frames()) == kept
        assert 1 <= len(kept) < len(LONG) and job.get("done.json") is None
        relaunch_finishes(sim, job, LONG, kept)


QUOTED = [1, 2, 3, 4, 5]
SCOUTS = [1, 3, 5]  # first, middle, last


def stage_quoted(aws, scene, tarball, job_id: str, **overrides) -> Staged:  # type: ignore[no-untyped-def]
    go_url = presign_get(client(aws.settings, "s3"), BUCKET, control_key(job_id, "go.json"), 3600)
    return stage(
        aws, scene, tarball, job_id=job_id, frames=QUOTED, scout_frames=SCOUTS, go_url=go_url, **overrides
    )


def run_quoted(sim: InstanceSimulator, job: Staged, go: bool | None) -> tuple[dict, list[str], list[dict]]:
    """Plays the add-on: waits for quote.json, then answers in control/go.json (or never, if None)."""
    recorder = StatusRecorder(job)
    instance_id = job.launch()
    try:
        deadline = time.monotonic() + 60
        while (quote := job.get_json("quote.json")) is None and time.monotonic() < deadline:
            assert job.get("error.json") is None, job.get_json("error.json")
            time.sleep(0.1)
        assert quote is not None, "no quote.json within 60 s"
        frames_at_quote = sorted(job.frames())
        if go is not None:
            job.s3.put_object(  # type: ignore[attr-defined]
                Bucket=BUCKET, Key=control_key(job.job_id, "go.json"), Body=json.dumps({"go": go}).encode()
            )
        machine = sim.wait_terminated(instance_id, 60)
    finally:
        seen = recorder.close()
    assert machine.terminated.is_set() and job.state(instance_id) == "terminated"
    assert not (machine.dir / "halted").exists(), "the machine used halt, which keeps billing"
    return quote, frames_at_quote, seen


def names(frames: list[int]) -> list[str]:
    return [f"render/shot_{f:04d}.png" for f in frames]


def test_quote_first_then_go_renders_the_rest(aws, scene, tarball, tmp_path):
    job = stage_quoted(aws, scene, tarball, "quote-go")
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim") as sim:
        quote, at_quote, seen = run_quoted(sim, job, go=True)
    assert quote["scout_frames"] == SCOUTS and quote["frames_total"] == len(QUOTED)
    assert quote["frames_left"] == [2, 4] and quote["seconds_per_frame"] > 0
    assert at_quote == names(SCOUTS), "the scouts are uploaded before the quote"
    assert_frames(job, names(QUOTED))
    done = job.get_json("done.json")
    assert done is not None, job.get_json("error.json")
    assert done["frames_done"] == QUOTED and done["frames_skipped"] == []
    assert job.get("interrupted.json") is None and job.get("error.json") is None
    states = [s["state"] for s in seen]
    runs = [state for i, state in enumerate(states) if i == 0 or states[i - 1] != state]
    assert runs[-4:] == ["rendering", "quoting", "rendering", "done"], runs
    quoting = [s for s in seen if s["state"] == "quoting"]
    assert len({s["seq"] for s in quoting}) >= 2, "the heartbeat keeps going while the machine waits"
    log = job.log_text()
    marks = ["rendering 3 frames in this order: [1, 3, 5]", "go-ahead received"]
    marks += ["rendering 2 frames in this order: [2, 4]", "final state: done"]
    positions = [log.find(m) for m in marks]
    assert -1 not in positions and positions == sorted(positions), dict(zip(marks, positions, strict=True))


NOTICE = {"label": "forest.blend", "usd_per_hour": 0.526, "keep_days": 14}
DOLLARS = r"about_\d+\.\d\d_USD"


def test_quote_first_then_stop_keeps_the_scouts(aws, scene, tarball, tmp_path):
    job = stage_quoted(aws, scene, tarball, "quote-stop", notice=NOTICE)
    job_mail.ensure_job_mail(aws.settings, BUCKET, "artist@example.com")  # as Set Up does
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim") as sim:
        quote, _, seen = run_quoted(sim, job, go=False)
    assert quote["scout_frames"] == SCOUTS
    assert_frames(job, names(SCOUTS))
    interrupted = job.get_json("interrupted.json")
    assert interrupted is not None, job.get_json("error.json")
    assert interrupted["reason"] == "stopped_after_quote"
    assert interrupted["frames_done"] == SCOUTS and interrupted["frames_left"] == [2, 4]
    assert job.get("done.json") is None and job.get("error.json") is None
    assert "quoting" in [s["state"] for s in seen] and seen[-1]["state"] == "interrupted"

    # The e-mails AWS sends with Blender closed: one while the quote waits, one at the end.
    mails = deliver(aws.admin, BUCKET)
    assert [(m.rule, m.to) for m in mails] == [
        ("cloud-render-notice-cancelled", ("artist@example.com",)),  # keys in order: cancelled < quote
        ("cloud-render-notice-quote", ("artist@example.com",)),
    ]
    prefix = f"jobs/{job.job_id}/out/notice/"
    cancelled, waiting = (m.text.splitlines()[1] for m in mails)
    assert re.fullmatch(
        f'"{prefix}cancelled/forest.blend_was_stopped_after_the_quote_3_of_5_frames_done_{DOLLARS}"',
        cancelled,
    ), cancelled
    pace = rf"{quote['seconds_per_frame']:.1f}".replace(".", r"\.")
    assert re.fullmatch(
        f'"{prefix}quote/forest.blend_waits_for_your_answer_{pace}_s_per_frame_2_frames_left_{DOLLARS}_more"',
        waiting,
    ), waiting
    assert "e-mail notice written: notice/quote/" in job.log_text()


def test_quote_without_answer_stops_after_the_wait(aws, scene, tarball, tmp_path):
    # The machine's Python, with the quote wait cut to 3 s (the simulator passes no environment through).
    python = tmp_path / "python-quote-wait"
    python.write_text(f'#!/bin/sh\nCLOUD_RENDER_QUOTE_WAIT_S=3 exec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    job = stage_quoted(aws, scene, tarball, "quote-silent")
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim", system_python=str(python)) as sim:
        run_quoted(sim, job, go=None)
    interrupted = job.get_json("interrupted.json")
    assert interrupted is not None, job.get_json("error.json")
    assert interrupted["reason"] == "no_answer_to_quote"
    assert interrupted["frames_done"] == SCOUTS and interrupted["frames_left"] == [2, 4]
    assert_frames(job, names(SCOUTS))
    assert "waiting up to 3 s for the go-ahead" in job.log_text()
