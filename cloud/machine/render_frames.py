"""Runs inside Blender (`blender -b FILE --python render_frames.py -- CONFIG.json`) on the render machine.

Renders the supervisor's frame list in this one Blender process, so the scene loads once.
It changes only what the job must: the render device, the overrides the artist chose
(samples, resolution %, file format), the output directory (the file-name pattern is kept),
no overwrite and no placeholders. Camera, markers, view layers, compositor and colour
management stay as in the file. It talks to the supervisor through lines starting with
blender_logs.MARK followed by JSON, printed between Blender's own output.

Python 3.9 syntax; runs with Blender's bundled Python or the bpy wheel's.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import time
from typing import Any

import bpy

# Blender runs this file by path (`--python`): no package around it, and the folder it lies in
# is not searched by imports. The stdout protocol, shared with the supervisor that reads it, is
# blender_logs.py beside this file, loaded by path (the import path is left as Blender set it).
_PROTOCOL = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "blender_logs.py"))
emit, fail = _PROTOCOL["emit"], _PROTOCOL["fail"]


def relative_pattern(path: str) -> str:
    """The part of an output path to keep under the machine's output directory.

    "//renders/shot_" keeps "renders/shot_"; an absolute path keeps only its file-name part,
    since the artist's directories do not exist on the render machine.
    """
    path = path.replace("\\", "/")
    trailing = path.endswith("/")
    if path.startswith("//"):
        parts = [p for p in path[2:].split("/") if p not in ("", ".", "..")]
    else:
        parts = [p for p in path.split("/") if p][-1:]
        if trailing:
            parts = []
    rel = "/".join(parts)
    return rel + "/" if trailing and rel else rel


def enable_gpu(kinds: tuple[str, ...] = ("OPTIX", "CUDA")) -> tuple[str, list[str]]:
    """The first backend of `kinds` with a device, every device of it enabled; ("CPU", []) otherwise."""
    preferences: Any = bpy.context.preferences
    addon = preferences.addons.get("cycles")
    if addon is None:
        return "CPU", []
    prefs = addon.preferences
    for kind in kinds:
        try:
            prefs.compute_device_type = kind
        except TypeError:
            continue  # this build has no such backend
        if hasattr(prefs, "refresh_devices"):
            prefs.refresh_devices()
        else:
            prefs.get_devices()
        names = [d.name for d in prefs.devices if d.type == kind]
        if names:
            for device in prefs.devices:
                device.use = device.type == kind
            return kind, names
    prefs.compute_device_type = "NONE"
    return "CPU", []


def missing_files() -> list[str]:
    """External images and libraries the scene uses that are not on disk."""
    missing = []
    for image in bpy.data.images:
        if image.packed_file or image.source not in ("FILE", "SEQUENCE", "MOVIE", "TILED"):
            continue
        if image.source in ("SEQUENCE", "TILED") or "<UDIM>" in image.filepath:
            continue  # sequences and tiles name many files; Blender reports the ones it misses
        path = bpy.path.abspath(image.filepath, library=image.library)
        if image.users and not os.path.exists(path):
            missing.append(image.filepath)
    for library in bpy.data.libraries:
        if not os.path.exists(bpy.path.abspath(library.filepath)):
            missing.append(library.filepath)
    return missing


def file_output_nodes(scene: Any) -> list[bpy.types.Node]:
    if hasattr(scene, "compositing_node_group"):  # Blender 5.0 and newer
        tree = scene.compositing_node_group
    else:
        tree = getattr(scene, "node_tree", None) if scene.use_nodes else None
    if tree is None:
        return []
    return [n for n in tree.nodes if n.bl_idname == "CompositorNodeOutputFile"]


def redirect_file_outputs(scene: Any, files_dir: str) -> None:
    """File Output nodes write under the machine's files directory, their own sub-paths kept."""
    for node in file_output_nodes(scene):
        attr = "base_path" if hasattr(node, "base_path") else "directory"
        old = getattr(node, attr)
        rel = relative_pattern(old if old.endswith(("/", "\\")) else old + "/")
        setattr(node, attr, os.path.join(files_dir, node.name, rel))


def apply_overrides(scene: Any, cfg: dict) -> None:
    if cfg.get("samples"):
        if scene.render.engine == "CYCLES":
            scene.cycles.samples = int(cfg["samples"])
        elif hasattr(scene, "eevee"):
            scene.eevee.taa_render_samples = int(cfg["samples"])
    if cfg.get("resolution_percentage"):
        scene.render.resolution_percentage = int(cfg["resolution_percentage"])
    if cfg.get("file_format"):
        set_image_format(scene.render.image_settings, cfg["file_format"])


def set_image_format(settings: Any, file_format: str) -> None:
    """An image file format; Blender 5.0 and newer first need the media type (a movie's is VIDEO)."""
    if hasattr(settings, "media_type"):
        settings.media_type = "MULTI_LAYER_IMAGE" if file_format == "OPEN_EXR_MULTILAYER" else "IMAGE"
    settings.file_format = file_format


def frames_for_movie(scene: Any, cfg: dict) -> None:
    """A movie job renders images (PNG or EXR); the movie is encoded from them once all are in."""
    ffmpeg = scene.render.ffmpeg
    frames_format = cfg.get("movie_frames_format") or "PNG"
    if frames_format not in ("PNG", "OPEN_EXR"):
        frames_format = "PNG"
    set_image_format(scene.render.image_settings, frames_format)
    if frames_format == "PNG":
        scene.render.image_settings.color_mode = "RGB"  # a movie has no alpha to keep
    emit(
        "movie",
        frames_format=frames_format,
        container=ffmpeg.format,
        codec=ffmpeg.codec,
        audio=ffmpeg.audio_codec,
    )


SOFTWARE_GL = ("llvmpipe", "softpipe", "swrast", "software rasterizer", "swr")


def opengl_check(scene: Any, cfg: dict) -> None:
    """EEVEE and Workbench draw with OpenGL: render once unsaved (it compiles the shaders the frames
    reuse), then say which OpenGL it got; a GPU job on software OpenGL fails before any frame."""
    keep = scene.render.resolution_percentage
    shortest = max(1, min(scene.render.resolution_x, scene.render.resolution_y))
    scene.render.resolution_percentage = max(1, min(keep, -(-800 // shortest)))  # 8 px or so
    try:
        bpy.ops.render.render(write_still=False, scene=scene.name)
    finally:
        scene.render.resolution_percentage = keep
    import gpu

    try:
        renderer = gpu.platform.renderer_get()
        device_type = gpu.platform.device_type_get()
    except (SystemError, RuntimeError):
        fail(
            "no_opengl",
            "Blender could not start OpenGL (EGL) on this machine, so it cannot render with EEVEE.",
        )
    software = device_type == "SOFTWARE" or any(word in renderer.lower() for word in SOFTWARE_GL)
    emit(
        "device",
        device=scene.render.engine,
        gpus=[] if software else [renderer],
        opengl=renderer,
        software=software,
    )
    if software and cfg.get("device", "GPU") == "GPU" and not os.environ.get("CLOUD_RENDER_SOFTWARE_GPU"):
        fail(
            "no_gpu",
            f"Blender found no usable GPU for OpenGL and would render {engine_name(scene)} in software ({renderer}).",
        )


def engine_name(scene: Any) -> str:
    return "Workbench" if scene.render.engine == "BLENDER_WORKBENCH" else "EEVEE"


def frames_to_render(plan: list[dict[str, Any]], cfg: dict) -> Any:
    """The plan in order; with "claim" (one machine of many), each next frame the supervisor
    claimed for this machine: asked for with a "next" event, answered on stdin, until it
    answers an empty line. The scene stays loaded between frames."""
    if not cfg.get("claim"):
        yield from plan
        return
    by_frame = {item["frame"]: item for item in plan}
    while True:
        emit("next")
        line = sys.stdin.readline().strip()
        if not line:
            return
        item = by_frame.get(int(line))
        if item is not None:
            yield item


def write_preview(scene: Any, frame: int, cfg: dict) -> None:
    """The frame just rendered, small, as a JPEG at cfg["preview_path"] (the job's phone page
    shows it): at most cfg["preview_side"] pixels on its long side. Never fails the render: a
    frame that cannot be read back (a movie's, a format Blender cannot load) has no preview."""
    target, side = cfg.get("preview_path"), int(cfg.get("preview_side") or 0)
    path = scene.render.frame_path(frame=frame)
    if not target or side <= 0 or not os.path.isfile(path):
        return
    image = None
    try:
        image = bpy.data.images.load(path, check_existing=False)
        width, height = int(image.size[0]), int(image.size[1])  # type: ignore[index]
        if width <= 0 or height <= 0:
            return
        scale = min(1.0, side / max(width, height))
        image.scale(max(1, round(width * scale)), max(1, round(height * scale)))
        image.file_format = "JPEG"
        partial = target + ".part.jpg"
        image.save(filepath=partial, quality=75)
        os.replace(partial, target)
        emit("preview", frame=frame, path=target)
    except (RuntimeError, OSError) as exc:
        print(f"no preview of frame {frame}: {exc}", flush=True)
    finally:
        if image is not None:
            bpy.data.images.remove(image)


def main() -> None:
    cfg = json.load(open(sys.argv[sys.argv.index("--") + 1]))  # noqa: SIM115
    scene: Any = bpy.context.scene
    emit(
        "build",
        version=bpy.app.version_string,
        hash=bpy.app.build_hash.decode(),
        date=bpy.app.build_date.decode(),
    )
    missing = missing_files()
    if missing:
        fail("missing_file", "Files the scene needs are missing: " + ", ".join(missing[:5]))

    if scene.render.engine == "CYCLES":
        if cfg.get("device", "GPU") == "GPU":
            device, names = enable_gpu()
        else:
            device, names = "CPU", []
        scene.cycles.device = "CPU" if device == "CPU" else "GPU"
        emit("device", device=device, gpus=names)
        if device == "CPU" and cfg.get("device", "GPU") == "GPU":
            fail("no_gpu", "Blender found no usable GPU (OptiX or CUDA) and would render on the CPU.")
    movie = scene.render.is_movie_format
    apply_overrides(scene, cfg)
    if movie:
        frames_for_movie(scene, cfg)
    if scene.render.engine != "CYCLES":
        opengl_check(scene, cfg)
    frames_dir = cfg["frames_dir"].rstrip("/") + "/"
    scene.render.filepath = frames_dir + relative_pattern(scene.render.filepath)
    scene.render.use_overwrite = False
    scene.render.use_placeholder = False
    redirect_file_outputs(scene, cfg["files_dir"])

    existing = set(cfg.get("existing", []))  # frame files listed in the bucket (one page)
    uploaded = set(cfg.get("existing_frames", []))  # frames marked uploaded (every page)
    plan: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for frame in cfg["frames"]:
        name = os.path.relpath(scene.render.frame_path(frame=frame), frames_dir).replace(os.sep, "/")
        (skipped if name in existing or frame in uploaded else plan).append({"frame": frame, "name": name})
    emit("plan", frames=plan, skipped=skipped)

    # Blender 5.x prints no stats lines at its default log level; print them as 4.x did.
    state = {"frame": 0, "status": ""}
    if bpy.app.version >= (5, 0, 0):

        def on_stats(stats: str, *_args: object) -> None:
            status = stats.rsplit("|", 1)[-1].strip()
            if status != state["status"] and not stats.startswith("Time:"):
                state["status"] = status
                print(f"Fra: {state['frame']} | {stats}", flush=True)

        handlers: Any = bpy.app.handlers
        handlers.render_stats.append(on_stats)

    scene.frame_step = 1
    for item in frames_to_render(plan, cfg):
        frame = item["frame"]
        state["frame"], state["status"] = frame, ""
        scene.frame_start = scene.frame_end = frame
        emit("frame", frame=frame)
        started = time.monotonic()
        bpy.ops.render.render(animation=True, scene=scene.name)
        emit("frame_done", frame=frame, seconds=round(time.monotonic() - started, 3))
        write_preview(scene, frame, cfg)
    emit("finished")


main()
