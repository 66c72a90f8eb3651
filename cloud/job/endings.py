"""What the panel says when a machine ends a job: the words for each interruption reason and
the action for each kind of failure the machine reports (the cause itself comes from it)."""

from __future__ import annotations

from ..errors import ErrorCode, machine_failure
from .records import Stage

# interrupted.json "reason" -> (stage, message, action) for the panel.
INTERRUPTION_WORDS = {
    "spot": (
        Stage.INTERRUPTED,
        "AWS took the spot machine back; {left} frames are left.",
        "Relaunch the missing frames (untick Spot: on-demand machines are not taken back).",
    ),
    "time_cap": (
        Stage.CAPPED,
        "The job reached its time cap and the machine stopped; {left} frames are left.",
        "Raise Max Hours or Max Cost, then relaunch the missing frames.",
    ),
    "stopped_after_quote": (
        Stage.CANCELLED,
        "Stopped after the quote; the {done} scout frames are kept.",
        "Relaunch the missing frames when you want the rest.",
    ),
    "no_answer_to_quote": (
        Stage.INTERRUPTED,
        "Nobody answered the quote in time, so the machine stopped; {done} scout frames are kept.",
        "Relaunch the missing frames to render the rest.",
    ),
}


# error.json "kind" -> what the artist can do about it (the cause itself comes from the machine).
FAILURE_ACTIONS = {
    ErrorCode.MACHINE_NO_GPU: "Pick another GPU machine type or region (a Cycles scene can also render on a CPU machine).",
    ErrorCode.MACHINE_NO_OPENGL: "Pick another GPU machine type or region: EEVEE and Workbench need the GPU's OpenGL.",
    ErrorCode.MACHINE_GPU_MEMORY: "Pick a machine with more GPU memory, or lower the resolution or texture sizes.",
    ErrorCode.MACHINE_MISSING_FILE: "Run Check Scene, fix the missing file, and render again.",
    ErrorCode.MACHINE_CREDENTIALS_EXPIRED: "Your AWS session expired mid-job: sign in again, then relaunch the missing frames.",
    ErrorCode.MACHINE_CONTRACT: "Update the Cloud Render add-on, then render again.",
    ErrorCode.MACHINE_UNSAFE_ARCHIVE: "A Blender build was refused as unsafe: relaunch to fetch the official one; "
    "if it happens again, delete blender-cache/ from your bucket.",
    ErrorCode.MACHINE_UNKNOWN: "Open the full log to see what Blender said, fix it, and relaunch.",
}


def failure_action(kind: str) -> str:
    """What the artist can do about a failure of this kind the machine reported (an unknown
    kind: read the log)."""
    return FAILURE_ACTIONS.get(machine_failure(kind), FAILURE_ACTIONS[ErrorCode.MACHINE_UNKNOWN])
