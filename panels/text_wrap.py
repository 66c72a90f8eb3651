"""Labels that wrap to the editor's width, so a narrow Properties editor keeps the facts.

Blender cuts a long label in the middle ("c5.2xlarge: ~3 s/frame...-$0.05"), exactly where
prices and times sit; these helpers split text into lines that fit the region instead.
"""

from __future__ import annotations

import textwrap
from typing import Any

# Average width of one character of Blender's UI font at UI scale 1, and what a panel's
# margins, a box and an icon take from the region's width, in pixels.
CHAR_PX = 6.6
MARGIN_PX = 64
DEFAULT_WIDTH_PX = 330  # the default Properties editor (and the windowless bpy module)


def wrap(text: str, width_px: float = DEFAULT_WIDTH_PX, scale: float = 1.0) -> list[str]:
    """`text` split at spaces into lines that fit `width_px`; its own line breaks are kept."""
    scale = scale if scale > 0 else 1.0  # 0 in a windowless Blender
    chars = max(18, int((width_px - MARGIN_PX * scale) / (CHAR_PX * scale)))
    lines: list[str] = []
    for paragraph in text.splitlines():
        lines += textwrap.wrap(paragraph, chars, break_on_hyphens=False) or [""]
    return lines


def region_width(context: Any) -> tuple[float, float]:
    """(width in pixels, UI scale) of the region being drawn; the default editor without one."""
    region = getattr(context, "region", None)
    width = float(getattr(region, "width", 0) or DEFAULT_WIDTH_PX)
    scale = float(context.preferences.system.ui_scale) if getattr(context, "preferences", None) else 1.0
    return width, scale


def labels(layout: Any, context: Any, text: str, icon: str = "NONE") -> None:
    """Draw `text` as wrapped labels: the icon on the first line, the rest aligned under it."""
    column = layout.column(align=True)
    for index, line in enumerate(wrap(text, *region_width(context))):
        column.label(text=line, icon=icon if index == 0 else ("BLANK1" if icon != "NONE" else "NONE"))
