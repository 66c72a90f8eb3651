"""The add-on's id for its preferences, derived from __package__ as Blender extensions must."""

from __future__ import annotations

# "bl_ext.<repo>.cloud_render" when installed as an extension.
ADDON_ID: str = __package__ or "cloud_render"
