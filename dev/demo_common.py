"""What both demos (demo.py, demo_batch.py) set up the same way: a Blender that is not the
developer's own, keys of the emulated account only, and the Blender build a machine's first
boot would have left in the bucket's cache."""

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
