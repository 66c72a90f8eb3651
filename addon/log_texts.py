"""The job logs shown in Blender's Text Editor stay out of the artist's .blend.

Open Full Log shows a job's log in a Text data-block (`Cloud Render: <job>`, job_view.fill_log_text),
and Blender saves every Text with the file: 585 lines of log were found in a saved shot. The
open file is never changed by the add-on (DESIGN.md), so around each save the log texts are
taken out and put back: before the save (save_pre) each is removed, remembering its text and
which Text Editors showed it; after the save (save_post) each is made again and shown where it
was. A submit's saved copy goes through the same handlers, so logs never travel with a job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import bpy
from bpy.app.handlers import persistent

from ..cloud.pack import FRAMES_IMAGE_PREFIX


@dataclass
class HeldText:
    """A log text taken out for a save: its name, its lines, and the editors that showed it
    (window and area indexes, with the line shown at the top)."""

    name: str
    body: str
    shown_in: list[tuple[int, int, int]] = field(default_factory=list)


_held: list[HeldText] = []


def is_log_text(text: bpy.types.Text) -> bool:
    return text.name.startswith(FRAMES_IMAGE_PREFIX)


def _editors() -> list[tuple[int, int, bpy.types.SpaceTextEditor]]:
    """Every Text Editor of every window, with its window and area index (none in background)."""
    manager = bpy.context.window_manager
    found = []
    for w, window in enumerate(manager.windows if manager is not None else []):
        for a, area in enumerate(window.screen.areas):
            space = area.spaces.active
            if area.type == "TEXT_EDITOR" and isinstance(space, bpy.types.SpaceTextEditor):
                found.append((w, a, space))
    return found


@persistent
def take_out(*_args: object) -> None:
    """Before a save: remove the log texts, remembering them."""
    editors = _editors()
    for text in [t for t in bpy.data.texts if is_log_text(t)]:
        held = HeldText(text.name, text.as_string())
        held.shown_in = [(w, a, space.top) for w, a, space in editors if space.text == text]
        _held.append(held)
        bpy.data.texts.remove(text)


@persistent
def put_back(*_args: object) -> None:
    """After a save: the log texts again, shown where they were."""
    editors = {(w, a): space for w, a, space in _editors()}
    while _held:
        held = _held.pop(0)
        text = bpy.data.texts.get(held.name) or bpy.data.texts.new(held.name)
        text.clear()
        text.write(held.body)
        for w, a, top in held.shown_in:
            space = editors.get((w, a))
            if space is not None:
                space.text = text
                space.top = top


def register() -> None:
    if take_out not in bpy.app.handlers.save_pre:
        bpy.app.handlers.save_pre.append(take_out)
    if put_back not in bpy.app.handlers.save_post:
        bpy.app.handlers.save_post.append(put_back)


def unregister() -> None:
    if take_out in bpy.app.handlers.save_pre:
        bpy.app.handlers.save_pre.remove(take_out)
    if put_back in bpy.app.handlers.save_post:
        bpy.app.handlers.save_post.remove(put_back)
    _held.clear()
