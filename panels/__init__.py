"""Drawing only: panels, lists and the preferences page."""

from __future__ import annotations

import bpy

from . import preferences, render_panel

classes: tuple[type, ...] = (*preferences.classes, *render_panel.classes)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
