"""Re-attach to running jobs when a .blend is opened: Blender may have been closed mid-render."""

from __future__ import annotations

import bpy
from bpy.app.handlers import persistent

from . import account, job_view, jobs_list, pump


def reattach() -> list[str]:
    """Follow this file's unfinished jobs again and show the frames that already came back."""
    if not bpy.data.filepath:
        return []
    jobs_list.refresh()  # from the records on disk: no network needed to list them
    if not bpy.app.online_access or not account.has_credentials():
        return []
    manager = pump.manager()
    attached: list[str] = manager.attach_unfinished(bpy.data.filepath)
    for job_id in attached:
        job_view.load_frames_from_record(job_id)
        job_view.start_clock(job_id, manager.store.load(job_id).created)
    jobs_list.refresh()
    view = job_view.view()
    if attached and not view.job_id:
        view.job_id = attached[0]
    return attached


@persistent
def on_load_post(*_args: object) -> None:
    reattach()


def register() -> None:
    if on_load_post not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(on_load_post)
    pump.add_listener(job_view.apply_event)


def unregister() -> None:
    if on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(on_load_post)
    pump.remove_listener(job_view.apply_event)
    job_view.forget()
