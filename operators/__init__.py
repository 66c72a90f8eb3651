"""Operators: thin, they hand work to cloud/ in threads and report."""

from __future__ import annotations

import bpy

from . import account, elsewhere, jobs, render

classes: tuple[type, ...] = (*render.classes, *jobs.classes, *elsewhere.classes, *account.classes)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
