"""A movie job's movie in Blender: as a Movie Clip in a Clip Editor, or as a new sequencer strip.

The movie is read from the job's local record (its path, once downloaded next to the frames);
the frames stay in the Image Editor as for any job.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import bpy

from ..cloud.job.records import Stage
from . import pump

RECHECK_S = 2.0  # a job's record is read again at most this often (draw calls ask)
_movies: dict[str, tuple[float, str, bool]] = {}  # job -> (read at, movie path, could make one here)


def _read(job_id: str) -> tuple[str, bool]:
    now = time.monotonic()
    checked, path, makeable = _movies.get(job_id, (0.0, "", False))
    if now - checked > RECHECK_S:
        try:
            record = pump.manager().store.load(job_id)
            path = record.movie_path
            makeable = record.movie and record.stage == Stage.DONE and not os.path.isfile(path)
        except (OSError, ValueError, KeyError, TypeError):
            path, makeable = "", False
        _movies[job_id] = (now, path, makeable)
    return path, makeable


def movie_file(job_id: str) -> str:
    """The job's movie on this computer, or "" (no movie job, not arrived, or removed)."""
    path = _read(job_id)[0]
    return path if path and os.path.isfile(path) else ""


def can_make_here(job_id: str) -> bool:
    """A finished movie job without its movie here: Make Movie Here can encode the frames."""
    return _read(job_id)[1]


def forget(job_id: str) -> None:
    _movies.pop(job_id, None)


def clip_name(job_id: str) -> str:
    return f"cloud-render {job_id}"


def show_movie(job_id: str, open_as: str) -> Any:
    """Open the movie as a Movie Clip (shown in Clip Editors) or as a strip in this scene's sequencer."""
    path = movie_file(job_id)
    if not path:
        return None
    if open_as == "SEQUENCER":
        return _add_strip(bpy.context.scene, job_id, path)
    clip = bpy.data.movieclips.get(clip_name(job_id))
    if clip is None or bpy.path.abspath(clip.filepath) != path:
        clip = bpy.data.movieclips.load(path, check_existing=False)
        clip.name = clip_name(job_id)
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "CLIP_EDITOR":
                area.spaces.active.clip = clip
    return clip


def _add_strip(scene: Any, job_id: str, path: str) -> Any:
    """A movie strip (and its sound, when the movie has any) above the scene's strips, at its start."""
    editor = scene.sequence_editor or scene.sequence_editor_create()
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences
    every = editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all
    channel = min(max((s.channel for s in every), default=0) + 1, 127)
    strip = strips.new_movie(clip_name(job_id), path, channel, scene.frame_start)
    with contextlib.suppress(RuntimeError):  # a movie without a sound stream
        strips.new_sound(clip_name(job_id) + " sound", path, channel + 1, scene.frame_start)
    return strip
