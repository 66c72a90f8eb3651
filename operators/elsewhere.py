"""The account's jobs from other computers: list them from the bucket, follow one here.

Cancel is the jobs list's own Cancel (the job manager knows a listed job it has no record of).
"""

from __future__ import annotations

from typing import Any

import bpy

from ..addon import job_view, jobs_list, pump, submit
from ..addon.settings import snapshot
from .common import NeedsOnlineAccess, OperatorReturn


def _said(words: str) -> None:
    job_view.view().jobs_status = words
    job_view.redraw()


class CLOUDRENDER_OT_other_jobs(NeedsOnlineAccess, bpy.types.Operator):
    """List this account's recent jobs from its buckets: those started on other computers with the same keys show below this file's"""

    bl_idname = "cloud_render.other_jobs"
    bl_label = "Jobs on Other Computers"

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        def listed(result: Any, error: Any) -> None:
            if error is not None:
                _said(f"{error.message} {error.action}".strip())
                return
            listing, elsewhere = result
            jobs_list.show_elsewhere(elsewhere)  # also shows what the bucket changed of local records
            count = len(elsewhere)
            words = f"{count} job{'s' * (count != 1)} from other computers (of {len(listing.jobs)} recent)."
            if listing.skipped:
                words += f" {len(listing.skipped)} unreadable job summaries were skipped (the system console says why)."
            _said(words)

        _said("Looking for this account's jobs...")
        pump.in_background(lambda: pump.manager().jobs_elsewhere(), listed)
        return {"FINISHED"}


class CLOUDRENDER_OT_follow_job(NeedsOnlineAccess, bpy.types.Operator):
    """Follow this job here: its frames come into a folder next to this file, its log into the panel"""

    bl_idname = "cloud_render.follow_job"
    bl_label = "Follow Here"

    job_id: bpy.props.StringProperty()  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        job_id = self.job_id or jobs_list.selected_job_id()
        if not bpy.data.filepath:
            self.report({"WARNING"}, "Save this file first: the job's frames go into a folder next to it.")
            return {"CANCELLED"}
        output = submit.output_dir_for(snapshot(context.scene), job_id)  # the add-on's usual rule
        blend = bpy.data.filepath

        def followed(record: Any, error: Any) -> None:
            if error is not None:
                _said(f"{error.message} {error.action}".strip())
                return
            jobs_list.refresh()
            job_view.begin(record.job_id, job_view.state_from_record(record))
            job_view.start_clock(record.job_id, record.created)
            _said(f"Following {record.job_id} here: its frames go to {record.output_dir}.")

        pump.in_background(lambda: pump.manager().follow_shared(job_id, output, blend), followed)
        return {"FINISHED"}


classes = (CLOUDRENDER_OT_other_jobs, CLOUDRENDER_OT_follow_job)
