"""A large .blend travels as content-defined chunks: a resubmit after moving one object (or,
on Blender 4.2, after saving an unchanged scene again) sends a small share of its bytes; the
machine rebuilds the file from its chunks and checks it; a compressed .blend goes whole; the
contract refuses a chunk list that does not add up.

The scenes are made by the bpy this suite runs (5.0, or 4.2 with its PYTHONPATH), a few MB
each, with the chunking policy scaled down to match (cloud/pack/chunking.py has the real one).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import zlib
from dataclasses import asdict
from pathlib import Path

import pytest

from cloud.aws import storage, uploads
from cloud.aws.session import client
from cloud.machine import contract
from cloud.machine.transport import JobFailed, download_chunks
from cloud.pack.chunking import Chunked, ChunkPolicy, block_regions, chunk_file
from cloud.pack.hash_cache import RACY_S, HashCache
from cloud.pack.packer import pack

KiB = 1024
# A few-MB scene cut as a 500 MB one is under the real policy: the same regions, smaller chunks.
SMALL = ChunkPolicy(
    threshold=512 * KiB, min_size=8 * KiB, avg_size=32 * KiB, max_size=128 * KiB, block_min=8 * KiB
)

SCENE = r"""
import sys
from dataclasses import asdict
from pathlib import Path
import bpy
import numpy as np

folder, compress = Path(sys.argv[-2]), sys.argv[-1] == "compress"
bpy.ops.wm.read_factory_settings(use_empty=True)
rng = np.random.default_rng(5)
for index, side in enumerate((120, 90, 60)):
    bpy.ops.mesh.primitive_grid_add(x_subdivisions=side, y_subdivisions=side + 1, size=4)
    obj = bpy.context.active_object
    obj.name = f"grid_{index}"
    obj.location.x = index * 5.0
    co = np.empty(len(obj.data.vertices) * 3, dtype=np.float32)
    obj.data.vertices.foreach_get("co", co)
    co[2::3] = rng.random(len(obj.data.vertices), dtype=np.float32)
    obj.data.vertices.foreach_set("co", co)
bpy.ops.mesh.primitive_cube_add()
def save(name):
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / name), copy=True, compress=compress)
save("first.blend")
save("again.blend")
bpy.data.objects["grid_1"].location.z += 2.0
save("moved.blend")
"""


def make_scenes(folder: Path, compress: bool = False) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-c", SCENE, str(folder), "compress" if compress else "plain"],
        check=True,
        capture_output=True,
    )
    old = time.time() - 10 * RACY_S  # saved a while ago: the hash cache may keep them
    paths = {name: folder / f"{name}.blend" for name in ("first", "again", "moved")}
    for path in paths.values():
        os.utime(path, (old, old))
    return paths


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_scenes(tmp_path_factory.mktemp("scenes"))


def new_bytes(before: Chunked, after: Chunked) -> int:
    known = {c.sha256 for c in before.chunks}
    return sum({c.sha256: c.size for c in after.chunks if c.sha256 not in known}.values())


def test_chunks_cover_the_file_in_order_within_their_bounds(scenes):
    path = scenes["first"]
    data = path.read_bytes()
    result = chunk_file(path, SMALL)
    assert result.sha256 == hashlib.sha256(data).hexdigest() and result.size == len(data) > SMALL.threshold
    assert sum(c.size for c in result.chunks) == len(data)
    offset = 0
    for chunk in result.chunks:
        assert 0 < chunk.size <= SMALL.max_size
        assert hashlib.sha256(data[offset : offset + chunk.size]).hexdigest() == chunk.sha256
        offset += chunk.size
    # The .blend's block structure was read: every large payload starts a region of its own.
    regions = block_regions(memoryview(data), SMALL.block_min)
    assert regions is not None and len(regions) > 3 and regions[0][0] == 0 and regions[-1][1] == len(data)


def test_moving_one_object_or_saving_again_changes_a_small_share_of_the_chunks(scenes):
    first, again, moved = (chunk_file(scenes[name], SMALL) for name in ("first", "again", "moved"))
    assert first.sha256 != moved.sha256  # whole-file addressing would send the whole file again
    share_moved = new_bytes(first, moved) / moved.size
    share_again = new_bytes(first, again) / again.size
    assert 0 < share_moved < 0.05, share_moved
    assert share_again < 0.05, share_again  # Blender 4.2 rewrites pointers on every save; 5.0 does not


def test_a_compressed_blend_is_sent_whole_and_says_why(tmp_path):
    paths = make_scenes(tmp_path / "packed", compress=True)
    result = chunk_file(paths["first"], SMALL)
    assert result.chunks == ()
    assert result.sha256 == hashlib.sha256(paths["first"].read_bytes()).hexdigest()
    assert "compressed" in result.note and "Compress" in result.note
    # Packed: sent whole, and the job log says why.
    project = tmp_path / "project"
    project.mkdir()
    os.link(paths["first"], project / "shot.blend")
    packed = pack(project / "shot.blend", tmp_path / "pack", hashes=HashCache(None), chunking=SMALL)
    assert packed.manifest.files["shot.blend"].chunks == ()
    assert any("shot.blend is saved compressed" in note for note in packed.notes), packed.notes


def test_a_file_that_is_not_a_blend_is_cut_by_content_alone(tmp_path):
    path = tmp_path / "cache.bin"
    path.write_bytes(os.urandom(700 * KiB))
    result = chunk_file(path, SMALL)
    assert len(result.chunks) > 3 and sum(c.size for c in result.chunks) == 700 * KiB


def test_the_hash_cache_remembers_a_files_chunks(scenes, tmp_path):
    cache = HashCache(tmp_path / "state" / "hashes.sqlite")
    first = cache.chunked(scenes["first"], SMALL)
    again = cache.chunked(scenes["first"], SMALL)
    assert (cache.misses, cache.hits) == (1, 1) and again == first
    assert cache.hash(scenes["first"]) == (first.sha256, first.size)  # the whole hash is known too
    other = ChunkPolicy(**{**SMALL.__dict__, "avg_size": 64 * KiB})
    assert cache.chunked(scenes["first"], other).chunks != first.chunks and cache.misses == 2


def test_the_pack_lists_a_large_blends_chunks(scenes, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    scene = project / "shot.blend"
    os.link(scenes["first"], scene)
    result = pack(scene, tmp_path / "pack", hashes=HashCache(None), chunking=SMALL)
    entry = result.manifest.files["shot.blend"]
    assert entry.chunks == chunk_file(scenes["first"], SMALL).chunks
    small = pack(scene, tmp_path / "pack-2", hashes=HashCache(None), chunking=None)
    assert small.manifest.files["shot.blend"].chunks == ()


def sources(path: Path, result: Chunked) -> list[uploads.ChunkSource]:
    found, offset = [], 0
    for chunk in result.chunks:
        found.append(uploads.ChunkSource(path, offset, chunk.size, chunk.sha256))
        offset += chunk.size
    return found


def test_a_resubmit_uploads_only_new_chunks_and_the_machine_rebuilds_the_file(aws, scenes, tmp_path):
    bucket = "cloud-render-chunk-test"
    s3 = client(aws.settings, "s3")
    s3.create_bucket(Bucket=bucket)
    first, moved = chunk_file(scenes["first"], SMALL), chunk_file(scenes["moved"], SMALL)
    sent = uploads.upload_files(aws.settings, bucket, [], chunks=sources(scenes["first"], first))
    assert sent.chunk_bytes_sent == sum({c.sha256: c.size for c in first.chunks}.values())
    # The .blend's headers and meshes compress: those chunks travel compressed, under their own
    # (uncompressed) hash with the form's suffix, and fewer bytes cross the wire.
    assert sent.encodings and sent.wire_bytes < 0.9 * sent.chunk_bytes_sent
    for chunk in first.chunks:
        form = sent.encodings.get(contract.chunk_key(chunk.sha256), "")
        length = s3.head_object(Bucket=bucket, Key=contract.chunk_key(chunk.sha256, form))["ContentLength"]
        assert length == chunk.size if not form else length < 0.9 * chunk.size
    again = uploads.upload_files(aws.settings, bucket, [], chunks=sources(scenes["moved"], moved))
    assert again.chunk_bytes_sent == new_bytes(first, moved) == again.bytes_sent
    assert 0 < again.chunk_bytes_sent < 0.05 * moved.size
    assert again.wire_bytes <= again.chunk_bytes_sent
    assert len(again.chunks_uploaded) + len(again.chunks_skipped) == len({c.sha256 for c in moved.chunks})

    # The machine: links for each chunk in the spec, fetched, checked, rebuilt, checked whole.
    [item] = storage.presign_inputs(
        aws.settings,
        bucket,
        [("shot.blend", moved.sha256, moved.size)],
        600,
        chunks={"shot.blend": [(c.sha256, c.size) for c in moved.chunks]},
        encodings={**sent.encodings, **again.encodings},
    )
    assert "zlib" in {c.encoding for c in item.chunks}
    parsed = contract.parse_input(asdict(item))
    dest = tmp_path / "machine" / "job" / "shot.blend"
    lines: list[str] = []
    download_chunks(
        [asdict(c) for c in parsed.chunks], str(dest), parsed.sha256, parsed.size, lines.append, "shot.blend"
    )
    assert dest.read_bytes() == scenes["moved"].read_bytes()

    # A chunk list that does not describe the file (here: the first save's chunks under the
    # moved file's hash) is caught before Blender sees the file.
    [wrong] = storage.presign_inputs(
        aws.settings,
        bucket,
        [("shot.blend", moved.sha256, first.size)],
        600,
        chunks={"shot.blend": [(c.sha256, c.size) for c in first.chunks]},
        encodings=sent.encodings,
    )
    dest.unlink()
    with pytest.raises(JobFailed) as failed:
        download_chunks(
            [asdict(c) for c in wrong.chunks], str(dest), wrong.sha256, wrong.size, lines.append, "shot.blend"
        )
    assert failed.value.kind == "download" and "does not match" in failed.value.cause
    assert not dest.exists() and not Path(str(dest) + ".part").exists()


def test_the_contract_refuses_a_chunk_list_that_does_not_add_up():
    sha = "ab" * 32
    good = {
        "path": "shot.blend",
        "url": "",
        "sha256": sha,
        "size": 30,
        "chunks": [
            {"sha256": sha, "size": 10, "url": "https://b/c1"},
            {"sha256": sha, "size": 20, "url": "https://b/c2"},
        ],
    }
    assert [c.size for c in contract.parse_input(good).chunks] == [10, 20]
    assert contract.parse_input({**good, "chunks": [], "url": "https://b/f"}).url == "https://b/f"
    bad = [
        ({**good, "size": 31}, "add up to 30"),
        ({**good, "chunks": [{**good["chunks"][0], "sha256": "nothex"}, good["chunks"][1]]}, "SHA-256"),
        ({**good, "chunks": [{**good["chunks"][0], "size": 0}, good["chunks"][1]]}, "outside"),
        (
            {**good, "chunks": [{"sha256": sha, "size": contract.MAX_CHUNK_BYTES + 1, "url": "https://b/c"}]},
            "outside",
        ),
        (
            {**good, "chunks": [{**good["chunks"][0], "url": "file:///etc/passwd"}, good["chunks"][1]]},
            "not a link",
        ),
        ({**good, "chunks": "everything"}, "not a list"),
        ({**good, "chunks": [good["chunks"][0]] * (contract.MAX_CHUNKS + 1)}, "at most"),
        ({**good, "path": "../../etc/shot.blend"}, "leave the job"),
        ({**good, "chunks": [], "url": ""}, "not a link"),
    ]
    for item, reason in bad:
        with pytest.raises(contract.ContractError, match=reason):
            contract.parse_input(item)


@pytest.mark.parametrize("stored", ["", "zlib"])
def test_a_tampered_chunk_in_the_bucket_is_refused_by_the_machine(aws, scenes, tmp_path, stored):
    """Other bytes under a chunk's key, stored as it is or compressed (a valid zlib stream of
    the right size, so only the hash of the inflated bytes can tell), are refused."""
    bucket = f"cloud-render-chunk-tamper{stored}"
    s3 = client(aws.settings, "s3")
    s3.create_bucket(Bucket=bucket)
    first = chunk_file(scenes["first"], SMALL)
    sent = uploads.upload_files(aws.settings, bucket, [], chunks=sources(scenes["first"], first))
    victims = [c for c in first.chunks if sent.encodings.get(contract.chunk_key(c.sha256), "") == stored]
    victim = victims[len(victims) // 2]
    body = b"\0" * victim.size
    s3.put_object(
        Bucket=bucket,
        Key=contract.chunk_key(victim.sha256, stored),
        Body=zlib.compress(body) if stored else body,
    )
    [item] = storage.presign_inputs(
        aws.settings,
        bucket,
        [("shot.blend", first.sha256, first.size)],
        600,
        chunks={"shot.blend": [(c.sha256, c.size) for c in first.chunks]},
        encodings=sent.encodings,
    )
    lines: list[str] = []
    dest = tmp_path / "job" / "shot.blend"
    with pytest.raises(JobFailed) as failed:
        download_chunks(
            [asdict(c) for c in item.chunks], str(dest), item.sha256, item.size, lines.append, "shot.blend"
        )
    assert failed.value.kind == "download" and "damaged" in failed.value.cause and not dest.exists()
    assert any("checksum mismatch" in line for line in lines)


def test_a_relaunch_and_a_movie_made_here_find_the_chunks_again(aws, scenes, tmp_path):
    """Inputs reused from an earlier job keep their chunk lists (from the job record), and the
    movie step on this computer rebuilds the .blend from its chunks."""
    from cloud.job.cloud_steps import CloudSteps
    from cloud.job.local_movie import _rebuild
    from cloud.job.records import JobRecord

    bucket = "cloud-render-chunk-reuse"
    client(aws.settings, "s3").create_bucket(Bucket=bucket)
    first = chunk_file(scenes["first"], SMALL)
    sent = uploads.upload_files(aws.settings, bucket, [], chunks=sources(scenes["first"], first))
    assert sent.encodings  # some chunks are stored compressed: the record must say which
    record = JobRecord.from_json(
        '{"job_id": "j1", "blend_name": "shot.blend", "scene_name": "Scene", "region": "us-east-1", '
        '"instance_type": "c5.2xlarge", "spot": false, "frames": [1], "output_dir": "out", '
        '"price_per_hour": 1.0, "max_cost": 1.0, "max_hours": 1.0}'
    )
    record.bucket = bucket
    record.blend_in_pack = "shot.blend"
    record.pack_manifest = {"shot.blend": [first.sha256, first.size]}
    record.pack_chunks = {"shot.blend": [[c.sha256, c.size] for c in first.chunks]}
    record.pack_encodings = sent.encodings
    record = JobRecord.from_json(record.to_json())  # as read back from disk
    steps = CloudSteps(tmp_path / "state")
    reused = steps.reuse(record)
    assert reused.chunks["shot.blend"] == [(c.sha256, c.size) for c in first.chunks]
    assert reused.encodings == sent.encodings
    dest = tmp_path / "movie" / "job" / "shot.blend"
    _rebuild(steps, aws.settings, record, "shot.blend", first.sha256, dest, tmp_path / "movie")
    assert dest.read_bytes() == scenes["first"].read_bytes()
