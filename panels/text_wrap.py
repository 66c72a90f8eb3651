"""Labels that wrap to the editor's width, so a narrow Properties editor keeps the facts.

Blender cuts a long label in the middle ("c5.2xlarge: ~3 s/frame...-$0.05"), exactly where
prices and times sit; these helpers split text into lines that fit the region instead.
"""

from __future__ import annotations

import re
from typing import Any

# Average width of one character of Blender's UI font at UI scale 1, and what a panel's
# margins, a box and an icon take from the region's width, in pixels.
CHAR_PX = 6.6
MARGIN_PX = 64
DEFAULT_WIDTH_PX = 330
PATH_MIN_CHARS = 16  # a word this long with a "/" in it is a path, broken at its slashes  # the default Properties editor (and the windowless bpy module)


def wrap(text: str, width_px: float = DEFAULT_WIDTH_PX, scale: float = 1.0) -> list[str]:
    """`text` split into lines that fit `width_px`, at spaces or after a "/" (paths); its own
    line breaks are kept, and only a word longer than a line is cut."""
    scale = scale if scale > 0 else 1.0  # 0 in a windowless Blender
    chars = max(18, int((width_px - MARGIN_PX * scale) / (CHAR_PX * scale)))
    lines: list[str] = []
    for paragraph in text.splitlines():
        line = ""
        for token in _tokens(paragraph):
            while len(token) > chars:  # a word longer than a line: cut it
                if line.strip():
                    lines.append(line.rstrip())
                lines.append(token[:chars])
                token, line = token[chars:], ""
            if len((line + token).rstrip()) > chars and line.strip():
                lines.append(line.rstrip())
                line = token.lstrip()
            else:
                line += token
        lines.append(line.rstrip())
    return lines


def _tokens(paragraph: str) -> list[str]:
    """Words with their trailing space; a long path also splits after each "/" (not "s/frame")."""
    tokens: list[str] = []
    for word in re.split(r"(?<= )", paragraph):
        tokens += re.split(r"(?<=/)", word) if len(word) > PATH_MIN_CHARS and "/" in word else [word]
    return [t for t in tokens if t]


def region_width(context: Any) -> tuple[float, float]:
    """(width in pixels, UI scale) of the region being drawn; the default editor without one."""
    region = getattr(context, "region", None)
    width = float(getattr(region, "width", 0) or DEFAULT_WIDTH_PX)
    scale = float(context.preferences.system.ui_scale) if getattr(context, "preferences", None) else 1.0
    return width, scale


def labels(layout: Any, context: Any, text: str, icon: str = "NONE", factor: float = 1.0) -> None:
    """Draw `text` as wrapped labels: the icon on the first line, the rest aligned under it.

    `factor` is the share of the region's width the layout has (0.6 beside a form's names).
    """
    column = layout.column(align=True)
    width, scale = region_width(context)
    margin = MARGIN_PX * (scale if scale > 0 else 1.0)
    for index, line in enumerate(wrap(text, margin + (width - margin) * factor, scale)):
        column.label(text=line, icon=icon if index == 0 else ("BLANK1" if icon != "NONE" else "NONE"))
