"""Drive the installed extension in this process's bpy, like an artist would.

The extension is built with Blender's tool and installed from the zip (wheels included) into
the throwaway user directory that tests/conftest.py sets before bpy is imported.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from dev.aws_emulator import MOTO_SERVICES, endpoint_variables

MODULE = "bl_ext.user_default.cloud_render"
# Shaped like real keys (the add-on checks the shape) but valid only for the emulator.
TEST_KEY_ID = "AKIAEMULATEDTEST0001"
TEST_SECRET = "emulatedSecretKeyForTestsOnly0123456789ab"


def install(zip_path: Path) -> ModuleType:
    """Install and enable the zip once per process; later calls return the module."""
    import bpy

    context: Any = bpy.context  # the stubs make every context member optional
    if MODULE in sys.modules and MODULE in context.preferences.addons:
        return sys.modules[MODULE]
    context.preferences.system.use_online_access = True
    result = bpy.ops.extensions.package_install_files(
        filepath=str(zip_path), repo="user_default", enable_on_install=True
    )
    assert result == {"FINISHED"}, result
    return sys.modules[MODULE]


def addon() -> ModuleType:
    return sys.modules[MODULE]


def preferences() -> Any:
    import bpy

    context: Any = bpy.context
    return context.preferences.addons[MODULE].preferences


def connect(
    endpoint_url: str,
    region: str = "us-east-1",
    keys: tuple[str, str] | None = None,
    policies: tuple[str, ...] = ("render", "setup"),
) -> None:
    """What an artist does in the preferences: keys (encrypted store) and, here, the emulator.

    The keys are an IAM user's, as the README tells an artist to make one: `keys` if given,
    else those of the account's user "artist" holding Cloud Render's `policies` (both, as
    before and during Set Up; a fixture detaches Set Up's when the account is ready). The
    emulator's strict layer authorises every request the add-on makes against them.

    The preference's Endpoint URL reaches S3 only; the other services moto serves reach the
    same address through botocore's per-service variables, as a developer's shell would set
    them (the fixture or context that started the emulator restores them afterwards).
    """
    mod = addon()
    prefs = preferences()
    prefs.credential_source = "KEYS"
    prefs.endpoint_url = endpoint_url
    for name, url in endpoint_variables(endpoint_url, MOTO_SERVICES).items():
        os.environ.setdefault(name, url)  # a test that serves one service itself keeps its own
    prefs.default_region = region
    if keys is None:
        from cloud.aws.session import AwsSettings
        from dev.emulator import create_artist

        admin = AwsSettings(
            region=region, access_key_id=TEST_KEY_ID, secret_access_key=TEST_SECRET, endpoint_url=endpoint_url
        )
        keys = create_artist(admin, policies)  # type: ignore[arg-type]
    key_id, secret = keys
    mod.cloud.aws.credentials.save_keys(
        mod.addon.account.key_dir(), mod.cloud.aws.credentials.validate(key_id, secret)
    )


def disconnect() -> None:
    mod = addon()
    mod.cloud.aws.credentials.delete_keys(mod.addon.account.key_dir())


def drain_until(predicate: Any, timeout: float, step: float = 0.05) -> float:
    """Call the add-on's timer function (timers do not fire in the bpy module) until done.

    Returns the longest single drain call in seconds (the main-thread stall).
    """
    mod = addon()
    longest = 0.0
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the job did not get there in time")
        started = time.perf_counter()
        mod.addon.pump.drain_events()
        longest = max(longest, time.perf_counter() - started)
        time.sleep(step)
    started = time.perf_counter()
    mod.addon.pump.drain_events()
    return max(longest, time.perf_counter() - started)


def make_scene(
    path: Path, frames: int = 3, size: int = 64, samples: int = 4, texture: Path | None = None
) -> Path:
    """A small Cycles scene (CPU, few samples) saved at `path`; optionally an image-textured plane."""
    import bpy

    bpy.ops.wm.read_homefile(use_factory_startup=True)
    context: Any = bpy.context
    context.preferences.system.use_online_access = True
    scene = context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.render.resolution_x = size
    scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.frame_start = 1
    scene.frame_end = frames
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = "//render/frame_####"
    cube = bpy.data.objects.get("Cube")
    if cube is not None:
        cube.animation_data_clear()
        cube.rotation_euler = (0.3, 0.2, 0.0)
        cube.keyframe_insert("rotation_euler", frame=1)
        cube.rotation_euler = (0.3, 0.2, 1.2)
        cube.keyframe_insert("rotation_euler", frame=max(frames, 2))
    if texture is not None:
        material = bpy.data.materials.new("Textured")
        material.use_nodes = True
        tree: Any = material.node_tree
        nodes = tree.nodes
        image_node = nodes.new("ShaderNodeTexImage")
        image_node.image = bpy.data.images.load(str(texture))
        emission = nodes.new("ShaderNodeEmission")
        tree.links.new(image_node.outputs["Color"], emission.inputs["Color"])
        output = nodes["Material Output"]
        tree.links.new(emission.outputs["Emission"], output.inputs["Surface"])
        if cube is not None:
            cube.data.materials.clear()
            cube.data.materials.append(material)
    path.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(path), relative_remap=True)
    return path
