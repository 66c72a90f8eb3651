"""Account actions from the preferences: save keys, test the connection, copy the IAM policy."""

from __future__ import annotations

import bpy

from ..addon import account, job_view, pump
from ..cloud.aws import credentials, iam_policy
from ..cloud.errors import CloudError
from .common import NeedsOnlineAccess, OperatorReturn, in_background


def _status(text: str) -> None:
    job_view.view().account_status = text
    job_view.redraw()


class CLOUDRENDER_OT_save_keys(bpy.types.Operator):
    """Store an AWS access key pair encrypted on this computer (never in a .blend or preferences file)"""

    bl_idname = "cloud_render.save_keys"
    bl_label = "Save AWS Keys"
    bl_options = {"INTERNAL"}

    # SKIP_SAVE: Blender must not remember these values anywhere after the dialog closes.
    access_key_id: bpy.props.StringProperty(name="Access Key ID", options={"SKIP_SAVE"})  # type: ignore[valid-type]
    secret_access_key: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Secret Access Key", subtype="PASSWORD", options={"SKIP_SAVE"}
    )

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> OperatorReturn:
        return context.window_manager.invoke_props_dialog(self, width=420)

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        try:
            keys = credentials.validate(self.access_key_id.strip(), self.secret_access_key.strip())
            credentials.save_keys(account.key_dir(), keys)
        except CloudError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        finally:
            self.access_key_id = ""
            self.secret_access_key = ""
        _status(f"Keys saved ({credentials.mask(keys.access_key_id)}). Checking them...")
        if bpy.app.online_access:
            bpy.ops.cloud_render.test_connection()
        return {"FINISHED"}


class CLOUDRENDER_OT_forget_keys(bpy.types.Operator):
    """Delete the stored AWS keys from this computer"""

    bl_idname = "cloud_render.forget_keys"
    bl_label = "Forget Keys"

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> OperatorReturn:
        return context.window_manager.invoke_confirm(  # the keys are not shown again: asked first
            self,
            event,
            title="Forget Keys",
            message="Delete the saved access key from this computer? Rendering stops working here "
            "until a key is entered again; the key itself stays valid in AWS.",
            confirm_text="Forget Keys",
        )

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        credentials.delete_keys(account.key_dir())
        _status("No keys saved.")
        return {"FINISHED"}


class CLOUDRENDER_OT_test_connection(NeedsOnlineAccess, bpy.types.Operator):
    """Check the keys with AWS and show which account and user they belong to"""

    bl_idname = "cloud_render.test_connection"
    bl_label = "Test Connection"

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        try:
            settings = account.aws_settings()
        except CloudError as error:
            _status(str(error))
            return {"CANCELLED"}

        def done(identity, error) -> None:  # type: ignore[no-untyped-def]
            if error is not None:
                _status(f"{error.message} {error.action}")
            else:
                _status(f"Connected: account {identity.account}, user {identity.user_name}.")

        _status("Checking...")
        pump.in_background(lambda: credentials.verify(settings), done)
        return {"FINISHED"}


class CLOUDRENDER_OT_copy_policy(bpy.types.Operator):
    """Copy one of Cloud Render's two IAM policies, to paste in the AWS console (Create policy > JSON)"""

    bl_idname = "cloud_render.copy_policy"
    bl_label = "Copy IAM Policy"
    policy: bpy.props.EnumProperty(  # type: ignore[valid-type]
        items=(
            ("render", "Render", "The daily policy: render into your own bucket, nothing more"),
            ("setup", "Set Up", "Attached for Set Up only: makes the bucket, firewall and AWS Batch"),
        ),
        default="render",
        options={"SKIP_SAVE"},
    )

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        context.window_manager.clipboard = iam_policy.policy_text(self.policy)
        title = iam_policy.POLICY_TITLES[self.policy]
        self.report({"INFO"}, f"The {title} policy is copied: paste it in Create policy > JSON.")
        return {"FINISHED"}


class CLOUDRENDER_OT_request_quota(NeedsOnlineAccess, bpy.types.Operator):
    """Ask AWS to let this account run the chosen machine type (a vCPU quota increase)"""

    bl_idname = "cloud_render.request_quota"
    bl_label = "Request Quota Increase"
    # Pressed under a job that failed for want of quota: the answer goes under that job's words.
    from_job: bpy.props.BoolProperty(default=False, options={"SKIP_SAVE"})  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        from ..cloud.aws import quotas

        settings = context.scene.cloud_render
        instance_type, spot, region = settings.instance_type, settings.use_spot, settings.region
        try:
            aws = account.aws_settings().in_region(region)
        except CloudError as error:
            _status(str(error))
            return {"CANCELLED"}

        def requested(request: quotas.QuotaRequest) -> str:
            return (
                f"Quota request for {request.desired:g} vCPUs: {request.status_words}. "
                "AWS usually answers within a day, by e-mail."
            )

        machines = int(settings.machines)  # many machines need that many times the vCPUs
        in_background(
            lambda: quotas.request_quota_increase(aws, instance_type, spot, machines),
            requested,
            "job_action" if self.from_job else "account",
        )
        return {"FINISHED"}


class CLOUDRENDER_OT_setup(NeedsOnlineAccess, bpy.types.Operator):
    """Check the keys, pick the nearest region with GPU machines, create the bucket, firewall and
    the AWS Batch engine for many machines, check the quota, and say "Ready to render" or exactly
    what AWS still needs"""

    bl_idname = "cloud_render.setup"
    bl_label = "Set Up"

    def execute(self, context: bpy.types.Context) -> OperatorReturn:
        from ..cloud.aws import account_setup

        prefs = account.preferences()
        try:
            aws = account.aws_settings()
        except CloudError as error:
            _status(str(error))
            return {"CANCELLED"}
        state_dir = pump.user_dir("state")
        budget = (prefs.budget_amount, prefs.budget_email.strip()) if prefs.budget_email.strip() else None
        scene = context.scene.cloud_render if context.scene else None
        # The scene's machine type, pricing and machines shape the Batch engine Set Up makes.
        instance_type = scene.instance_type if scene is not None else "g4dn.xlarge"
        spot = bool(scene.use_spot) if scene is not None else False
        machines = int(scene.machines) if scene is not None else 1

        def progress(line: str) -> None:  # from the setup thread: queue it for the main thread
            pump.call_soon(_status, line)

        def done(report, error) -> None:  # type: ignore[no-untyped-def]
            view = job_view.view()
            if error is not None:
                view.setup_summary = f"{error.message} {error.action}"
            else:
                view.setup_summary = report.summary()
                if report.region:
                    account.preferences().default_region = report.region
            _status(view.setup_summary.splitlines()[0])

        _status("Setting up...")
        # With an endpoint override (S3-compatible storage, the emulator) AWS regions cannot be
        # probed for latency: keep the chosen region.
        region = prefs.default_region if prefs.endpoint_url.strip() else None
        pump.in_background(
            lambda: account_setup.run_setup(
                aws,
                state_dir,
                region=region,
                instance_type=instance_type,
                spot=spot,
                machines=machines,
                budget=budget,
                progress=progress,
                retention_days=int(prefs.retention_days),
                mail=prefs.budget_email.strip(),
            ),
            done,
        )
        return {"FINISHED"}


classes = (
    CLOUDRENDER_OT_save_keys,
    CLOUDRENDER_OT_forget_keys,
    CLOUDRENDER_OT_test_connection,
    CLOUDRENDER_OT_copy_policy,
    CLOUDRENDER_OT_request_quota,
    CLOUDRENDER_OT_setup,
)
