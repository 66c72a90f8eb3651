"""Per-job actions from the jobs list: show frames, log, folder, relaunch, delete, orphans."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import bpy

from ..addon import (
    account,
    job_view,
    jobs_list,
    local_blender,
    movie_view,
    panel_results,
    pump,
    qr_code,
    submit,
)
from .common import NeedsOnlineAccess, OperatorReturn, in_background, said_in_for


def _selected_job(context: bpy.types.Context, job_id: str) -> str:
    return job_id or jobs_list.selected_job_id() or str(job_view.view().job_id)


class CLOUDRENDER_OT_show_frames(bpy.types.Operator):
    """Show the job's frames as one image sequence in an Image Editor"""

    bl_idname = "cloud_render.show_frames"
    bl_label = "Show Frames"
    job_id: bpy.props.StringProperty()  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        job_id = _selected_job(context, self.job_id)
        if not job_view.frame_files(job_id):
            job_view.load_frames_from_record(job_id)
        if job_view.show_frames(job_id, open_editor=True) is None:
            self.report({"WARNING"}, "No frames have arrived for this job yet.")
            return {"CANCELLED"}
        return {"FINISHED"}


class CLOUDRENDER_OT_show_movie(bpy.types.Operator):
    """Open the job's movie in Blender: as a Movie Clip, or as a new strip in this scene's sequencer"""

    bl_idname = "cloud_render.show_movie"
    bl_label = "Show Movie"
    job_id: bpy.props.StringProperty()  # type: ignore[valid-type]
    open_as: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Open As",
        items=[
            ("CLIP", "Movie Clip", "Load it as a Movie Clip, shown in Clip Editors"),
            ("SEQUENCER", "Sequencer Strip", "Add it as a new strip in this scene's Video Sequencer"),
        ],
        default="CLIP",
    )

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        job_id = _selected_job(context, self.job_id)
        if movie_view.show_movie(job_id, self.open_as) is None:
            self.report(
                {"WARNING"}, "This job has no movie on this computer: it is made once every frame is in."
            )
            return {"CANCELLED"}
        return {"FINISHED"}


class CLOUDRENDER_OT_make_movie(NeedsOnlineAccess, bpy.types.Operator):
    """Make the job's movie on this computer from its downloaded frames, in a background Blender"""

    bl_idname = "cloud_render.make_movie"
    bl_label = "Make Movie Here"
    job_id: bpy.props.StringProperty()  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        from ..cloud.job import local_movie

        job_id = _selected_job(context, self.job_id)
        manager = pump.manager()
        record = manager.store.load(job_id)
        settings = manager.settings_for().in_region(record.region)
        blender = local_blender.blender_command()

        def work() -> tuple[Path, float]:
            path, seconds = local_movie.assemble_here(manager.steps, settings, record, blender)
            fresh = manager.store.load(job_id)
            fresh.movie_path, fresh.movie_error = str(path), ""
            manager.store.save(fresh)
            movie_view.forget(job_id)
            return path, seconds

        in_background(
            work, lambda made: f"Movie made here in {made[1]:.1f} s: {made[0].name}", said_in_for(job_id)
        )
        self.report({"INFO"}, "Making the movie from the frames in a background Blender.")
        return {"FINISHED"}


class CLOUDRENDER_OT_open_log(bpy.types.Operator):
    """Put the job's full log in a Text data-block (shown in a Text Editor if one is open)"""

    bl_idname = "cloud_render.open_log"
    bl_label = "Open Full Log"
    job_id: bpy.props.StringProperty()  # type: ignore[valid-type]
    machine: bpy.props.IntProperty(default=-1)  # type: ignore[valid-type]  # one machine's log only

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        job_id = _selected_job(context, self.job_id)
        text = job_view.fill_log_text(job_id, self.machine)
        self.report({"INFO"}, f"Log in the Text data-block '{text.name}'.")
        return {"FINISHED"}


class CLOUDRENDER_OT_open_folder(bpy.types.Operator):
    """Open the folder the job's frames are downloaded to"""

    bl_idname = "cloud_render.open_folder"
    bl_label = "Open Folder"
    job_id: bpy.props.StringProperty()  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        record = pump.manager().store.load(_selected_job(context, self.job_id))
        folder = Path(record.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        bpy.ops.wm.path_open(filepath=str(folder))
        return {"FINISHED"}


class CLOUDRENDER_OT_open_job_page(NeedsOnlineAccess, bpy.types.Operator):
    """Open this job's page in the web browser: its link works on a phone too (state, frames,
    time left, cost so far), until the date shown under the button"""

    bl_idname = "cloud_render.open_job_page"
    bl_label = "Open on Phone"
    job_id: bpy.props.StringProperty()  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        link = job_view.page_link(self.job_id)
        if link is None:
            self.report({"WARNING"}, "This job has no page yet: it is written once the machines start.")
            return {"CANCELLED"}
        url, until = link
        if time.time() >= until:
            self.report({"WARNING"}, "This job's page link has expired (links last 7 days at most).")
            return {"CANCELLED"}
        bpy.ops.wm.url_open(url=url)
        return {"FINISHED"}


class CLOUDRENDER_OT_copy_job_page_link(bpy.types.Operator):
    """Copy the link of this job's page, to send it to your phone (anyone holding the link can
    see the job's progress and cost, and nothing else, until the date shown)"""

    bl_idname = "cloud_render.copy_job_page_link"
    bl_label = "Copy Link"
    job_id: bpy.props.StringProperty()  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        link = job_view.page_link(self.job_id)
        if link is None or time.time() >= link[1]:
            self.report({"WARNING"}, "This job has no page link to copy (not written yet, or expired).")
            return {"CANCELLED"}
        context.window_manager.clipboard = link[0]
        self.report(
            {"INFO"},
            "Link copied: it works until " + time.strftime("%a %d %b %H:%M", time.localtime(link[1])),
        )
        return {"FINISHED"}


class CLOUDRENDER_OT_show_job_page_qr(bpy.types.Operator):
    """Show or hide this job's page link as a QR code, to open it with your phone's camera"""

    bl_idname = "cloud_render.show_job_page_qr"
    bl_label = "QR Code"
    job_id: bpy.props.StringProperty()  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        if job_view.page_link(self.job_id) is None:
            self.report({"WARNING"}, "This job has no page yet: it is written once the machines start.")
            return {"CANCELLED"}
        qr_code.toggle(self.job_id)
        return {"FINISHED"}


class CLOUDRENDER_OT_relaunch_missing(NeedsOnlineAccess, bpy.types.Operator):
    """Render again only the frames that did not arrive (the scene is not uploaded again)"""

    bl_idname = "cloud_render.relaunch_missing"
    bl_label = "Relaunch Missing Frames"
    job_id: bpy.props.StringProperty()  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        from ..cloud.errors import CloudError

        try:
            record = submit.relaunch_missing(context, _selected_job(context, self.job_id))
        except CloudError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Relaunched {len(record.frames)} frames as {record.job_id}.")
        return {"FINISHED"}


class CLOUDRENDER_OT_delete_cloud_data(NeedsOnlineAccess, bpy.types.Operator):
    """Delete this job's files from your S3 bucket (downloaded frames stay on disk). Counts them
    first and asks under the Jobs list"""

    bl_idname = "cloud_render.delete_cloud_data"
    bl_label = "Delete Cloud Data"
    job_id: bpy.props.StringProperty()  # type: ignore[valid-type]
    # ASK: count the job's files and ask under the Jobs list; DELETE: the artist said yes there;
    # KEEP: the artist said no.
    answer: bpy.props.EnumProperty(  # type: ignore[valid-type]
        items=[("ASK", "Ask", ""), ("DELETE", "Delete", ""), ("KEEP", "Keep", "")],
        default="ASK",
        options={"SKIP_SAVE"},
    )

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        job_id = _selected_job(context, self.job_id)
        shown = panel_results.results()
        view = job_view.view()
        label = jobs_list.label(job_id)
        shown.delete_ask = None
        if self.answer == "KEEP":
            view.jobs_status = f"Kept the cloud files of {label}."
            job_view.redraw()
            return {"FINISHED"}
        if self.answer == "ASK":  # the count is a listing: off the main thread, then the question
            view.jobs_status = f"Counting the cloud files of {label}..."

            def counted(found: tuple[int, int] | None, error: Any) -> None:
                view = job_view.view()
                if error is not None:
                    view.jobs_status = f"{error.message} {error.action}".strip()
                else:
                    assert found is not None
                    view.jobs_status = ""
                    panel_results.results().delete_ask = panel_results.DeleteAsk(job_id, label, *found)
                job_view.redraw()

            pump.in_background(lambda: pump.manager().cloud_data_size(job_id), counted)
            return {"FINISHED"}

        def deleted(count: int) -> str:
            jobs_list.remove(job_id)
            return f"Deleted {count} cloud file{'s' * (count != 1)} of {label}."

        # Said under the Jobs list, where the button is: the Current Job's headline is its own.
        in_background(lambda: pump.manager().delete_cloud_data(job_id), deleted, "jobs")
        return {"FINISHED"}


class CLOUDRENDER_OT_find_orphans(NeedsOnlineAccess, bpy.types.Operator):
    """Look for render machines still running in your account with no live job"""

    bl_idname = "cloud_render.find_orphans"
    bl_label = "Check for Forgotten Machines"

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        also = (context.scene.cloud_render.region, account.preferences().default_region)

        def found(orphans: Any, error: Any) -> None:
            view = job_view.view()
            if error is not None:
                view.jobs_status = f"{error.message} {error.action}".strip()
            else:
                # Said by the red line at the top of the panel and the rows in Jobs; the current
                # job's own message and action stay (the real window showed a failed job's
                # quota message replaced by "1 forgotten machines found.").
                panel_results.results().forgotten = list(orphans)
            job_view.redraw()

        pump.in_background(lambda: pump.manager().forgotten_machines(*also), found)
        return {"FINISHED"}


class CLOUDRENDER_OT_terminate_orphan(NeedsOnlineAccess, bpy.types.Operator):
    """Terminate a render machine that no job is using, so it stops billing"""

    bl_idname = "cloud_render.terminate_orphan"
    bl_label = "Terminate"
    launch_id: bpy.props.StringProperty()  # type: ignore[valid-type]
    region: bpy.props.StringProperty()  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        launch_id, region = self.launch_id, self.region
        shown = panel_results.results()
        machine = next((m for m in shown.forgotten if (m.launch_id, m.region) == (launch_id, region)), None)
        if machine is None:  # only what the search found (and so knows the engine of) is stopped
            self.report({"WARNING"}, "That machine is not in the list: Check for Forgotten Machines again.")
            return {"CANCELLED"}

        def terminated(_result: None) -> str:
            found = panel_results.results()
            found.forgotten = [m for m in found.forgotten if m != machine]
            return f"Terminated {launch_id}."

        in_background(lambda: pump.manager().stop_forgotten(machine), terminated, "jobs")
        return {"FINISHED"}


class CLOUDRENDER_OT_proof_frame(bpy.types.Operator):
    """Render the job's first frame here, small, in a background Blender and compare it with the cloud's, side by side"""

    bl_idname = "cloud_render.proof_frame"
    bl_label = "Proof Frame"
    job_id: bpy.props.StringProperty()  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        from ..addon import proof_frame
        from ..cloud.errors import CloudError

        job_id = _selected_job(context, self.job_id)
        if not job_view.frame_files(job_id):
            job_view.load_frames_from_record(job_id)
        try:
            plan = proof_frame.plan(job_id)
        except CloudError as error:
            self.report({"WARNING"}, f"{error.message} {error.action}")
            return {"CANCELLED"}

        def shown(proof: proof_frame.Proof) -> str:
            proof_frame.show(proof)
            return proof.result.words() + (f" Likely cause: {proof.cause}" if proof.cause else "")

        proof_frame.open_editor()  # here, where the operator's context can open a window
        in_background(lambda: proof_frame.render_and_compare(plan), shown, said_in_for(job_id))
        self.report({"INFO"}, f"Rendering frame {plan.frame} here to compare with the cloud's.")
        return {"FINISHED"}


classes = (
    CLOUDRENDER_OT_proof_frame,
    CLOUDRENDER_OT_show_frames,
    CLOUDRENDER_OT_show_movie,
    CLOUDRENDER_OT_make_movie,
    CLOUDRENDER_OT_open_log,
    CLOUDRENDER_OT_open_folder,
    CLOUDRENDER_OT_open_job_page,
    CLOUDRENDER_OT_copy_job_page_link,
    CLOUDRENDER_OT_show_job_page_qr,
    CLOUDRENDER_OT_relaunch_missing,
    CLOUDRENDER_OT_delete_cloud_data,
    CLOUDRENDER_OT_find_orphans,
    CLOUDRENDER_OT_terminate_orphan,
)
