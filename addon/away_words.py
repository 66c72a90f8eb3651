"""What becomes of a running job if Blender, or the computer, is closed: said in the Current Job
panel, because a cloud render is what an artist starts before leaving ("can I close my laptop?").

The words follow what the job does without Blender: the upload needs this computer; once the
machines run they render on, stop themselves at the end or at their caps, and the frames wait in
the bucket until the file is opened again (the job re-attaches then and fetches what landed)."""

from __future__ import annotations

from ..cloud.job.records import EngineName, JobRecord, Stage
from ..cloud.machine.contract import QUOTE_WAIT_S

RUNNING = (Stage.STARTING, Stage.INSTALLING, Stage.RENDERING)


def away_text(record: JobRecord, stage: str) -> str:
    """One sentence for the job at `stage` (its record's fixed facts: machines, caps, engine);
    "" once it has ended: nothing runs without Blender then."""
    still = record.cloud_engine == EngineName.STILL.value
    what, done = ("the image", "is done") if still else ("the frames", "are done")
    if stage in (Stage.PACKING, Stage.UPLOADING):
        return "Keep Blender open until the upload ends: the scene goes up from this computer."
    if stage == Stage.QUOTED:
        return (
            f"If Blender is closed now, the machine waits {QUOTE_WAIT_S / 60:.0f} min for Go On, "
            "then stops after its scout frames."
        )
    if stage == Stage.DOWNLOADING:
        return f"The machines have ended. If Blender is closed now, open this file again to fetch {what}."
    if stage not in RUNNING:
        return ""
    hours = f"{record.max_hours:g} h"
    if record.machines > 1:
        share = record.max_cost / record.machines
        machines = (
            f"the {record.machines} machines render on; each stops itself when {what} {done}, at "
            f"${share:.2f} (its share of the ${record.max_cost:.2f} cap) or after {hours}"
        )
    else:
        machines = (
            f"the machine renders on and stops itself when {what} {done}, at the "
            f"${record.max_cost:.2f} cap or after {hours}"
        )
    return f"You may close Blender and this computer: {machines}. Open this file again to fetch {what}."
