"""What every end-to-end module needs once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from dev.simulator import make_blender_tarball


@pytest.fixture(scope="session")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A stand-in Blender build of the suite's bpy version, (path, SHA-256): what the machines
    download from the bucket's Blender cache. Made once; the tests only read it."""
    import bpy  # after the root conftest has pointed Blender at a throwaway user directory

    return make_blender_tarball(bpy.app.version_string.split()[0], tmp_path_factory.mktemp("blender"))
