"""The jobs list the panel draws: a mirror of the job records on disk, never saved anywhere.

The records (`cloud/job/records.py`, one JSON file per job in the extension's user folder)
are the one source of truth. The list is rebuilt from them when a file opens and after a
submit or a delete, and patched in place by job events in between, so the main thread reads
no record while a job runs. Below them, once Jobs on Other Computers was pressed, the jobs of
the account that this computer has no record of (read from the bucket in a worker thread),
marked as from another computer.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import bpy

from ..cloud.job.records import JobRecord
from . import panel_results, pump

if TYPE_CHECKING:
    from ..cloud.job.account_jobs import SharedJob


def items() -> Any:
    """WindowManager.cloud_render_jobs: this file's jobs, newest first."""
    return bpy.context.window_manager.cloud_render_jobs


def selected_job_id() -> str:
    wm = bpy.context.window_manager
    jobs = wm.cloud_render_jobs
    index = wm.cloud_render_jobs_index
    return str(jobs[index].job_id) if 0 <= index < len(jobs) else ""


def _fill(item: Any, record: JobRecord) -> None:
    item.job_id, item.blend_name, item.stage = record.job_id, record.blend_name, record.stage
    # Two jobs of one file often share machine and frames: the time tells them apart.
    item.label = f"{record.instance_type} · {len(record.frames)} frames · {when(record.created)}"
    # Half a row in the list: the time first (it tells alike jobs apart), the frames beside it.
    item.row_label = f"{when(record.created)} · {record.instance_type}"
    item.frames_done, item.frames_total = len(record.frames_done), len(record.frames)
    item.created = repr(record.created)
    item.elsewhere = False


def _fill_elsewhere(item: Any, job: SharedJob) -> None:
    summary = job.summary
    item.job_id, item.blend_name, item.stage = job.job_id, summary.blend_file, job.stage
    item.label = (
        f"From another computer: {summary.blend_file} · {summary.instance_type} · "
        f"{len(summary.frames)} frames · {when(summary.created)}"
    )
    item.row_label = f"{when(summary.created)} · {summary.blend_file}"
    item.frames_done, item.frames_total = 0, len(summary.frames)
    item.created = repr(summary.created)
    item.elsewhere = True


def when(created: float, now: float | None = None) -> str:
    """ "14:05" today, "7 Dec 14:05" before."""
    then, today = time.localtime(created), time.localtime(now)
    same_day = then[:3] == today[:3]
    return time.strftime("%H:%M" if same_day else "%-d %b %H:%M", then)


def label(job_id: str) -> str:
    """The job as the list names it ("c5.2xlarge · 24 frames · 14:05"), or its id."""
    return next((str(item.label) for item in items() if item.job_id == job_id), job_id)


def refresh(blend_name: str | None = None) -> None:
    """Rebuild the list from the records of `blend_name` (default: the open file)."""
    blend = bpy.data.filepath if blend_name is None else blend_name
    jobs = items()
    jobs.clear()
    known = set()
    for record in pump.manager().store.all():  # newest first
        known.add(record.job_id)
        if record.blend_name == blend:
            _fill(jobs.add(), record)
    for job in panel_results.results().elsewhere:  # listed from the bucket, still no record here
        if job.job_id not in known:
            _fill_elsewhere(jobs.add(), job)
    bpy.context.window_manager.cloud_render_jobs_index = 0


def show_elsewhere(jobs: list[SharedJob]) -> None:
    """The account's jobs this computer has no record of, below this file's (Jobs on Other Computers)."""
    panel_results.results().elsewhere = list(jobs)
    refresh()


def is_elsewhere(job_id: str) -> bool:
    return any(item.elsewhere for item in rows(job_id))


def add(record: JobRecord) -> None:
    """A job just submitted: on top of the list, selected."""
    jobs = items()
    _fill(jobs.add(), record)
    jobs.move(len(jobs) - 1, 0)
    bpy.context.window_manager.cloud_render_jobs_index = 0


def remove(job_id: str) -> None:
    """Take the job off the list; nothing is selected after (the row below moving up into the
    selection would make the next click act on a job nobody chose)."""
    jobs = items()
    wm = bpy.context.window_manager
    selected = selected_job_id()
    for index in reversed(range(len(jobs))):
        if jobs[index].job_id == job_id:
            jobs.remove(index)
    if selected == job_id:
        wm.cloud_render_jobs_index = -1
    elif selected:  # the same job stays selected where its row moved
        wm.cloud_render_jobs_index = next(i for i, item in enumerate(jobs) if item.job_id == selected)


def rows(job_id: str) -> list[Any]:
    return [item for item in items() if item.job_id == job_id]
