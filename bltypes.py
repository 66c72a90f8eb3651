"""Type names for Blender's callback return values (for mypy with fake-bpy-module)."""

from __future__ import annotations

from typing import Literal, TypeAlias

OperatorReturn: TypeAlias = set[
    Literal["RUNNING_MODAL", "CANCELLED", "FINISHED", "PASS_THROUGH", "INTERFACE"]
]
