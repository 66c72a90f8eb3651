"""Applies job events on Blender's main thread: panel state, log, jobs list, frames.

Everything here runs inside the `bpy.app.timers` drain, so each event must be cheap: no
network, and disk work limited to loading a frame Blender reads lazily anyway.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import bpy

from ..cloud.job.events import Event
from . import account

LOG_LINES_KEPT = 20_000
PANEL_LOG_LINES = 12
_logs: dict[str, deque[str]] = {}
_frames: dict[str, list[tuple[int | None, str]]] = {}


def log_lines(job_id: str) -> list[str]:
    return list(_logs.get(job_id, ()))


def frame_files(job_id: str) -> list[tuple[int | None, str]]:
    return list(_frames.get(job_id, ()))


def image_name(job_id: str) -> str:
    return f"Cloud Render: {job_id}"


def _view() -> bpy.types.PropertyGroup:
    return account.view()


def _job_items(job_id: str):  # type: ignore[no-untyped-def]
    for item in account.jobs():
        if item.job_id == job_id:
            yield item


def apply_event(event: Event) -> None:
    """Route one event to the panel, the jobs list, the log and the images."""
    data = event.data
    view = _view()
    current = view.job_id == event.job_id
    if event.kind == "log":
        buffer = _logs.setdefault(event.job_id, deque(maxlen=LOG_LINES_KEPT))
        buffer.extend(str(line) for line in data.get("lines", ()))
        if current:
            view.log_tail = "\n".join(list(buffer)[-PANEL_LOG_LINES:])
    elif event.kind in ("stage", "finished"):
        for item in _job_items(event.job_id):
            item.stage = data["stage"]
        if current:
            view.state = data["stage"]
            view.message = data.get("message", "")
            view.action = data.get("action", "")
            view.progress = 0.0
            if event.kind == "finished":
                view.frames_done = int(data.get("frames_done", view.frames_done))
                view.ended = time.time()
    elif event.kind == "progress" and current:
        view.progress = float(data.get("fraction", 0.0))
        if data.get("text"):
            view.message = str(data["text"])
    elif event.kind == "status" and current:
        view.current_frame = int(data.get("frame") or 0)
        view.sample = int(data.get("sample") or 0)
        view.samples_total = int(data.get("samples_total") or 0)
        view.device = str(data.get("device") or "")
        view.seconds_per_frame = float(data.get("seconds_per_frame") or 0.0)
    elif event.kind == "cost" and current:
        view.cost_so_far = float(data.get("cost_so_far", 0.0))
        view.projected_cost = float(data.get("projected", 0.0))
    elif event.kind == "frame":
        _frames.setdefault(event.job_id, []).append((data.get("frame"), str(data["path"])))
        for item in _job_items(event.job_id):
            item.frames_done = int(data.get("frames_done", 0))
        if current:
            view.frames_done = int(data.get("frames_done", 0))
            view.frames_total = int(data.get("frames_total", 0))
        show_frames(event.job_id, open_editor=False)
    redraw()


def show_frames(job_id: str, open_editor: bool) -> bpy.types.Image | None:
    """Load the job's frames as one image sequence and show the newest in Image Editors."""
    frames = [(f, p) for f, p in _frames.get(job_id, ()) if f is not None]
    if not frames:
        return None
    numbers = sorted(f for f, _ in frames)
    first_path = min(frames)[1]
    name = image_name(job_id)
    image = bpy.data.images.get(name)
    if image is None or bpy.path.abspath(image.filepath) != first_path:
        if image is not None:
            bpy.data.images.remove(image)
        image = bpy.data.images.load(first_path, check_existing=False)
        image.name = name
        image.source = "SEQUENCE"
    else:
        image.reload()
    image["cloud_render_frames"] = len(numbers)
    image["cloud_render_first"] = numbers[0]
    image["cloud_render_last"] = numbers[-1]
    newest = frames[-1][0] or numbers[-1]
    editors = _image_editors()
    if not editors and open_editor:
        editors = _open_image_editor()
    scene = bpy.context.scene
    for space in editors:
        space.image = image
        user = space.image_user
        user.frame_start = scene.frame_current
        user.frame_duration = numbers[-1] - numbers[0] + 1
        user.frame_offset = newest - 1
        user.use_auto_refresh = True
    if editors:
        scene.frame_set(scene.frame_current)
    return image


def _image_editors() -> list[Any]:
    spaces = []
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "IMAGE_EDITOR":
                spaces.append(area.spaces.active)
    return spaces


def _open_image_editor() -> list[Any]:
    """Turn the largest non-Properties area into an Image Editor (as F11 would show a render)."""
    areas = [
        area
        for window in bpy.context.window_manager.windows
        for area in window.screen.areas
        if area.type not in {"PROPERTIES", "OUTLINER"}
    ]
    if not areas:
        return []
    area = max(areas, key=lambda a: a.width * a.height)
    area.type = "IMAGE_EDITOR"
    return [area.spaces.active]


def redraw() -> None:
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in {"PROPERTIES", "IMAGE_EDITOR"}:
                area.tag_redraw()


def forget() -> None:
    _logs.clear()
    _frames.clear()


def fill_log_text(job_id: str) -> bpy.types.Text:
    """The full log in a Text data-block `Cloud Render: <job>`, shown in an open Text Editor."""
    name = image_name(job_id)
    text = bpy.data.texts.get(name) or bpy.data.texts.new(name)
    text.clear()
    text.write("\n".join(log_lines(job_id)) + "\n")
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "TEXT_EDITOR":
                area.spaces.active.text = text
    return text


def load_frames_from_record(job_id: str) -> None:
    """After a restart: the frames already downloaded, from the job's local record."""
    from ..cloud.job.job_thread import frame_number
    from . import pump

    record = pump.manager().store.load(job_id)
    _frames[job_id] = [(frame_number(path), path) for path in record.frame_files]
