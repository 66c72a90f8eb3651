"""The job's page link as a QR code in the Current Job panel, for a phone's camera: a presigned
link is some 400 characters (over 1,000 with temporary keys), not something to type on a phone.

The code is drawn from a preview the add-on holds (`bpy.utils.previews`), never an Image
data-block, so the artist's file is not touched (design rule 2). The matrix comes from the
pinned `qrcode` wheel; each module is a whole number of pixels, so the code stays sharp."""

from __future__ import annotations

from typing import Any

import bpy
import bpy.utils.previews
import numpy as np
import qrcode
from qrcode.constants import ERROR_CORRECT_M

QUIET_ZONE = 4  # modules of white around the code: what the QR standard asks for, for readers
MODULE_PX = 3  # pixels per module: a phone reads it off a laptop screen at arm's length
UI_UNIT_PX = 20  # template_icon's scale is in UI units of 20 pixels (at Resolution Scale 1)

_previews: Any = None  # the add-on's preview collection, made on first use
_made: dict[str, tuple[str, int, float]] = {}  # job -> (link, icon id, scale) as last drawn
_shown: set[str] = set()  # the jobs whose code the artist asked to see


def modules(link: str) -> np.ndarray:
    """The code's modules, quiet zone included: True is dark. Error correction M (15% of the
    code may be unreadable, a screen's glare or moiré) at the smallest version that holds it."""
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=QUIET_ZONE)
    code.add_data(link)
    code.make(fit=True)
    return np.array(code.get_matrix(), dtype=bool)


def pixels(link: str, module_px: int = MODULE_PX) -> np.ndarray:
    """RGBA floats, rows from the bottom as Blender stores images: black modules on white."""
    dark = np.repeat(np.repeat(modules(link), module_px, axis=0), module_px, axis=1)
    rgba = np.ones((*dark.shape, 4), dtype=np.float32)
    rgba[dark, :3] = 0.0
    return rgba[::-1]


def is_shown(job_id: str) -> bool:
    return job_id in _shown


def toggle(job_id: str) -> bool:
    """Show or hide the job's code; True when it is now shown."""
    if job_id in _shown:
        _shown.discard(job_id)
        return False
    _shown.add(job_id)
    return True


def icon(job_id: str, link: str) -> tuple[int, float]:
    """(icon id, template_icon scale) of the job's code for `link`, made once per link."""
    global _previews
    made = _made.get(job_id)
    if made is not None and made[0] == link:
        return made[1], made[2]
    if _previews is None:
        _previews = bpy.utils.previews.new()
    name = f"qr-{job_id}"
    preview = _previews[name] if name in _previews else _previews.new(name)
    rgba = pixels(link)
    preview.image_size = (rgba.shape[1], rgba.shape[0])
    preview.image_pixels_float.foreach_set(rgba.ravel())
    scale = rgba.shape[0] / UI_UNIT_PX
    _made[job_id] = (link, preview.icon_id, scale)
    return preview.icon_id, scale


def preview_pixels(job_id: str) -> np.ndarray | None:
    """The pixels the panel draws for the job's code (rows from the bottom), or None."""
    name = f"qr-{job_id}"
    if _previews is None or name not in _previews:
        return None
    preview = _previews[name]
    width, height = preview.image_size
    flat = np.empty(width * height * 4, dtype=np.float32)
    preview.image_pixels_float.foreach_get(flat)
    return flat.reshape(height, width, 4)


def unregister() -> None:
    """The previews are freed with the add-on (Blender warns of a collection left behind)."""
    global _previews
    if _previews is not None:
        bpy.utils.previews.remove(_previews)
        _previews = None
    _made.clear()
    _shown.clear()
