"""The movie step: encode a movie job's frames once all are in; and Blender's OpenGL platform.

Inside Blender (`blender -b FILE --python assemble_movie.py -- CONFIG.json`), `main` encodes the
rendered frames (PNG or EXR) into the movie the artist asked for, with the scene's own FFmpeg
settings (container, codec, quality, bitrate) and the scene's own sound strips, through
Blender's Video Sequencer: the scene's other strips are taken out, the frames go in as one
image strip, and the animation is rendered with the sequencer only (PNG frames are shown with
the Standard view, since they already carry the artist's view transform).

Around Blender (the supervisor imports this file; bpy is imported only inside `main`),
`assemble` runs that step and `egl_environment` picks the OpenGL platform for any Blender run.

Why on the render machine: the frames are already on its disk (no download of a whole image
sequence to the artist's computer), Blender and its FFmpeg are already installed there, and
the artist's computer stays free. The step needs only the frames in one folder, the packed
.blend and Blender, so it runs once after all frames wherever they all are: on a one-machine
job right after the last frame; with many machines, by the machine that finds every frame
rendered (or a one-task job the add-on starts), after fetching the frames. It encodes from
images on disk, so a failed encode costs no re-render.

CONFIG: {"frames": [file paths in playing order], "movie_dir": folder for the movie,
"frames_format": "PNG" or "OPEN_EXR", "resolution_percentage": int or null}.
Standard library (and bpy inside Blender); Python 3.9 syntax.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

# ---------------------------------------------------------------- around Blender (the supervisor's side)

NVIDIA_NODES = ("/dev/nvidiactl", "/dev/nvidia0")


def egl_environment(
    environ: dict[str, str], nodes: tuple[str, ...] = NVIDIA_NODES
) -> tuple[dict[str, str], str]:
    """The variables Blender's headless OpenGL (EGL) needs here, and a log line saying which platform.

    NVIDIA's EGL finds its GPU through the device platform when no display is set, so nothing is
    set there. Mesa (no NVIDIA device: software or another vendor) needs the surfaceless
    platform: without it EGL answers EGL_BAD_MATCH and EEVEE writes nothing.
    """
    if environ.get("EGL_PLATFORM"):
        return {}, f"EGL platform: {environ['EGL_PLATFORM']} (set on the machine)"
    if any(os.path.exists(node) for node in nodes):
        return {}, "EGL platform: device (NVIDIA GPU found; NVIDIA's EGL picks it without a display)"
    return {"EGL_PLATFORM": "surfaceless"}, "EGL platform: surfaceless (no NVIDIA GPU found; Mesa's EGL)"


class MovieFailed(Exception):
    """The encode did not produce a movie; the frames are unaffected."""


def frames_in_order(frames_dir: str, plan: dict[str, int]) -> list[str]:
    """The frame files of `plan` (name -> frame number) by frame number; MovieFailed if one is not on disk."""
    paths = [
        os.path.join(frames_dir, name) for name, _frame in sorted(plan.items(), key=lambda item: item[1])
    ]
    missing = [os.path.relpath(p, frames_dir) for p in paths if not os.path.isfile(p)]
    if missing:
        raise MovieFailed(f"frames rendered by an earlier run are not on this machine: {missing[:5]}")
    if not paths:
        raise MovieFailed("no frames to encode")
    return paths


def assemble(
    command: list[str],
    blend: str,
    work: str,
    frames: list[str],
    options: dict[str, Any],
    write: Callable[[str], None],
    env: dict[str, str],
) -> tuple[str, float]:
    """Run Blender on assemble_movie.py; (path of the movie, seconds) or MovieFailed with Blender's reason."""
    from .blender_logs import read_event  # this half is imported as part of the package, never run by path

    movie_dir = os.path.join(work, "out", "movie")
    config = dict(options, frames=frames, movie_dir=movie_dir)
    config_path = os.path.join(work, "movie-config.json")
    with open(config_path, "w") as handle:
        json.dump(config, handle)
    argv = [
        *command,
        "-b",
        blend,
        "--python-exit-code",
        "3",
        "--python",
        os.path.abspath(__file__),
    ]
    argv += ["--", config_path]
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=os.path.dirname(blend),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    assert proc.stdout is not None
    done: dict[str, Any] = {}
    reason = ""
    for raw in proc.stdout:
        line = raw.decode("utf-8", "replace")
        write(line)
        try:
            event = read_event(line.strip())
        except ValueError:
            continue
        if event is None:
            continue
        if event.get("event") == "movie_done":
            done = event
        elif event.get("event") == "movie_error":
            reason = str(event.get("message", ""))
    code = proc.wait()
    name = os.path.basename(str(done.get("name", "")))
    path = os.path.join(movie_dir, name)
    if code != 0 or not name or not os.path.isfile(path):
        raise MovieFailed(reason or f"Blender exited with code {code} without writing the movie")
    return path, round(time.monotonic() - started, 2)


# ---------------------------------------------------------------- inside Blender


def strips_of(editor: Any) -> Any:
    """The top-level strip collection (Blender 5.0 renamed `sequences` to `strips`)."""
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def all_strips(editor: Any) -> list[Any]:
    return list(editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all)


def keep_sound_only(scene: Any) -> Any:
    """The scene's sequencer with only its sound strips left (the scene's audio, as timed)."""
    editor = scene.sequence_editor or scene.sequence_editor_create()
    strips = strips_of(editor)
    for strip in [s for s in list(strips) if s.type != "SOUND"]:
        strips.remove(strip)
    return editor


def add_frames(editor: Any, frames: list[str], start: int) -> Any:
    """One image strip holding every frame, in order, from `start`, on a channel above the sound."""
    used = [s.channel for s in all_strips(editor)]
    channel = min(max(used, default=0) + 1, 128)
    folder = os.path.dirname(frames[0])
    strip = strips_of(editor).new_image("cloud-render frames", frames[0], channel, start)
    for path in frames[1:]:
        if os.path.dirname(path) != folder:
            raise ValueError("the frames are not in one folder")
        strip.elements.append(os.path.basename(path))
    return strip


def neutral_view(scene: Any) -> None:
    """PNG frames already carry the artist's view transform: show them as they are."""
    view = scene.view_settings
    view.view_transform = "Standard"
    view.look = "None"
    view.exposure = 0.0
    view.gamma = 1.0
    view.use_curve_mapping = False


def main() -> None:
    import bpy  # inside Blender only: the supervisor imports this file for the step around it

    # Run by path (`--python`), no package around it: the stdout protocol is the file beside it.
    emit = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "blender_logs.py"))["emit"]

    cfg = json.load(open(sys.argv[sys.argv.index("--") + 1]))  # noqa: SIM115
    scene: Any = bpy.context.scene
    render = scene.render
    if not render.is_movie_format:
        emit("movie_error", message="The scene's output is not a movie format.")
        raise SystemExit(3)
    frames = [str(p) for p in cfg["frames"]]
    if not frames:
        emit("movie_error", message="No frames to put in the movie.")
        raise SystemExit(3)
    started = time.monotonic()
    editor = keep_sound_only(scene)
    strip = add_frames(editor, frames, scene.frame_start)
    if cfg.get("frames_format", "PNG") == "PNG":
        strip.colorspace_settings.name = "sRGB"
        neutral_view(scene)
    scene.frame_end = scene.frame_start + len(frames) - 1
    scene.frame_step = 1
    if cfg.get("resolution_percentage"):
        render.resolution_percentage = int(cfg["resolution_percentage"])
    render.use_sequencer = True
    render.use_compositing = False
    render.use_overwrite = True
    movie_dir = cfg["movie_dir"].rstrip("/") + "/"
    os.makedirs(movie_dir, exist_ok=True)
    name = os.path.basename(render.filepath.replace("\\", "/")) or "movie_"
    render.filepath = movie_dir + name
    emit("movie_start", frames=len(frames), codec=render.ffmpeg.codec, container=render.ffmpeg.format)
    try:
        bpy.ops.render.render(animation=True, scene=scene.name)
    except RuntimeError as exc:  # FFmpeg refused: say Blender's reason ("width not divisible by 2")
        emit("movie_error", message=str(exc).replace("Error: ", "", 1).strip()[:300])
        raise SystemExit(3) from None
    written = sorted(os.listdir(movie_dir))
    if not written:
        emit("movie_error", message="Blender wrote no movie file.")
        raise SystemExit(3)
    emit("movie_done", name=written[0], seconds=round(time.monotonic() - started, 3))


if __name__ == "__main__":
    main()
