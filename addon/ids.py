"""The add-on's id for its preferences, derived from `__package__` as Blender extensions must."""

from __future__ import annotations

# This module lives in `<extension>.addon`; the preferences belong to `<extension>`, which is
# "bl_ext.<repo>.cloud_render" when installed as an extension.
ADDON_ID: str = (__package__ or "cloud_render.addon").rpartition(".")[0] or "cloud_render"
