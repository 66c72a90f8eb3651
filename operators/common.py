"""What the operators share: the online-access rule and running work off the main thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeAlias

import bpy

from ..addon import job_view, pump

# What an operator's execute/invoke returns (a name for mypy with fake-bpy-module).
OperatorReturn: TypeAlias = set[
    Literal["RUNNING_MODAL", "CANCELLED", "FINISHED", "PASS_THROUGH", "INTERFACE"]
]

ONLINE_OFF = "Online access is off (Preferences > System > Network)."


class NeedsOnlineAccess:
    """Mixin for operators that talk to AWS: greyed out, with the reason, while online access is off."""

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not bpy.app.online_access:
            cls.poll_message_set(ONLINE_OFF)  # type: ignore[attr-defined]
            return False
        return True


def in_background(work: Callable[[], Any], on_success: Callable[[Any], str]) -> None:
    """Run `work` in a thread; back on the main thread, `on_success(result)` gives the panel's
    message, or the CloudError's message and action are shown."""

    def done(result: Any, error: Any) -> None:
        view = job_view.view()
        if error is not None:
            view.message, view.action = error.message, error.action
        else:
            view.message, view.action = on_success(result), ""
        job_view.redraw()

    pump.in_background(work, done)
