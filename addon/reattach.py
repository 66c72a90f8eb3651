"""Re-attach to running jobs when a .blend is opened: Blender may have been closed mid-render."""

from __future__ import annotations

import bpy
from bpy.app.handlers import persistent

from . import account, job_view, pump


def reattach() -> list[str]:
    """Follow this file's unfinished jobs again and show the frames that already came back."""
    if not bpy.app.online_access or not bpy.data.filepath or not account.has_credentials():
        return []
    manager = pump.manager()
    listed = {item.job_id for item in account.jobs()}
    for record in reversed(manager.store.all()):  # oldest first, so the newest ends on top
        if record.blend_name == bpy.data.filepath and record.job_id not in listed:
            item = account.jobs().add()
            item.job_id, item.blend_name, item.stage = record.job_id, record.blend_name, record.stage
            item.label = f"{record.instance_type} · {len(record.frames)} frames"
            item.frames_done, item.frames_total = len(record.frames_done), len(record.frames)
            item.created = record.created
    attached: list[str] = manager.attach_unfinished(bpy.data.filepath)
    for job_id in attached:
        job_view.load_frames_from_record(job_id)
    view = account.view()
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
