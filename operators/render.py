"""Render in Cloud, Cancel, Check Scene: thin operators that hand work to cloud/ in threads."""

from __future__ import annotations

import bpy

from ..addon import job_view, panel_results, pump, submit
from ..cloud.errors import CloudError
from .common import NeedsOnlineAccess, OperatorReturn, in_background


class CLOUDRENDER_OT_render(bpy.types.Operator):
    """Render this scene on a GPU machine in your AWS account and bring the frames back"""

    bl_idname = "cloud_render.render"
    bl_label = "Render in Cloud"
    bl_options = {"REGISTER"}
    # Render > Render This Frame in Cloud: the current frame alone, a still (on many machines
    # its samples are split: cloud/job/still_plan.py).
    this_frame: bpy.props.BoolProperty(default=False, options={"SKIP_SAVE"})  # type: ignore[valid-type]
    # The artist was told that this file has a job still rendering and chose to start another.
    start_another: bpy.props.BoolProperty(default=False, options={"SKIP_SAVE", "HIDDEN"})  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        blockers = submit.render_blockers(context)
        if blockers:
            cls.poll_message_set(blockers[0])
            return False
        return True

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> OperatorReturn:
        summary = submit.confirmation_text(context, self.this_frame)
        running = submit.running_job_text()
        if running:  # asked first, in the same dialog: Render starts the second job
            summary = f"{running}\n{summary}"
            self.start_another = True
        submit.prefetch_facts()  # read while the artist reads the confirmation
        title = "Render This Frame in Cloud" if self.this_frame else "Render in Cloud"  # the menu's words
        return context.window_manager.invoke_confirm(
            self, event, title=title, message=summary, confirm_text="Render Another" if running else "Render"
        )

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        blockers = submit.render_blockers(context)
        if blockers:
            self.report({"ERROR"}, blockers[0])
            return {"CANCELLED"}
        running = submit.running_jobs()
        if running and not self.start_another:  # never a second billing job without asking
            self.report(
                {"ERROR"},
                f"Job {running[0]} is still rendering this file: cancel it, or press Render in Cloud "
                "and confirm to start another.",
            )
            return {"CANCELLED"}
        try:
            record = submit.start_job(context, self.this_frame)
        except submit.SubmitError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Cloud render {record.job_id} started.")
        return {"FINISHED"}


class CLOUDRENDER_OT_cancel(NeedsOnlineAccess, bpy.types.Operator):
    """Stop the machine; frames already rendered are kept"""

    bl_idname = "cloud_render.cancel"
    bl_label = "Cancel Cloud Render"

    job_id: bpy.props.StringProperty()  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        job_id = self.job_id or job_view.view().job_id
        if not job_id:
            return {"CANCELLED"}
        in_background(lambda: pump.manager().cancel(job_id), lambda _result: "Cancel requested.")
        return {"FINISHED"}


class CLOUDRENDER_OT_check_scene(bpy.types.Operator):
    """List what would render wrong in the cloud (missing files, settings) before paying for it"""

    bl_idname = "cloud_render.check_scene"
    bl_label = "Check Scene"

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        findings = submit.preflight(context)
        shown = panel_results.results()
        shown.findings, shown.findings_made_from = list(findings), panel_results.made_from(context.scene)
        if not findings:
            self.report({"INFO"}, "No problems found.")
        for finding in findings:
            self.report(
                {"ERROR" if finding.severity == "block" else "WARNING"}, f"{finding.message} {finding.fix}"
            )
        return {"FINISHED"}


class CLOUDRENDER_OT_estimate(bpy.types.Operator):
    """Render a small test tile on this computer (in a separate process) and estimate the time
    and cost of the job on every machine type"""

    bl_idname = "cloud_render.estimate"
    bl_label = "Estimate"

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        from ..addon import estimate_probe, prices
        from ..cloud.cost.estimate import Estimate, estimate_all
        from ..cloud.job.records import EngineName, engine_name_for, new_job_id

        if not bpy.data.filepath:
            self.report({"ERROR"}, "Save the .blend file first.")
            return {"CANCELLED"}
        scene = context.scene
        settings = scene.cloud_render
        try:
            frames = len(submit.frames_for(scene))
        except CloudError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        # A still on many machines renders a fixed total (adaptive sampling off): the probe too.
        split = engine_name_for(settings.machines, frames, str(scene.render.engine)) is EngineName.STILL
        plan = estimate_probe.plan_for(scene, fixed_samples=split)
        copy = submit.save_copy("probe-" + new_job_id())
        region, chosen, spot = settings.region, settings.instance_type, settings.use_spot
        # The same prices the panel and the confirmation show (refreshed, spot when known).
        catalog, spot_prices = prices.estimate_prices(region, spot)
        shown = panel_results.results()
        shown.estimate, shown.estimate_all, shown.estimate_note = [], [], panel_results.ESTIMATING
        made_from = panel_results.made_from(scene)  # what the figures hold for, until changed

        def work() -> tuple[list[Estimate], list[panel_results.EstimateRow]]:
            probe = estimate_probe.run_probe(copy, plan)
            estimates = estimate_all(probe, frames, region, spot, spot_prices, catalog=catalog)
            return estimates, panel_results.estimate_rows(estimates, chosen)

        def done(
            found: tuple[list[Estimate], list[panel_results.EstimateRow]] | None, error: CloudError | None
        ) -> None:
            shown = panel_results.results()
            shown.estimate_all, shown.estimate = found or ([], [])
            shown.estimate_made_from = made_from
            shown.estimate_note = f"{error.message} {error.action}" if error is not None else ""
            job_view.redraw()

        pump.in_background(work, done)
        return {"FINISHED"}


class CLOUDRENDER_OT_answer_quote(NeedsOnlineAccess, bpy.types.Operator):
    """Answer the quote: render every frame, or stop and keep the scout frames"""

    bl_idname = "cloud_render.answer_quote"
    bl_label = "Answer Quote"

    go: bpy.props.BoolProperty(default=True)  # type: ignore[valid-type]
    job_id: bpy.props.StringProperty()  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        job_id = self.job_id or job_view.view().job_id
        go = self.go
        text = "Going on with every frame." if go else "Stopping after the scout frames."
        in_background(lambda: pump.manager().answer_quote(job_id, go), lambda _result: text)
        return {"FINISHED"}


class CLOUDRENDER_OT_set_instance_type(bpy.types.Operator):
    """Render on this machine type"""

    bl_idname = "cloud_render.set_instance_type"
    bl_label = "Set Machine Type"
    bl_options = {"INTERNAL", "UNDO"}

    instance_type: bpy.props.StringProperty()  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        context.scene.cloud_render.instance_type = self.instance_type
        return {"FINISHED"}


classes = (
    CLOUDRENDER_OT_render,
    CLOUDRENDER_OT_cancel,
    CLOUDRENDER_OT_check_scene,
    CLOUDRENDER_OT_set_instance_type,
    CLOUDRENDER_OT_estimate,
    CLOUDRENDER_OT_answer_quote,
)
