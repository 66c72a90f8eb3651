"""Packing copies nothing it does not change: textures are linked into the pack and uploaded
from where they lie, only a .blend whose paths were rewritten is written, and a second pack
re-reads nothing (the local hash cache)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from cloud.pack.hash_cache import RACY_S, HashCache
from cloud.pack.packer import pack
from tests.factories import SCENE_SCRIPT_START

SCENE = (
    SCENE_SCRIPT_START
    + r"""
project, outside = Path(sys.argv[-2]), Path(sys.argv[-1])
write_png(project / "textures" / "inside.png", (1, 0, 0, 1))
write_png(outside / "shared" / "outside.png", (0, 1, 0, 1))
bpy.ops.wm.save_as_mainfile(filepath=str(project / "shot.blend"))
bpy.data.images.load("//textures/inside.png").use_fake_user = True
bpy.data.images.load(str(outside / "shared" / "outside.png")).use_fake_user = True  # absolute: rewritten
bpy.ops.wm.save_mainfile()
"""
)


def test_unchanged_files_are_linked_not_copied_and_uploaded_from_where_they_lie(tmp_path):
    project, outside = tmp_path / "project", tmp_path / "library"
    subprocess.run([sys.executable, "-c", SCENE, str(project), str(outside)], check=True, capture_output=True)
    old = time.time() - 10 * RACY_S  # saved a while ago: the hash cache may keep them
    for texture in (project / "textures" / "inside.png", outside / "shared" / "outside.png"):
        os.utime(texture, (old, old))
    cache = HashCache(tmp_path / "state" / "hashes.sqlite")

    result = pack(project / "shot.blend", tmp_path / "pack", hashes=cache)
    inside, outside_packed = "textures/inside.png", next(p for p in result.manifest.files if "outside" in p)
    assert result.sources[inside] == project / "textures" / "inside.png"
    assert result.sources[outside_packed] == outside / "shared" / "outside.png"
    # The .blend was rewritten (its absolute path now points into the pack): written, and uploaded from the pack.
    assert result.sources["shot.blend"] == result.out_dir / "shot.blend"
    for rel in (inside, outside_packed):  # in the pack folder as links to the same bytes
        assert os.path.samefile(result.out_dir / rel, result.sources[rel])
    assert not os.path.samefile(result.out_dir / "shot.blend", project / "shot.blend")
    assert (cache.misses, cache.hits) == (
        2,
        0,
    )  # the two textures; the rewritten scene is written, not linked

    cache.hits = cache.misses = 0
    again = pack(project / "shot.blend", tmp_path / "pack-2", hashes=cache)
    assert again.manifest.files[inside] == result.manifest.files[inside]
    assert (cache.misses, cache.hits) == (0, 2)  # neither texture read again


def test_a_file_edited_after_packing_is_not_uploaded_under_its_old_hash(tmp_path):
    """Uploads read the artist's files, not a copy: an edit after hashing stops the upload
    with words to submit again, instead of a machine that refuses the input."""
    from cloud.errors import CloudError
    from cloud.job.cloud_steps import PackedScene, _check_unchanged

    project = tmp_path / "project"
    subprocess.run(
        [sys.executable, "-c", SCENE, str(project), str(tmp_path / "library")],
        check=True,
        capture_output=True,
    )
    result = pack(project / "shot.blend", tmp_path / "pack")
    packed = PackedScene(
        blend_path="shot.blend",
        files={p: (e.sha256, e.size) for p, e in result.manifest.files.items()},
        root=result.out_dir,
        sources=result.sources,
        stamps=result.stamps,
    )
    _check_unchanged(packed)
    texture = project / "textures" / "inside.png"
    stamp = texture.stat()
    texture.write_bytes(b"repainted")
    os.utime(texture, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000))
    with pytest.raises(CloudError) as raised:
        _check_unchanged(packed)
    assert "inside.png changed while" in raised.value.message and raised.value.action
