"""Properties > Output > Cloud Render: settings, the live job, the jobs list. Drawing only."""

from __future__ import annotations

import time
from typing import Any

import bpy

from ..addon import job_view, jobs_list, movie_view, panel_results, prices, qr_code, submit
from ..addon.settings import scene_samples, snapshot
from ..cloud.aws.quotas import QUOTA_ERROR_CODES
from ..cloud.cost import machine_facts
from ..cloud.errors import CloudError
from ..cloud.job.records import FINAL_STAGE_IDS, Stage
from . import text_wrap

FORM_VALUES = 0.6  # the share of a property-split form's width that holds the values
MACHINE_ROW = 0.86  # the share of the width a machine's row leaves beside its log button
STATE_ICONS = {
    Stage.DONE: "CHECKMARK",
    Stage.FAILED: "ERROR",
    Stage.CAPPED: "ERROR",
    Stage.INTERRUPTED: "ERROR",
}


def stage_words(stage_id: str) -> str:
    """The words shown for a stored stage id ("" before any job)."""
    try:
        return Stage.parse(stage_id).label
    except ValueError:
        return stage_id


def _elapsed(job_id: str) -> str:
    seconds = job_view.elapsed_seconds(job_id)
    if seconds is None:
        return ""
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class CLOUDRENDER_PT_main(bpy.types.Panel):
    bl_label = "Cloud Render"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "output"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        blockers = submit.render_blockers(context)
        row = layout.row()
        row.scale_y = 1.5
        row.enabled = not blockers
        row.operator("cloud_render.render", icon="RENDER_ANIMATION")
        for reason in blockers:
            text_wrap.labels(layout, context, reason, icon="INFO")
        shown = panel_results.results()
        forgotten = len(shown.forgotten)
        if forgotten:  # billing with no job: said where the artist looks, not only in Jobs
            col = layout.column()
            col.alert = True
            text_wrap.labels(
                col,
                context,
                f"{forgotten} machine{'s' * (forgotten > 1)} still running with no job: "
                "terminate {0} in Jobs below.".format("them" if forgotten > 1 else "it"),
                icon="ERROR",
            )
        row = layout.row()
        row.operator("cloud_render.check_scene", icon="CHECKMARK")
        row.operator("cloud_render.estimate", icon="TIME")
        now = panel_results.made_from(context.scene)  # what is found holds for these settings
        if shown.estimate or shown.estimate_all or shown.estimate_note:
            box = layout.box()
            stale = shown.estimate_stale(now)
            if stale:  # the old figures stay readable, greyed, under what changed
                text_wrap.labels(box, context, stale, icon="ERROR")
                box = box.column()
                box.active = False
            rows = shown.rows(context.scene.cloud_render.instance_type)
            for line in [shown.estimate_note] if shown.estimate_note else [row.text for row in rows]:
                text_wrap.labels(box, context, line)
        if shown.findings:
            box = layout.box()
            stale = shown.findings_stale(now)
            if stale:
                text_wrap.labels(box, context, stale, icon="ERROR")
                box = box.column()
                box.active = False
            for finding in shown.findings:
                text_wrap.labels(
                    box,
                    context,
                    f"{finding.severity.upper()}: {finding.message} -> {finding.fix}",
                    icon="ERROR" if finding.severity == "block" else "QUESTION",
                )


def _form_column(layout: bpy.types.UILayout) -> bpy.types.UILayout:
    """The value column of a property-split form, for text that belongs beside the fields."""
    split = layout.split(factor=1.0 - FORM_VALUES)
    split.label(text="")
    return split.column()


def _override(layout: bpy.types.UILayout, settings: Any, toggle: str, value: str, scene_text: str) -> None:
    """An override that reads as one: a checkbox, and the value only when it overrides."""
    row = layout.row(heading=settings.bl_rna.properties[value].name)
    row.prop(settings, toggle, text="")
    if getattr(settings, toggle):
        row.prop(settings, value, text="")
    else:
        row.label(text=scene_text)


class CLOUDRENDER_PT_settings(bpy.types.Panel):
    bl_label = "Machine and Frames"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "output"
    bl_parent_id = "CLOUDRENDER_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        settings = context.scene.cloud_render
        layout.prop(settings, "region")
        row = layout.row(align=True)
        row.prop(settings, "instance_type")
        row.menu("CLOUDRENDER_MT_instance_types", text="", icon="DOWNARROW_HLT")
        try:
            price = prices.hourly(settings.region, settings.instance_type, settings.use_spot)
            info = machine_facts.instance(settings.instance_type, prices.catalog())
            facts = _form_column(layout)
            label = machine_facts.label(info, settings.region, price.usd)
            text_wrap.labels(facts, context, label, factor=FORM_VALUES)
            text_wrap.labels(facts, context, price.words(), factor=FORM_VALUES)
        except CloudError as error:
            text_wrap.labels(layout, context, error.message, icon="ERROR")
        layout.prop(settings, "use_spot")
        layout.prop(settings, "machines")
        layout.prop(settings, "finish_within_minutes")
        try:  # time and cost for 1, N/2 and N machines, once Estimate has measured a frame
            hourly = prices.hourly(settings.region, settings.instance_type, settings.use_spot).usd or 0.0
            fleet = submit.fleet_line(snapshot(context.scene), len(submit.frames_for(context.scene)), hourly)
        except CloudError:
            fleet = ""
        if fleet:
            text_wrap.labels(_form_column(layout), context, fleet, factor=FORM_VALUES)
        layout.prop(settings, "use_custom_frames")
        if settings.use_custom_frames:
            layout.prop(settings, "frame_list")
        layout.prop(settings, "frame_order")
        layout.prop(settings, "quote_first")
        layout.prop(settings, "proof_first")
        # "Render Despite Differences" is cut at the default width: the heading says what it is
        # about, the tick box what it does, the tooltip the whole of it.
        layout.row(heading="Differences").prop(settings, "render_despite_differences", text="Render Anyway")
        _override(layout, settings, "use_samples", "samples", f"Scene's: {scene_samples(context.scene)}")
        _override(
            layout,
            settings,
            "use_resolution",
            "resolution_percentage",
            f"Scene's: {context.scene.render.resolution_percentage}%",
        )
        if context.scene.render.is_movie_format:  # the movie is encoded from these once all are in
            layout.prop(settings, "movie_frames")
        else:
            layout.prop(settings, "file_format")
        layout.prop(settings, "output_dir")
        _form_column(layout).label(text="Hard Caps", icon="LOCKED")  # the machine stops at either
        col = layout.column(align=True)
        col.prop(settings, "max_cost")
        col.prop(settings, "max_hours")
        try:  # what the caps allow at most, on as many machines as the job will use
            taken = snapshot(context.scene)
            frames = len(submit.frames_for(context.scene, taken))
            bound = submit.worst_case_text(taken, frames, submit.machines_for(taken, frames))
        except CloudError:
            bound = ""
        if bound:
            text_wrap.labels(_form_column(layout), context, bound, factor=FORM_VALUES)


class CLOUDRENDER_MT_instance_types(bpy.types.Menu):
    """Machines offered in the scene's region: GPU, memory and price per hour."""

    bl_label = "Machine Type"

    def draw(self, context: bpy.types.Context | None) -> None:
        settings = bpy.context.scene.cloud_render
        for name, text in prices.menu(settings.region, settings.use_spot):
            self.layout.operator("cloud_render.set_instance_type", text=text).instance_type = name


def _cost(usd: float) -> str:
    return "under $0.01" if 0 < usd < 0.005 else f"${usd:.2f}"


def _megabytes(mb: float) -> str:
    """38 kB, 3.2 MB, 41 MB, 12.3 GB: at most 8 characters, for half a row (the machine's log
    says kB too; 12 small frames read "0.0 MB" in the real window)."""
    if mb >= 1000:
        return f"{mb / 1000:.1f} GB"
    if mb < 0.1:
        return f"{max(mb * 1000, 1):.0f} kB"
    return f"{mb:.1f} MB" if mb < 10 else f"{mb:.0f} MB"


def _rate(mb_s: float) -> str:
    """12.3 MB/s, 850 kB/s: how fast frames come down, in at most 10 characters."""
    if mb_s < 1:
        return f"{max(mb_s * 1000, 1):.0f} kB/s"
    return f"{mb_s:.1f} MB/s" if mb_s < 100 else f"{mb_s:.0f} MB/s"


def _draw_live(layout: bpy.types.UILayout, context: bpy.types.Context, view: Any) -> None:
    """While the job runs: progress, the frame and sample on the machine, time and cost."""
    v = view
    state = stage_words(v.state)
    staging = v.state in {Stage.PACKING, Stage.UPLOADING}
    total = max(v.frames_total, 1)
    layout.progress(
        factor=v.progress if staging else v.frames_done / total,
        type="BAR",
        text=(f"{state} {v.progress * 100:.0f}%" if v.progress else state)  # tracing: no share known
        if staging
        else f"{v.frames_done}/{v.frames_total} frames",
    )
    if v.current_frame:  # a whole row: in half of one "sample 1/2500" was cut to "1/2..."
        layout.label(
            text=f"Frame {v.current_frame}"
            + (f", sample {v.sample}/{v.samples_total}" if v.samples_total else "")
        )
    grid = layout.grid_flow(columns=2, even_columns=True)
    grid.label(text=f"Elapsed {_elapsed(v.job_id)}")
    grid.label(text=f"Cost so far {_cost(v.cost_so_far)}")
    if v.projected_cost:
        grid.label(text=f"Projected {_cost(v.projected_cost)}")
    if v.seconds_per_frame:
        grid.label(text=f"{v.seconds_per_frame:.1f} s/frame")
    if v.device:
        grid.label(text=f"Device {v.device}")
    if v.eta_s:
        grid.label(text=f"About {max(1, round(v.eta_s / 60))} min left")
    if v.frames_downloaded:  # nothing before the first frame came down
        grid.label(text=f"Downloaded {_megabytes(v.downloaded_mb)}")
        if v.download_mb_s:
            grid.label(text=f"Download {_rate(v.download_mb_s)}")
    for index, line in enumerate(v.machines_text.splitlines()):  # many machines: one row each
        row = layout.row()
        # wrapped beside its log button ("Machine 0: render...rame (on-demand)" when cut)
        text_wrap.labels(row.column(), context, line, icon="DESKTOP", factor=MACHINE_ROW)
        button = row.operator("cloud_render.open_log", text="", icon="TEXT")
        button.job_id, button.machine = v.job_id, index


def _movie_buttons(layout: bpy.types.UILayout, job_id: str) -> None:
    """Show Movie when it is here; Make Movie Here when a finished movie job has none."""
    if movie_view.can_make_here(job_id):
        layout.operator("cloud_render.make_movie", icon="FILE_MOVIE").job_id = job_id
    if not movie_view.movie_file(job_id):
        return
    for open_as, text in (("CLIP", "Show Movie"), ("SEQUENCER", "Movie to Sequencer")):
        op = layout.operator("cloud_render.show_movie", text=text, icon="FILE_MOVIE")
        op.job_id, op.open_as = job_id, open_as


def _draw_result(layout: bpy.types.UILayout, context: bpy.types.Context, view: Any) -> None:
    """When the job has ended: the frames, where they are, what it cost, and the buttons."""
    v = view
    box = layout.box()
    text_wrap.labels(  # "3/12000 frames in 0:00:38, cost under $0.01" is cut in one line
        box,
        context,
        f"{v.frames_done}/{v.frames_total} frames in {_elapsed(v.job_id)}, cost {_cost(v.cost_so_far)}",
        icon="RENDER_RESULT",
    )
    if v.frames_downloaded:
        frames = "1 frame" if v.frames_downloaded == 1 else f"{v.frames_downloaded} frames"
        text_wrap.labels(
            box,
            context,
            f"Downloaded {frames}, {_megabytes(v.downloaded_mb)}"
            + (f", at {_rate(v.download_mb_s)}" if v.download_mb_s else ""),
            icon="IMPORT",
        )
    folder = job_view.output_folder(v.job_id)
    if folder:
        text_wrap.labels(box, context, folder, icon="FILE_FOLDER")
    row = box.row()
    row.operator("cloud_render.open_folder", icon="FILE_FOLDER").job_id = v.job_id
    row.operator("cloud_render.show_frames", icon="IMAGE_DATA").job_id = v.job_id
    _movie_buttons(box.row(), v.job_id)


def _page_button(layout: bpy.types.UILayout, context: bpy.types.Context, job_id: str) -> None:
    """The job's page for a phone (once written): a button that opens its link, and until when."""
    link = job_view.page_link(job_id)
    if link is None:
        return
    url, until = link
    if time.time() >= until:
        text_wrap.labels(layout, context, "The job's page link has expired.", icon="URL")
        return
    row = layout.row(align=True)
    row.operator("cloud_render.open_job_page", icon="URL").job_id = job_id
    row.operator("cloud_render.copy_job_page_link", text="", icon="COPYDOWN").job_id = job_id
    shown = qr_code.is_shown(job_id)
    row.operator("cloud_render.show_job_page_qr", text="QR", depress=shown).job_id = job_id
    layout.label(text="Link valid until " + time.strftime("%a %d %b %H:%M", time.localtime(until)))
    if shown:  # for the phone's camera: the code at its own size, centred
        icon_id, scale = qr_code.icon(job_id, url)
        row = layout.row()
        row.alignment = "CENTER"
        row.template_icon(icon_value=icon_id, scale=scale)


class CLOUDRENDER_PT_job(bpy.types.Panel):
    bl_label = "Current Job"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "output"
    bl_parent_id = "CLOUDRENDER_PT_main"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(job_view.view().job_id)

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        view = job_view.view()
        final = view.state in FINAL_STAGE_IDS
        message = view.message
        if view.state == Stage.RENDERING and not message and view.current_frame:
            message = f"frame {view.current_frame}"
        words = stage_words(view.state)
        text_wrap.labels(
            layout,
            context,
            f"{words}: {message}" if message else words,
            icon=STATE_ICONS.get(view.state, "CANCEL" if final else "TIME"),
        )
        if view.action:
            text_wrap.labels(layout, context, view.action, icon="INFO")
            if view.error_code in QUOTA_ERROR_CODES:
                layout.operator("cloud_render.request_quota", icon="PLUS").from_job = True
        if view.state == Stage.QUOTED:  # the answer right under the question, above the log
            row = layout.row()
            row.scale_y = 1.3
            row.operator("cloud_render.answer_quote", text="Go On", icon="PLAY").go = True
            row.operator("cloud_render.answer_quote", text="Stop Here", icon="PAUSE").go = False
        if not final:
            _draw_live(layout, context, view)
            away = job_view.away_text(view.job_id, view.state)
            if away:  # "can I close my laptop?", answered where the job is shown
                text_wrap.labels(layout, context, away, icon="HOME")
        elif view.frames_done:  # a job that ended with nothing to show has no result box
            _draw_result(layout, context, view)
        if view.log_tail:
            log = layout.box().column(align=True)
            for line in view.log_tail.splitlines()[-job_view.PANEL_LOG_LINES :]:
                text_wrap.labels(log, context, line)
        row = layout.row()
        row.operator("cloud_render.open_log", icon="TEXT").job_id = view.job_id
        if not final:
            row.operator("cloud_render.show_frames", icon="IMAGE_DATA").job_id = view.job_id
        _page_button(layout, context, view.job_id)
        if not final:
            layout.operator("cloud_render.cancel", icon="CANCEL").job_id = view.job_id


class CLOUDRENDER_UL_jobs(bpy.types.UIList):
    """This file's jobs, newest first (the list is built that way from the job records)."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index, flt_flag=0):  # type: ignore[no-untyped-def,override]
        # What tells jobs apart in a narrow editor: the label (machine, time) and the outcome;
        # the job id is in the log and the folder name.
        # Half a row each: the time first ("c5.2xlarge · 24 fram..." cut the time off).
        row = layout.row()
        # A job of another computer (listed from the bucket): marked, and no frame count kept here.
        row.label(text=item.row_label or item.label, icon="WORLD" if item.elsewhere else "NONE")
        if item.elsewhere:
            row.label(text=stage_words(item.stage))
        else:
            row.label(text=f"{stage_words(item.stage)} {item.frames_done}/{item.frames_total}")


class CLOUDRENDER_PT_jobs(bpy.types.Panel):
    bl_label = "Jobs"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "output"
    bl_parent_id = "CLOUDRENDER_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        wm = context.window_manager
        view = job_view.view()
        for machine in panel_results.results().forgotten:
            col = layout.column()
            col.alert = True
            text_wrap.labels(
                col,
                context,
                f"Machine {machine.launch_id} in {machine.region} is still running "
                f"(job {machine.job_id or 'unknown'})",
                icon="ERROR",
            )
            terminate = col.operator("cloud_render.terminate_orphan", text="Terminate", icon="CANCEL")
            terminate.launch_id, terminate.region = machine.launch_id, machine.region
        layout.template_list(
            "CLOUDRENDER_UL_jobs", "", wm, "cloud_render_jobs", wm, "cloud_render_jobs_index"
        )
        job_id = jobs_list.selected_job_id()
        selected = wm.cloud_render_jobs[wm.cloud_render_jobs_index] if job_id else None
        if selected is not None and selected.elsewhere:
            text_wrap.labels(layout, context, selected.label, icon="WORLD")
            row = layout.row()
            row.operator("cloud_render.follow_job", icon="IMPORT").job_id = job_id
            if selected.stage not in FINAL_STAGE_IDS:
                row.operator("cloud_render.cancel", icon="CANCEL").job_id = job_id
        elif job_id:
            grid = layout.grid_flow(columns=2, even_columns=True)  # three cut every name
            grid.operator("cloud_render.open_folder", icon="FILE_FOLDER").job_id = job_id
            grid.operator("cloud_render.show_frames", icon="IMAGE_DATA").job_id = job_id
            grid.operator("cloud_render.proof_frame", icon="IMAGE_REFERENCE").job_id = job_id
            grid.operator("cloud_render.open_log", icon="TEXT").job_id = job_id
            _movie_buttons(grid, job_id)
            row = wm.cloud_render_jobs[wm.cloud_render_jobs_index]
            if row.stage not in FINAL_STAGE_IDS:  # a job beside the Current Job stops here
                grid.operator("cloud_render.cancel", icon="CANCEL").job_id = job_id
            grid.operator("cloud_render.delete_cloud_data", icon="TRASH").job_id = job_id
            # A whole row: in half of one it read "Relaunch Missing..."
            layout.operator("cloud_render.relaunch_missing", icon="FILE_REFRESH").job_id = job_id
        ask = panel_results.results().delete_ask
        if ask is not None:  # what Delete Cloud Data counted, asked before anything is deleted
            box = layout.box()
            text_wrap.labels(box, context, ask.text, icon="TRASH")
            row = box.row()
            yes = row.operator("cloud_render.delete_cloud_data", text="Delete", icon="TRASH")
            yes.job_id, yes.answer = ask.job_id, "DELETE"
            no = row.operator("cloud_render.delete_cloud_data", text="Keep", icon="CANCEL")
            no.job_id, no.answer = ask.job_id, "KEEP"
        layout.operator("cloud_render.other_jobs", icon="WORLD")
        layout.operator("cloud_render.find_orphans", icon="VIEWZOOM")
        if view.jobs_status:  # what the last button here did (Delete Cloud Data, Terminate, ...)
            text_wrap.labels(layout, context, view.jobs_status, icon="INFO")


def draw_render_menu(self: Any, context: bpy.types.Context) -> None:
    """Render > Render in Cloud, beside Render Image and Render Animation: where artists look first."""
    self.layout.separator()
    still = self.layout.operator(
        "cloud_render.render", text="Render This Frame in Cloud", icon="RENDER_STILL"
    )
    still.this_frame = True
    self.layout.operator("cloud_render.render", icon="RENDER_ANIMATION")


classes = (
    CLOUDRENDER_MT_instance_types,
    CLOUDRENDER_PT_main,
    CLOUDRENDER_PT_settings,
    CLOUDRENDER_PT_job,
    CLOUDRENDER_UL_jobs,
    CLOUDRENDER_PT_jobs,
)
