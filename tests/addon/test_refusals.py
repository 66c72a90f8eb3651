"""Render in Cloud refuses with a clear reason, and makes no request, when it cannot run."""

from __future__ import annotations

import bpy
import pytest

from dev import addon_harness as harness


@pytest.fixture
def saved_scene(installed, tmp_path):
    path = harness.make_scene(tmp_path / "shot.blend")
    yield path
    bpy.context.preferences.system.use_online_access = True
    harness.disconnect()


def _refusal() -> str:
    with pytest.raises(RuntimeError) as caught:
        bpy.ops.cloud_render.render("EXEC_DEFAULT")
    return str(caught.value)


def test_online_access_off_is_refused_with_how_to_turn_it_on(saved_scene, aws):
    harness.connect(aws.url)
    bpy.context.preferences.system.use_online_access = False
    reasons = harness.addon().addon.submit.render_blockers(bpy.context)
    assert reasons[0].startswith("Online access is off")
    assert "Preferences > System > Network" in reasons[0]
    assert "Online access is off" in _refusal()
    # No request was made: the emulator saw no bucket and no instance.
    from cloud.aws.session import client

    assert client(aws.admin, "s3").list_buckets()["Buckets"] == []
    assert client(aws.admin, "ec2").describe_instances()["Reservations"] == []


def test_missing_keys_are_refused_with_where_to_add_them(saved_scene):
    harness.disconnect()
    message = _refusal()
    assert "No AWS account connected" in message
    assert "Preferences > Add-ons > Cloud Render" in message


def test_malformed_frame_list_is_refused_naming_the_bad_part(saved_scene, aws):
    harness.connect(aws.url)
    settings = bpy.context.scene.cloud_render
    settings.use_custom_frames = True
    settings.frame_list = "1-10,15,abc"
    message = _refusal()
    assert "'abc'" in message and "1-10,15,20-30x2" in message
    settings.frame_list = "1-3"
    assert harness.addon().addon.submit.render_blockers(bpy.context) == []
    settings.use_custom_frames = False


def test_frames_outside_blenders_range_are_refused(saved_scene, aws):
    """The frame list's limits are Blender's own (MINAFRAME / MAXFRAME, Scene.frame_current)."""
    from cloud.job import frame_list

    current = bpy.types.Scene.bl_rna.properties["frame_current"]
    assert (current.hard_min, current.hard_max) == (frame_list.MIN_FRAME, frame_list.MAX_FRAME)
    harness.connect(aws.url)
    settings = bpy.context.scene.cloud_render
    settings.use_custom_frames = True
    try:
        for text in ("1-3,99999999999999999999", f"{current.hard_max + 1}", "\u0661\u0662"):
            settings.frame_list = text
            message = _refusal()
            assert "frame list" in message and (
                "outside Blender's frames" in message or "not a frame" in message
            )
        settings.frame_list = f"{current.hard_min},{current.hard_max}"
        assert harness.addon().addon.submit.render_blockers(bpy.context) == []
    finally:
        settings.use_custom_frames = False


def test_unsaved_file_is_refused(installed, aws):
    bpy.ops.wm.read_homefile(use_factory_startup=True)
    bpy.context.preferences.system.use_online_access = True
    harness.connect(aws.url)
    try:
        assert "Save the .blend file first" in _refusal()
    finally:
        harness.disconnect()


def test_preflight_blocks_a_scene_the_machine_cannot_render(saved_scene, aws):
    """EEVEE on a machine type without a GPU: refused before launch, with the reason."""
    harness.connect(aws.url)
    bpy.context.scene.render.engine = "BLENDER_EEVEE_NEXT" if bpy.app.version < (5, 0) else "BLENDER_EEVEE"
    bpy.context.scene.cloud_render.instance_type = "c7i.4xlarge"
    bpy.ops.wm.save_mainfile()
    message = _refusal()
    assert "EEVEE" in message and "GPU machine" in message
    from cloud.aws.session import client

    assert client(aws.admin, "ec2").describe_instances()["Reservations"] == []


@pytest.mark.parametrize(
    "operator",
    [
        "render",
        "cancel",
        "answer_quote",
        "find_orphans",
        "terminate_orphan",
        "delete_cloud_data",
        "relaunch_missing",
        "test_connection",
        "request_quota",
        "setup",
    ],
)
def test_every_operator_that_talks_to_aws_is_off_while_online_access_is(installed, operator):
    bpy.context.preferences.system.use_online_access = False
    try:
        assert not getattr(bpy.ops.cloud_render, operator).poll()
    finally:
        bpy.context.preferences.system.use_online_access = True
    assert getattr(bpy.ops.cloud_render, operator).poll() or operator == "render"
