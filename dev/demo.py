"""`make demo`: a real render of a sample scene, end to end, through the emulated AWS.

What an artist does, done by script: install the built extension into a fresh Blender (the bpy
module), connect an account (here the emulated one), open a scene, press "Render in Cloud".
The instance simulator boots the launched machine and renders the frames for real (Cycles,
CPU); the add-on follows the job, downloads the frames and loads them into Blender. Leaves the
frames and a contact sheet in demo-output/, printing each stage with its duration.

`--scene eevee` (`make demo SCENE=eevee`): the scene renders with EEVEE on a GPU machine type;
the simulator's software OpenGL (Mesa) stands in for the GPU's and says so in the log.
`--scene video`: 12 frames with H.264/MP4 output and a sound strip: the machine renders PNG
frames, then encodes the movie with the scene's settings and sound; demo-output/ gets both.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import struct
import sys
import time
import wave
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "demo-output"
sys.path.insert(0, str(ROOT))  # dev tooling runs from a checkout, not from Blender

from cloud.job.records import FINAL_STAGE_IDS  # noqa: E402
from dev.demo_common import cache_blender, isolate, set_up_as_artist  # noqa: E402

isolate()  # before bpy is imported

from dev import addon_harness as harness  # noqa: E402
from dev.build import build, zip_for_this_platform  # noqa: E402
from dev.emulator import emulated_account  # noqa: E402
from dev.simulator import InstanceSimulator  # noqa: E402

FRAMES = 4
SIZE = 96
SAMPLES = 8
INSTANCE_TYPE = "c5.2xlarge"  # the simulator renders on the CPU, so ask for a CPU machine
GPU_INSTANCE_TYPE = "g4dn.xlarge"  # EEVEE needs a GPU machine type (the simulator's is Mesa)
VIDEO_FRAMES = 12


class Clock:
    def __init__(self) -> None:
        self.start = self.last = time.monotonic()

    def stage(self, text: str) -> None:
        now = time.monotonic()
        print(f"[{now - self.start:6.1f}s | +{now - self.last:5.1f}s] {text}", flush=True)
        self.last = now


def contact_sheet(frames: list[Path], dest: Path) -> None:
    """All frames side by side in one PNG, made with Blender's own image API."""
    import bpy
    import numpy as np

    images = [bpy.data.images.load(str(path)) for path in frames]
    width, height = images[0].size
    sheet = np.zeros((height, width * len(images), 4), dtype=np.float32)
    for index, image in enumerate(images):
        pixels = np.empty(width * height * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
        sheet[:, index * width : (index + 1) * width, :] = pixels.reshape(height, width, 4)
    out = bpy.data.images.new("contact sheet", width * len(images), height, alpha=True)
    out.pixels.foreach_set(sheet.ravel())
    out.filepath_raw = str(dest)
    out.file_format = "PNG"
    out.save()


def tone(path: Path, seconds: float = 1.0, rate: int = 48000) -> None:
    """A quiet sine tone as a WAV file: the video demo's sound strip."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        samples = (int(6000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(int(seconds * rate)))
        out.writeframes(b"".join(struct.pack("<h", v) for v in samples))


def dress_scene(kind: str, project: Path) -> str:
    """Turn the sample Cycles scene into the demo's kind; returns the machine type to ask for."""
    import bpy

    scene = bpy.context.scene
    if kind == "eevee":
        scene.render.engine = "BLENDER_EEVEE"
        scene.eevee.taa_render_samples = SAMPLES
        os.environ["CLOUD_RENDER_SOFTWARE_GPU"] = "1"  # read by the simulator: Mesa plays the GPU
        return GPU_INSTANCE_TYPE
    if kind == "video":
        scene.render.resolution_y = SIZE * 2 // 3  # a movie is rarely square; even for H.264
        settings = scene.render.image_settings
        if hasattr(settings, "media_type"):
            settings.media_type = "VIDEO"
        settings.file_format = "FFMPEG"
        scene.render.ffmpeg.format = "MPEG4"
        scene.render.ffmpeg.codec = "H264"
        scene.render.ffmpeg.audio_codec = "AAC"
        tone(project / "tone.wav")
        editor = scene.sequence_editor_create()
        strips = editor.strips if hasattr(editor, "strips") else editor.sequences
        strips.new_sound("tone", "//tone.wav", 1, 1)
    return INSTANCE_TYPE


def save_job_page(module, settings, record) -> None:  # type: ignore[no-untyped-def]
    """The job's page for a phone: the live one is served from the bucket (checked here); the
    copy left in demo-output/ carries the machine's last documents, as it fetches nothing."""
    phone_page, contract = module.cloud.job.phone_page, module.cloud.machine.contract
    storage = module.cloud.aws.storage
    reply = requests.get(record.page_url, timeout=30)
    assert reply.ok and reply.headers["Content-Type"].startswith("text/html"), reply.headers
    out = contract.out_prefix(record.job_id)

    def document(name: str) -> dict | None:
        body = storage.get_bytes(settings, record.bucket, out + name, contract.MAX_JSON_BYTES)
        return json.loads(body) if body else None

    status = document("status.json")
    ends = {name: document(name + ".json") for name in phone_page.END_DOCUMENTS}
    # The latest frame, small, as the machine wrote it (the live page fetches it the same way).
    preview = storage.get_bytes(
        settings, record.bucket, contract.preview_key(record.job_id), contract.MAX_PREVIEW_BYTES
    )
    assert preview and preview[:3] == b"\xff\xd8\xff", "the machine wrote no preview for the job's page"
    html = phone_page.snapshot_page(
        record, [status] if status else [], {k: v for k, v in ends.items() if v}, time.time(), preview
    )
    (OUT / "job_page.html").write_text(html)


def main() -> int:
    parser = argparse.ArgumentParser(description="Cloud Render demo through the emulated AWS")
    parser.add_argument("--scene", choices=["cycles", "eevee", "video"], default="cycles")
    kind = parser.parse_args().scene
    frames_wanted = VIDEO_FRAMES if kind == "video" else FRAMES
    clock = Clock()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    zip_path = zip_for_this_platform(build())
    clock.stage(f"built and validated the extension: {zip_path.name}")

    import bpy

    module = harness.install(zip_path)
    clock.stage(f"installed and enabled it in Blender {bpy.app.version_string} (bpy module)")

    with emulated_account(log_path=OUT / "emulator.log") as account:
        clock.stage(f"emulated AWS account is up at {account.url}")
        project = OUT / "project"
        scene_path = harness.make_scene(
            project / "demo_shot.blend", frames=frames_wanted, size=SIZE, samples=SAMPLES
        )
        scene = bpy.context.scene
        scene.cloud_render.instance_type = dress_scene(kind, project)
        scene.cloud_render.max_cost = 2.0
        scene.cloud_render.max_hours = 1.0
        bpy.ops.wm.save_mainfile()
        clock.stage(
            f"sample scene ({kind}, {scene.render.engine}): {scene_path.relative_to(ROOT)} ({frames_wanted} frames, "
            f"{scene.render.resolution_x}x{scene.render.resolution_y}, {SAMPLES} samples)"
        )
        summary = set_up_as_artist(account, module)
        manager = module.addon.pump.manager()
        settings = manager.settings_for()
        identity = module.cloud.aws.credentials.verify(settings)
        clock.stage(
            f"IAM user {identity.user_name} of account {identity.account}, keys stored encrypted; Set Up: "
            f"{summary.splitlines()[0]}; Set Up policy detached, the daily Render policy alone from here"
        )

        # What the first boot of a real machine leaves behind: a Blender build in the bucket's cache.
        bucket, version = cache_blender(manager, settings)
        clock.stage(f"bucket {bucket} ready, Blender {version} cached in it")

        print("\n" + module.addon.submit.confirmation_text(bpy.context) + "\n")
        with InstanceSimulator(account.url, work_root=OUT / "machines") as _simulator:
            assert bpy.ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
            view = module.addon.job_view.view()
            job_id = view.job_id
            seen_stage = ""

            def finished() -> bool:
                nonlocal seen_stage
                if view.state != seen_stage:
                    seen_stage = view.state
                    clock.stage(f"{view.state}: {view.message}")
                return view.state in FINAL_STAGE_IDS

            longest = harness.drain_until(finished, timeout=600)
        record = manager.store.load(job_id)
        if record.stage != "done":
            print("\n".join(module.addon.job_view.log_lines(job_id)[-40:]))
            print(f"\nThe job ended {record.stage}: {record.message} {record.action}")
            return 1
        bpy.ops.cloud_render.show_frames(job_id=job_id)
        image = bpy.data.images[module.addon.job_view.image_name(job_id)]
        frames = sorted(Path(record.output_dir).rglob("*.png"))
        clock.stage(f"{len(frames)} frames downloaded and loaded as the image sequence '{image.name}'")
        for path in frames:
            shutil.copy2(path, OUT / path.name)
        contact_sheet(frames, OUT / "contact_sheet.png")
        log = module.addon.job_view.log_lines(job_id)
        (OUT / "job.log").write_text("\n".join(log) + "\n")
        clock.stage("contact sheet written: demo-output/contact_sheet.png")
        save_job_page(module, settings, record)
        clock.stage("the job's page for a phone, as the job ended: demo-output/job_page.html")
        if record.movie_path:
            movie = Path(record.movie_path)
            shutil.copy2(movie, OUT / movie.name)
            clip = bpy.data.movieclips.load(str(movie))
            clock.stage(
                f"movie demo-output/{movie.name}: {clip.frame_duration} frames at {tuple(clip.size)}, "
                f"{movie.stat().st_size / 1e3:.1f} kB"
            )
        elif kind == "video":
            print(f"No movie came back: {record.movie_error or record.message}")
            return 1
        print(
            f"\nJob {job_id}: {len(record.frames_done)}/{len(record.frames)} frames on {record.instance_type} "
            f"(device {record.device or 'CPU'}, Blender {record.blender_build or version}), "
            f"machine time cost estimate ${record.cost_so_far:.4f} at ${record.price_per_hour:.3f}/h; "
            f"longest main-thread drain {longest * 1000:.1f} ms."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
