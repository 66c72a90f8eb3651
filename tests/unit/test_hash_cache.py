"""The local hash cache: a resubmit re-reads only what changed, and never trusts a stale hash."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

from cloud.aws.known_objects import KnownObjects
from cloud.pack.hash_cache import RACY_S, HashCache


def settled(path: Path, data: bytes) -> Path:
    """Write `data` and date it back past the racy window, as a file saved a while ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    old = time.time() - 10 * RACY_S
    os.utime(path, (old, old))
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_an_unchanged_file_is_not_read_again_even_after_its_folder_moved(tmp_path):
    cache = HashCache(tmp_path / "state" / "hashes.sqlite")
    texture = settled(tmp_path / "forest" / "textures" / "bark.png", b"bark" * 1000)
    assert cache.hash(texture) == (sha(b"bark" * 1000), 4000)
    assert (cache.hits, cache.misses) == (0, 1)
    moved = tmp_path / "forest-final"
    (tmp_path / "forest").rename(moved)
    again = HashCache(tmp_path / "state" / "hashes.sqlite")  # a later Blender session
    assert again.hash(moved / "textures" / "bark.png") == (sha(b"bark" * 1000), 4000)
    assert (again.hits, again.misses) == (1, 0)


def test_an_edit_in_place_with_the_same_size_is_hashed_again(tmp_path):
    cache = HashCache(tmp_path / "hashes.sqlite")
    path = settled(tmp_path / "cache.vdb", b"A" * 4096)
    cache.hash(path)
    with open(path, "r+b") as out:  # a tool that patches one byte in place
        out.write(b"B")
    assert path.stat().st_size == 4096
    assert cache.hash(path)[0] == sha(b"B" + b"A" * 4095)
    assert cache.misses == 2


def test_a_link_to_the_file_does_not_cost_a_rehash(tmp_path):
    """The pack links unchanged files; linking changes their status-change time, not the key."""
    cache = HashCache(tmp_path / "hashes.sqlite")
    path = settled(tmp_path / "bark.png", b"bark")
    cache.hash(path)
    os.link(path, tmp_path / "linked.png")
    cache.hash(path)
    assert (cache.hits, cache.misses) == (1, 1)


def test_a_file_changed_moments_ago_is_hashed_but_not_cached(tmp_path):
    cache = HashCache(tmp_path / "hashes.sqlite")
    path = tmp_path / "fresh.exr"
    path.write_bytes(b"new")
    cache.hash(path)
    cache.hash(path)
    assert cache.misses == 2


def test_a_broken_cache_file_only_costs_hashing(tmp_path):
    db = tmp_path / "hashes.sqlite"
    db.write_bytes(b"not a database at all" * 10)
    path = settled(tmp_path / "a.bin", b"x" * 100)
    assert HashCache(db).hash(path) == (sha(b"x" * 100), 100)
    assert HashCache(None).hash(path) == (sha(b"x" * 100), 100)


def test_a_cache_folder_that_cannot_be_made_only_costs_hashing(tmp_path):
    """The artist's config folder blocked (here a file where the folder should be): the submit
    hashes as if there were no cache instead of failing."""
    (tmp_path / "blocked").write_bytes(b"a file, not a folder")
    cache = HashCache(tmp_path / "blocked" / "hashes.sqlite")
    path = settled(tmp_path / "a.bin", b"y" * 100)
    assert cache.hash(path) == (sha(b"y" * 100), 100)
    assert cache.hash(path) == (sha(b"y" * 100), 100)
    assert (cache.hits, cache.misses) == (0, 2)


def test_the_local_caches_are_readable_by_this_user_only(tmp_path):
    """Both SQLite caches name the artist's files and buckets: 0600 like the key files, under
    the usual umask, their journals too; one an earlier version left world-readable is narrowed."""
    old_umask = os.umask(0o022)
    try:
        state = tmp_path / "state"
        cache = HashCache(state / "hashes.sqlite")
        cache.hash(settled(tmp_path / "a.bin", b"z" * 100))
        (state / "known.sqlite").write_bytes(b"")
        os.chmod(state / "known.sqlite", 0o644)
        KnownObjects(state / "known.sqlite").remember("bucket", {"cas/ab": datetime.now(UTC)})
        made = sorted(state.iterdir())
        assert {p.name for p in made} >= {"hashes.sqlite", "known.sqlite"}
        assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in made} == {p.name: "0o600" for p in made}
    finally:
        os.umask(old_umask)
