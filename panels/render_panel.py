"""Properties > Output > Cloud Render."""

from __future__ import annotations

import bpy


class CLOUDRENDER_PT_main(bpy.types.Panel):
    bl_label = "Cloud Render"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "output"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.cloud_render
        layout.use_property_split = True
        layout.prop(settings, "region")
        layout.prop(settings, "instance_type")
        layout.prop(settings, "use_spot")
        layout.prop(settings, "use_custom_frames")
        if settings.use_custom_frames:
            layout.prop(settings, "frame_list")
        layout.prop(settings, "frame_order")
        layout.prop(settings, "samples")
        layout.prop(settings, "resolution_percentage")
        layout.prop(settings, "file_format")
        layout.prop(settings, "output_dir")
        layout.prop(settings, "max_cost")
        layout.prop(settings, "max_hours")
        job = context.window_manager.cloud_render_job
        if job.state:
            box = layout.box()
            box.label(text=f"{job.state}: {job.message}")


classes = (CLOUDRENDER_PT_main,)
