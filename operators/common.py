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


# Where an operator's outcome is said: the current job's message and action ("job"), only its
# action, under what happened ("job_action"), the line under the Jobs list ("jobs"), or the
# account's status line in Preferences ("account").
SaidIn: TypeAlias = Literal["job", "job_action", "jobs", "account"]


def in_background(work: Callable[[], Any], on_success: Callable[[Any], str], said_in: SaidIn = "job") -> None:
    """Run `work` in a thread; back on the main thread, `on_success(result)` gives the words, or
    the CloudError's message and action are the words, said where the button was pressed: an
    outcome about another job or the account written into the current job's message hid that
    job's own words, or was never seen (no current job: no Current Job panel)."""

    def done(result: Any, error: Any) -> None:
        view = job_view.view()
        message, action = (error.message, error.action) if error is not None else (on_success(result), "")
        if said_in == "job":  # kept with the job too: the view is emptied by a file load
            job_view.say(view.job_id, message=message, action=action)
        elif said_in == "job_action":
            job_view.say(view.job_id, action=f"{message} {action}".strip())
        elif said_in == "jobs":
            view.jobs_status = f"{message} {action}".strip()
        else:
            view.account_status = f"{message} {action}".strip()
        job_view.redraw()

    pump.in_background(work, done)


def said_in_for(job_id: str) -> SaidIn:
    """The current job's own panel for the current job; the Jobs list's line for any other."""
    return "job" if job_id and job_id == job_view.view().job_id else "jobs"
