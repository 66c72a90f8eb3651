"""Re-attach to running jobs when a .blend is opened: Blender may have been closed mid-render."""

from __future__ import annotations

import bpy
from bpy.app.handlers import persistent

from . import account, job_view, jobs_list, panel_results, proof_frame, pump


def reattach() -> list[str]:
    """Follow this file's unfinished jobs again, show the frames that already came back, and
    show the file's job in the Current Job panel: a file load gives Blender an empty view."""
    if not bpy.data.filepath:
        return []
    blend = bpy.data.filepath
    jobs_list.refresh()  # from the records on disk: no network needed to list them
    manager = pump.manager()
    unfinished = [r.job_id for r in manager.store.all() if r.blend_name == blend and not r.is_final]
    attached: list[str] = []
    if bpy.app.online_access and account.has_credentials():
        attached = manager.attach_unfinished(blend)
        for job_id in attached:
            job_view.load_frames_from_record(job_id)
            job_view.start_clock(job_id, manager.store.load(job_id).created)
        jobs_list.refresh()
    shown = _file_job(blend, unfinished)
    if shown:
        job_view.show(shown)
    return attached


def _file_job(blend: str, unfinished: list[str]) -> str:
    """The job the file's Current Job panel shows when it opens: the newest still rendering (the
    one to cancel; already followed when the file was opened again in this session), else the
    one it showed last in this session, else the newest that was unfinished as the file opened
    (ended while Blender was closed: its record says why)."""
    running = pump.manager().running_jobs(blend)
    if running:
        return running[0]
    last = job_view.file_job(blend)
    if last and last in {r.job_id for r in jobs_list.items()}:
        return last
    return unfinished[0] if unfinished else ""


# The file the open jobs belong to, as of the last load or save: "Save As" changes
# bpy.data.filepath, and the jobs must follow the file to its new name.
_open_file = ""


@persistent
def on_load_post(*_args: object) -> None:
    global _open_file
    _open_file = bpy.data.filepath
    reattach()


@persistent
def on_save_post(*_args: object) -> None:
    """After "Save As": the unfinished jobs of the old name now belong to the new one (a copy
    saved by a submit leaves bpy.data.filepath as it is, so it moves nothing)."""
    global _open_file
    new = bpy.data.filepath
    if _open_file and new and new != _open_file and pump.manager_exists():
        pump.manager().move_jobs(_open_file, new)
        job_view.move_file_job(_open_file, new)
        jobs_list.refresh(new)
    _open_file = new


def register() -> None:
    global _open_file
    # Blender enables add-ons at startup with bpy.data restricted (no filepath yet); the
    # load_post handler sets the file once one is open.
    _open_file = getattr(bpy.data, "filepath", "")
    if on_load_post not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(on_load_post)
    if on_save_post not in bpy.app.handlers.save_post:
        bpy.app.handlers.save_post.append(on_save_post)
    pump.add_listener(job_view.apply_event)
    pump.add_listener(proof_frame.on_event)  # Proof Frame First answers the quote


def unregister() -> None:
    if on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(on_load_post)
    if on_save_post in bpy.app.handlers.save_post:
        bpy.app.handlers.save_post.remove(on_save_post)
    pump.remove_listener(job_view.apply_event)
    pump.remove_listener(proof_frame.on_event)
    job_view.forget()
    panel_results.forget()
