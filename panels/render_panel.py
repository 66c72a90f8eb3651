"""Properties > Output > Cloud Render: settings, the live job, the jobs list. Drawing only."""

from __future__ import annotations

import bpy

from ..addon import job_view, jobs_list, prices, submit
from ..cloud.aws.quotas import QUOTA_ERROR_CODES
from ..cloud.cost import machine_facts
from ..cloud.errors import CloudError
from ..cloud.job.records import FINAL_STAGES


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
            layout.label(text=reason, icon="INFO")
        row = layout.row()
        row.operator("cloud_render.check_scene", icon="CHECKMARK")
        row.operator("cloud_render.estimate", icon="TIME")
        estimate = job_view.view().estimate
        if estimate:
            box = layout.box()
            for line in estimate.splitlines():
                box.label(text=line)
        findings = job_view.view().findings
        if findings:
            box = layout.box()
            for line in findings.splitlines():
                box.label(text=line, icon="ERROR" if line.startswith("BLOCK") else "QUESTION")


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
            layout.label(text=machine_facts.label(info, settings.region, price.usd))
            layout.label(text=price.words())
        except CloudError as error:
            layout.label(text=error.message, icon="ERROR")
        layout.prop(settings, "use_spot")
        layout.prop(settings, "use_custom_frames")
        if settings.use_custom_frames:
            layout.prop(settings, "frame_list")
        layout.prop(settings, "frame_order")
        layout.prop(settings, "quote_first")
        layout.prop(settings, "samples")
        layout.prop(settings, "resolution_percentage")
        layout.prop(settings, "file_format")
        layout.prop(settings, "output_dir")
        col = layout.column(heading="Hard Caps")
        col.prop(settings, "max_cost")
        col.prop(settings, "max_hours")


class CLOUDRENDER_MT_instance_types(bpy.types.Menu):
    """Machines offered in the scene's region: GPU, memory and price per hour."""

    bl_label = "Machine Type"

    def draw(self, context: bpy.types.Context | None) -> None:
        settings = bpy.context.scene.cloud_render
        for name, text in prices.menu(settings.region, settings.use_spot):
            self.layout.operator("cloud_render.set_instance_type", text=text).instance_type = name


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
        final = view.state in {s.value for s in FINAL_STAGES}
        header = layout.row()
        header.label(
            text=f"{view.state}: {view.message}", icon="CHECKMARK" if view.state == "Done" else "TIME"
        )
        if view.action:
            layout.label(text=view.action, icon="INFO")
            if view.error_code in QUOTA_ERROR_CODES:
                layout.operator("cloud_render.request_quota", icon="PLUS")
        if not final:
            total = max(view.frames_total, 1)
            layout.progress(
                factor=view.progress if view.state in {"Packing", "Uploading"} else view.frames_done / total,
                type="BAR",
                text=f"{view.state} {view.progress * 100:.0f}%"
                if view.state in {"Packing", "Uploading"}
                else f"{view.frames_done}/{view.frames_total} frames",
            )
        grid = layout.grid_flow(columns=2, even_columns=True)
        grid.label(
            text=f"Frame {view.current_frame}"
            + (f"  sample {view.sample}/{view.samples_total}" if view.samples_total else "")
        )
        grid.label(text=f"Frames {view.frames_done}/{view.frames_total}")
        grid.label(text=f"Elapsed {_elapsed(view.job_id)}")
        grid.label(text=f"Cost so far ${view.cost_so_far:.2f}")
        if view.projected_cost:
            grid.label(text=f"Projected ${view.projected_cost:.2f}")
        if view.device:
            grid.label(text=f"Device {view.device}")
        if view.seconds_per_frame:
            grid.label(text=f"{view.seconds_per_frame:.1f} s/frame")
        log = layout.box()
        for line in view.log_tail.splitlines()[-job_view.PANEL_LOG_LINES :]:
            log.label(text=line)
        row = layout.row()
        row.operator("cloud_render.open_log", icon="TEXT").job_id = view.job_id
        row.operator("cloud_render.show_frames", icon="IMAGE_DATA").job_id = view.job_id
        if view.state == "Waiting for you":
            row = layout.row()
            row.operator("cloud_render.answer_quote", text="Go On", icon="PLAY").go = True
            row.operator("cloud_render.answer_quote", text="Stop Here", icon="PAUSE").go = False
        if not final:
            layout.operator("cloud_render.cancel", icon="CANCEL").job_id = view.job_id


class CLOUDRENDER_UL_jobs(bpy.types.UIList):
    """This file's jobs, newest first (the list is built that way from the job records)."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index, flt_flag=0):  # type: ignore[no-untyped-def,override]
        row = layout.row()
        row.label(text=item.job_id)
        row.label(text=item.label)
        row.label(text=f"{item.stage} {item.frames_done}/{item.frames_total}")


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
        for orphan in filter(None, view.orphans.split(",")):
            instance_id, job_id, region = ([*orphan.split(":"), "", ""])[:3]
            row = layout.row()
            row.alert = True
            row.label(
                text=f"Machine {instance_id} in {region} is still running (job {job_id or 'unknown'})",
                icon="ERROR",
            )
            terminate = row.operator("cloud_render.terminate_orphan", text="Terminate")
            terminate.instance_id, terminate.region = instance_id, region
        layout.template_list(
            "CLOUDRENDER_UL_jobs", "", wm, "cloud_render_jobs", wm, "cloud_render_jobs_index"
        )
        job_id = jobs_list.selected_job_id()
        if job_id:
            grid = layout.grid_flow(columns=3, even_columns=True)
            grid.operator("cloud_render.open_folder", icon="FILE_FOLDER").job_id = job_id
            grid.operator("cloud_render.show_frames", icon="IMAGE_DATA").job_id = job_id
            grid.operator("cloud_render.open_log", icon="TEXT").job_id = job_id
            grid.operator("cloud_render.relaunch_missing", icon="FILE_REFRESH").job_id = job_id
            grid.operator("cloud_render.delete_cloud_data", icon="TRASH").job_id = job_id
        layout.operator("cloud_render.find_orphans", icon="VIEWZOOM")


classes = (
    CLOUDRENDER_MT_instance_types,
    CLOUDRENDER_PT_main,
    CLOUDRENDER_PT_settings,
    CLOUDRENDER_PT_job,
    CLOUDRENDER_UL_jobs,
    CLOUDRENDER_PT_jobs,
)
