"""Drawing only: panels, lists and the preferences page."""

from __future__ import annotations

import bpy

from . import preferences, render_panel

classes: tuple[type, ...] = (*preferences.classes, *render_panel.classes)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.TOPBAR_MT_render.append(render_panel.draw_render_menu)


def unregister() -> None:
    bpy.types.TOPBAR_MT_render.remove(render_panel.draw_render_menu)
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
