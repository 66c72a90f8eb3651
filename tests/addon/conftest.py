"""The extension built once and installed into this process's bpy."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from dev.build import build, zip_for_this_platform

from . import harness


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return zip_for_this_platform(build(tmp_path_factory.mktemp("dist")))


@pytest.fixture(scope="session")
def installed(extension_zip: Path) -> ModuleType:
    return harness.install(extension_zip)
