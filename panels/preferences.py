"""Edit > Preferences > Add-ons > Cloud Render."""

from __future__ import annotations

import bpy
from bpy.props import (
    EnumProperty,
    FloatProperty,
    IntProperty,
    StringProperty,
)

from ..addon import account, job_view
from ..addon.ids import ADDON_ID
from ..addon.settings import REGIONS
from . import text_wrap


class CloudRenderPreferences(bpy.types.AddonPreferences):
    """Account-wide settings. Keys are never stored here: they go to the encrypted store."""

    bl_idname = ADDON_ID

    credential_source: EnumProperty(  # type: ignore[valid-type]
        name="Credentials",
        items=[
            ("PROFILE", "AWS Profile", "Use a profile from ~/.aws (or environment, SSO)"),
            ("KEYS", "Access Keys", "Paste an access key pair; stored encrypted on this computer"),
        ],
        default="KEYS",
    )
    profile: StringProperty(name="Profile", default="default")  # type: ignore[valid-type]
    default_region: EnumProperty(name="Default Region", items=REGIONS, default="us-east-1")  # type: ignore[valid-type]
    retention_days: IntProperty(  # type: ignore[valid-type]
        name="Keep Cloud Data (days)", default=14, min=1, max=365
    )
    endpoint_url: StringProperty(  # type: ignore[valid-type]
        name="Endpoint URL",
        description="Advanced: S3-compatible storage to use instead of Amazon S3 (https, or http on this "
        "computer only). Every other AWS service is still AWS. Leave empty for Amazon S3",
        default="",
    )

    budget_amount: FloatProperty(  # type: ignore[valid-type]
        name="Monthly Budget ($)",
        description="Set Up creates an AWS Budget alerting at 80% of this",
        default=10.0,
        min=1.0,
    )
    budget_email: StringProperty(  # type: ignore[valid-type]
        name="E-mail",
        description="Where AWS sends the budget alert and a mail when a job ends, even with Blender "
        "closed (AWS sends a confirmation mail first; leave empty for neither)",
        default="",
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        if not bpy.app.online_access:
            box = layout.box()
            box.label(text="Online access is off, so Cloud Render makes no network request.", icon="ERROR")
            box.label(text="Turn it on in Preferences > System > Network > Allow Online Access.")
        layout.row().prop(self, "credential_source", expand=True)  # side by side, not a tall list
        if self.credential_source == "PROFILE":
            layout.prop(self, "profile")
        else:
            from ..cloud.aws import credentials

            has_keys = credentials.has_keys(account.key_dir())
            if has_keys:  # its own line: beside two buttons it was cut in the middle
                layout.label(text="Access key saved (encrypted on this computer).", icon="LOCKED")
            row = layout.row()
            if has_keys:
                row.operator("cloud_render.forget_keys")
            row.operator("cloud_render.save_keys", text="Enter Access Key...", icon="KEY_HLT")
        row = layout.row()
        row.operator("cloud_render.test_connection", icon="WORLD")
        row.operator("cloud_render.setup", icon="CHECKMARK")
        summary = job_view.view().setup_summary
        if summary:
            box = layout.box()
            for line in summary.splitlines():
                text_wrap.labels(
                    box, context, here(line), icon="CHECKMARK" if line == "Ready to render" else "NONE"
                )
            if "quota" in summary.lower() and "Ready to render" not in summary:
                box.operator("cloud_render.request_quota", icon="PLUS")
        status = here(job_view.view().account_status)
        if status and status not in summary.splitlines():  # Set Up's first line, said once
            text_wrap.labels(layout, context, status)
        _policy_steps(layout.box(), context, first_time=not account.has_credentials())
        layout.prop(self, "default_region")
        layout.prop(self, "retention_days")
        layout.prop(self, "budget_amount")  # one a line: side by side "Alert E-m..." was cut
        layout.prop(self, "budget_email")
        if self.budget_email.strip():  # the job e-mail is silent until the artist confirms
            text_wrap.labels(
                layout, context, "AWS sends a confirmation mail first: open its link to get job e-mails."
            )
        layout.prop(self, "endpoint_url")


THIS_PAGE = " in Preferences > Add-ons > Cloud Render"


def here(text: str) -> str:
    """Words said on this very page point here, not to where the artist already is."""
    return text.replace(THIS_PAGE, " here")


def _policy_steps(box: bpy.types.UILayout, context: bpy.types.Context, *, first_time: bool) -> None:
    """The two managed policies: Render kept on the user, Set Up attached for Set Up only."""
    from ..cloud.aws.iam_policy import POLICY_TITLES

    render, setup = POLICY_TITLES["render"], POLICY_TITLES["setup"]
    if first_time:  # the steps to make keys, until there are some
        box.label(text="No keys yet? In the AWS console, IAM:")
        steps = (
            f"1. Policies > Create policy > JSON: paste Render, name it {render}. "
            f"Again with Set Up, named {setup}.",
            f"2. Users > Create user (never the root user) and attach {render} and {setup}.",
            "3. Security credentials > Create access key, then 'Enter Access Key...' here.",
            f"After Set Up says Ready, {setup} may be detached: rendering needs only {render}.",
        )
        for step in steps:
            text_wrap.labels(box, context, step)
    row = box.row()
    row.operator("cloud_render.copy_policy", text="Copy Render Policy", icon="COPYDOWN").policy = "render"
    row.operator("cloud_render.copy_policy", text="Copy Set Up Policy", icon="COPYDOWN").policy = "setup"


classes = (CloudRenderPreferences,)
