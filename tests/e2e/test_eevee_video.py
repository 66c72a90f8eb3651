"""EEVEE, Workbench and movie output through the instance simulator, with real renders.

The simulator's Blender is the bpy module on this computer's Mesa (software OpenGL through
EGL's surfaceless platform, chosen by the supervisor); a real machine's NVIDIA EGL is not
exercised here. Frames are tiny so that EEVEE's shader compilation dominates each test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cloud.machine.contract import out_prefix
from dev.simulator import InstanceSimulator
from tests.e2e.test_worker import png_size, run_job, stage

pytestmark = pytest.mark.slow

SCENE_SCRIPT = r"""
import math, os, struct, sys, wave
import bpy
out, engine, movie = sys.argv[-3], sys.argv[-2], sys.argv[-1] == "1"
bpy.ops.wm.read_factory_settings(use_empty=False)  # the default cube, light and camera
scene = bpy.context.scene
if engine == "BLENDER_EEVEE" and bpy.app.version < (4, 3, 0):
    engine = "BLENDER_EEVEE_NEXT"  # 4.2 LTS's name
scene.render.engine = engine
if engine.startswith("BLENDER_EEVEE"):
    scene.eevee.taa_render_samples = 4
scene.render.resolution_percentage = 100
scene.render.filepath = "//render/shot_"
cube = bpy.data.objects["Cube"]
cube.rotation_euler = (0, 0, 0)
cube.keyframe_insert("rotation_euler", frame=1)
cube.rotation_euler = (0, 0, 1.5)
cube.keyframe_insert("rotation_euler", frame=12)
if movie:
    scene.render.resolution_x, scene.render.resolution_y = 64, 48
    scene.frame_start, scene.frame_end = 1, 12
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):
        settings.media_type = "VIDEO"
    settings.file_format = "FFMPEG"
    scene.render.ffmpeg.format = "MPEG4"
    scene.render.ffmpeg.codec = "H264"
    if bpy.app.build_options.audaspace:  # the 4.2 bpy wheel has no audio
        scene.render.ffmpeg.audio_codec = "AAC"
    with wave.open(os.path.join(out, "tone.wav"), "wb") as tone:
        tone.setnchannels(1)
        tone.setsampwidth(2)
        tone.setframerate(48000)
        tone.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i * 0.05))) for i in range(24000)))
    editor = scene.sequence_editor_create()
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences
    if bpy.app.build_options.audaspace:
        strips.new_sound("tone", "//tone.wav", 1, 1)
else:
    scene.render.resolution_x = scene.render.resolution_y = 32
    scene.frame_start, scene.frame_end = 1, 1
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(out, "scene.blend"), relative_remap=True)
"""

RENDER_SCRIPT = r"""
import sys
import bpy
bpy.ops.wm.open_mainfile(filepath=sys.argv[-2])
scene = bpy.context.scene
scene.render.filepath = sys.argv[-1]
scene.render.image_settings.file_format = "PNG"
scene.frame_set(1)
bpy.ops.render.render(write_still=True)
"""


def make_scene(dest: Path, engine: str, movie: bool) -> dict[str, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-c", SCENE_SCRIPT, str(dest), engine, "1" if movie else "0"]
    subprocess.run(args, check=True, capture_output=True)
    files = {"scene.blend": dest / "scene.blend"}
    if movie:
        files["tone.wav"] = dest / "tone.wav"
    return files


def pixels(path: Path) -> list[float]:
    import bpy

    image = bpy.data.images.load(str(path))
    try:
        return list(image.pixels)
    finally:
        bpy.data.images.remove(image)


def test_eevee_frame_matches_a_local_eevee_render(aws, tarball, tmp_path):
    files = make_scene(tmp_path / "scene", "BLENDER_EEVEE", movie=False)
    job = stage(aws, files, tarball, frames=[1])
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim") as sim:
        run_job(sim, job, timeout=300)
    assert job.get("error.json") is None, job.get_json("error.json")
    frames = job.frames()
    assert sorted(frames) == ["render/shot_0001.png"]
    assert png_size(frames["render/shot_0001.png"]) == (32, 32)
    log = job.log_text()
    assert "EGL platform: surfaceless" in log and "render device: BLENDER_EEVEE" in log
    assert "OpenGL: llvmpipe" in log or "software" in log

    done = job.get_json("done.json") or {}
    print(
        f"EEVEE frame in the simulator: {done.get('seconds_per_frame')} s (32x32, 4 samples, Mesa llvmpipe)"
    )
    cloud = tmp_path / "cloud.png"
    cloud.write_bytes(frames["render/shot_0001.png"])
    local = tmp_path / "local.png"
    env = dict(os.environ, EGL_PLATFORM="surfaceless")
    subprocess.run(
        [sys.executable, "-c", RENDER_SCRIPT, str(files["scene.blend"]), str(local)], env=env, check=True
    )
    a, b = pixels(cloud), pixels(local)
    assert len(a) == len(b) == 32 * 32 * 4
    assert max(a[0::4]) - min(a[0::4]) > 0.1, "the EEVEE frame is flat: nothing was drawn"
    worst = max(abs(x - y) for x, y in zip(a, b, strict=True))
    print(f"EEVEE cloud vs local: largest pixel difference {worst:.4f}")
    assert worst < 0.02, f"cloud and local EEVEE frames differ by up to {worst:.3f}"


def test_gpu_job_on_software_opengl_fails_before_any_frame(aws, tarball, tmp_path):
    files = make_scene(tmp_path / "scene", "BLENDER_WORKBENCH", movie=False)
    job = stage(aws, files, tarball, frames=[1], device="GPU")
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim") as sim:
        run_job(sim, job, timeout=300)
    error = job.get_json("error.json")
    assert error is not None and error["kind"] == "no_gpu", error
    assert "software" in error["cause"] and "Workbench" in error["cause"]
    assert job.frames() == {}


def test_movie_comes_back_with_its_frames_size_and_sound(aws, tarball, tmp_path):
    import bpy

    files = make_scene(tmp_path / "scene", "BLENDER_WORKBENCH", movie=True)
    job = stage(aws, files, tarball, frames=list(range(1, 13)))
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim") as sim:
        run_job(sim, job, timeout=300)
    assert job.get("error.json") is None, job.get_json("error.json")
    frames = job.frames()
    assert sorted(frames) == [f"render/shot_{f:04d}.png" for f in range(1, 13)]  # the frames stay
    assert all(png_size(data) == (64, 48) for data in frames.values())
    done = job.get_json("done.json")
    assert done is not None and "movie" in done, done
    name = done["movie"]["name"]
    assert name.endswith(".mp4")
    movie = job.get(f"movie/{name}")
    assert movie is not None and len(movie) == done["movie"]["bytes"]
    path = tmp_path / name
    path.write_bytes(movie)
    clip = bpy.data.movieclips.load(str(path))
    assert clip.frame_duration == 12 and tuple(clip.size) == (64, 48)
    assert b"vide" in movie, "the movie has no video stream"
    if bpy.app.build_options.audaspace:
        assert b"soun" in movie, "the movie lost the scene's sound"
    assert f"movie encoded in {done['movie']['seconds']} s" in job.log_text()
    print(f"movie encode: {done['movie']['seconds']} s for 12 frames at 64x48 ({len(movie)} bytes)")
    assert job.keys(out_prefix(job.job_id) + "movie/") == [out_prefix(job.job_id) + f"movie/{name}"]


def test_a_failed_encode_keeps_the_frames_and_says_why(aws, tarball, tmp_path):
    """H.264 refuses an odd frame width: the job is done, the frames are there, done.json says why."""
    files = make_scene(tmp_path / "scene", "BLENDER_WORKBENCH", movie=True)
    odd = tmp_path / "odd.py"
    odd.write_text(
        "import bpy, sys\nbpy.ops.wm.open_mainfile(filepath=sys.argv[-1])\nscene = bpy.context.scene\n"
        "scene.render.resolution_x, scene.frame_end = 63, 3\nbpy.ops.wm.save_mainfile()\n"
    )
    subprocess.run([sys.executable, str(odd), str(files["scene.blend"])], check=True, capture_output=True)
    job = stage(aws, files, tarball, frames=[1, 2, 3], movie_frames_format="OPEN_EXR")
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim") as sim:
        run_job(sim, job, timeout=300)
    done = job.get_json("done.json")
    assert done is not None and "movie" not in done, done
    assert "divisible by 2" in done["movie_error"]
    assert sorted(job.frames()) == [f"render/shot_{f:04d}.exr" for f in (1, 2, 3)]  # EXR frames, as asked
    assert job.keys(out_prefix(job.job_id) + "movie/") == []
    assert "the movie could not be made" in job.log_text()


def test_a_run_with_only_part_of_the_frames_makes_no_movie(aws, tarball, tmp_path):
    """A relaunch of missing frames (or one machine of many) renders frames only: no partial movie."""
    files = make_scene(tmp_path / "scene", "BLENDER_WORKBENCH", movie=True)
    job = stage(aws, files, tarball, frames=[4, 5], encode_movie=False)
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim") as sim:
        run_job(sim, job, timeout=300)
    done = job.get_json("done.json")
    assert done is not None and "movie" not in done and "movie_error" not in done, done
    assert "frames only: this run does not hold every frame" in job.log_text()
    assert sorted(job.frames()) == ["render/shot_0004.png", "render/shot_0005.png"]
    assert job.keys(out_prefix(job.job_id) + "movie/") == []
