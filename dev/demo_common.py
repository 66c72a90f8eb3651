"""What both demos (demo.py, demo_batch.py) set up the same way: a Blender that is not the
developer's own, keys of the emulated account only, an artist's IAM user set up as the README
says (Set Up with both policies, then the Set Up policy detached), and the Blender build a
machine's first boot would have left in the bucket's cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from dev.simulator import make_blender_tarball


def isolate() -> None:
    """A throwaway Blender user directory and an emulated account's keys. Call before bpy is
    imported: Blender reads its user directory once, at import."""
    os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="cloud-render-demo-user-")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIAEMULATEDTEST0001")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "emulatedSecretKeyForTestsOnly0123456789ab")
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull


def cache_blender(manager: Any, settings: Any) -> tuple[str, str]:
    """The job bucket made through the installed add-on's manager, with this Blender's build
    staged in its cache: (bucket, Blender version)."""
    import bpy

    bucket = manager.steps.ensure_bucket(settings, 14)
    version = bpy.app.version_string.split()[0]
    tarball, digest = make_blender_tarball(version, Path(tempfile.mkdtemp(prefix="cloud-render-blender-")))
    manager.steps.stage_blender(settings, bucket, version, tarball, digest)
    return bucket, version


def set_up_as_artist(account: Any, module: Any) -> str:
    """What an artist does first, as the README tells it: an IAM user holding Cloud Render's two
    managed policies, its key entered in the preferences, Set Up pressed (for the open scene's
    machine type); then the Set Up policy detached. Everything after this runs with the daily
    Render policy alone, every request authorised by the emulated account's strict layer.
    Returns Set Up's summary; exits when Set Up is not ready."""
    import bpy

    from dev import addon_harness as harness

    harness.connect(account.url, keys=account.create_artist(("render", "setup")))
    view = module.addon.job_view.view()
    view.setup_summary = ""
    ops: Any = bpy.ops
    assert ops.cloud_render.setup() == {"FINISHED"}
    harness.drain_until(lambda: bool(view.setup_summary), 300)
    summary = str(view.setup_summary)
    if not summary.startswith("Ready to render"):
        raise SystemExit(f"Set Up did not get the emulated account ready:\n{summary}")
    account.detach("setup")
    return summary
