"""Inputs travel compressed where that pays, against moto over real HTTP: what compresses is
stored zlib-compressed under its uncompressed hash and rebuilt byte for byte by the machine's
own download code; what does not (random bytes, a real PNG, formats known by their magic) goes
as it is; a tampered compressed object is refused by its hash, a bomb by its declared size; an
object stored plainly before compression existed is reused, never sent again."""

from __future__ import annotations

import hashlib
import random
import struct
import threading
import zlib
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from cloud.aws import storage, uploads
from cloud.aws.session import client
from cloud.machine import contract
from cloud.machine.inflate import Inflater, Oversize, inflate_bytes
from cloud.machine.transport import JobFailed, download, download_chunks
from cloud.pack import compression
from dev.relay import SlowLink

KiB, MiB = 1024, 1024 * 1024
PNG = Path("/work/shared/testdata/blendfiles/imgseq/000210.png")


def blend_like(size: int, seed: int = 1) -> bytes:
    """Bytes that compress as a plain .blend does: struct-like records with a little noise."""
    rng = random.Random(seed)
    record = struct.Struct("<4sIQ4f")
    count = size // record.size + 1
    data = b"".join(
        record.pack(b"DATA", rng.randrange(64), 0x7F000000, 0.0, 1.0, rng.random(), 0.0) for _ in range(count)
    )
    return data[:size]


def put(path: Path, data: bytes) -> tuple[Path, str, int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest(), len(data)


def exr_head(method: int) -> bytes:
    """The start of an OpenEXR file whose header names `method` as its compression."""
    attrs = b"channels\0chlist\0" + struct.pack("<i", 1) + b"\0"
    attrs += b"compression\0compression\0" + struct.pack("<i", 1) + bytes([method])
    return b"\x76\x2f\x31\x01" + struct.pack("<I", 2) + attrs + b"dataWindow\0box2i\0" + struct.pack("<i", 16)


@pytest.fixture
def bucket(aws, request) -> str:
    name = "cloud-render-zlib-" + hashlib.sha256(request.node.name.encode()).hexdigest()[:12]
    client(aws.settings, "s3").create_bucket(Bucket=name)
    return name


def machine_fetch(aws, bucket: str, item: contract.InputFile, dest: Path) -> list[str]:
    """What the machine does with one entry of the spec: parse it, download it, check it."""
    parsed = contract.parse_input(asdict(item))
    lines: list[str] = []
    if parsed.chunks:
        chunks = [asdict(c) for c in parsed.chunks]
        download_chunks(chunks, str(dest), parsed.sha256, parsed.size, lines.append, parsed.path)
    else:
        download(
            parsed.url, str(dest), parsed.sha256, lines.append, parsed.path, parsed.encoding, parsed.size
        )
    return lines


# --- choosing ------------------------------------------------------------------------------


def test_formats_compressed_already_are_known_by_their_first_bytes_not_their_names(tmp_path):
    assert compression.already_compressed(PNG.read_bytes()[:64]) == "PNG"
    assert compression.already_compressed(b"\xff\xd8\xff\xe0\0\x10JFIF") == "JPEG"
    assert compression.already_compressed(b"\x28\xb5\x2f\xfd" + bytes(60)) == "zstd"
    assert compression.already_compressed(b"\x1f\x8b\x08" + bytes(60)) == "gzip"
    assert compression.already_compressed(b"PK\x03\x04" + bytes(60)) == "ZIP"
    assert compression.already_compressed(b"\0\0\0\x20ftypisom" + bytes(52)) == "MP4/MOV"
    assert compression.already_compressed(b"OggS" + bytes(60)) == "Ogg"
    assert compression.already_compressed(b"fLaC" + bytes(60)) == "FLAC"
    assert compression.already_compressed(b"RIFF\0\0\0\0WEBPVP8 ") == "WEBP"
    assert compression.already_compressed(b"RIFF\0\0\0\0WAVEfmt ") == ""  # PCM compresses
    assert compression.already_compressed(b"BLENDER-v405REND") == ""
    # OpenEXR: by the header's compression attribute, NONE only is worth a try.
    assert compression.exr_compression(exr_head(0)) == 0 and compression.already_compressed(exr_head(0)) == ""
    assert compression.already_compressed(exr_head(3)).startswith("OpenEXR")
    assert compression.already_compressed(exr_head(3)[:20]).startswith("OpenEXR")  # unreadable: not tried

    # A PNG named .blend goes as it is; a .blend-like file named .png is compressed.
    png, _sha, _size = put(tmp_path / "scene.blend", PNG.read_bytes())
    assert compression.choose_file(png) == ""
    fake, _sha, _size = put(tmp_path / "texture.png", blend_like(600 * KiB))
    assert compression.choose_file(fake) == "zlib"
    noise, _sha, _size = put(tmp_path / "noise.bin", random.Random(3).randbytes(600 * KiB))
    assert compression.choose_file(noise) == ""
    assert compression.choose_bytes(blend_like(300 * KiB)) == "zlib"
    assert compression.choose_bytes(random.Random(4).randbytes(300 * KiB)) == ""


def test_the_inflater_stops_at_the_declared_size():
    data = blend_like(200 * KiB)
    body = zlib.compress(data)
    assert inflate_bytes(body, len(data)) == data
    with pytest.raises(Oversize):
        inflate_bytes(body, len(data) - 1)
    with pytest.raises(ValueError, match="not"):
        inflate_bytes(body, len(data) + 1)
    with pytest.raises(ValueError, match="cut short"):
        inflate_bytes(body[:-10], len(data))
    with pytest.raises(ValueError, match="after the end"):
        inflate_bytes(body + b"more", len(data))
    with pytest.raises(ValueError, match="damaged"):
        inflate_bytes(b"not zlib at all", len(data))
    # A bomb fed in small pieces: never more than the size comes out, whatever it would become.
    bomb = zlib.compress(bytes(64 * MiB), 9)
    inflater, out = Inflater(MiB), 0
    with pytest.raises(Oversize):
        for at in range(0, len(bomb), 4 * KiB):
            out += len(inflater.feed(bomb[at : at + 4 * KiB]))
    assert out <= MiB


# --- whole files ---------------------------------------------------------------------------


def test_a_compressible_file_travels_compressed_and_is_rebuilt_byte_for_byte(aws, bucket, tmp_path):
    scene = put(tmp_path / "p" / "scene.blend", blend_like(3 * MiB))
    result = uploads.upload_files(aws.settings, bucket, [scene])
    path, sha, size = scene
    assert result.uploaded == [sha] and result.bytes_sent == size
    assert result.encodings == {contract.cas_key(sha): "zlib"} and result.wire_bytes < 0.5 * size
    s3 = client(aws.settings, "s3")
    head = s3.head_object(Bucket=bucket, Key=contract.cas_key(sha, "zlib"))
    body = s3.get_object(Bucket=bucket, Key=contract.cas_key(sha, "zlib"))["Body"].read()
    assert (
        head["ContentLength"] == len(body) == result.wire_bytes and zlib.decompress(body) == path.read_bytes()
    )
    # The PUT carried the SHA-256 of the body sent (the layer in front of moto refuses a
    # mismatch with BadDigest, as S3 does: tests/unit/test_strict_rules.py); the name is the
    # uncompressed file's hash, checked on the bytes read while compressing.
    assert head["Metadata"] == {"sha256": sha, "encoding": "zlib"}

    [item] = storage.presign_inputs(
        aws.settings, bucket, [("scene.blend", sha, size)], 600, encodings=result.encodings
    )
    assert item.encoding == "zlib"
    dest = tmp_path / "machine" / "scene.blend"
    machine_fetch(aws, bucket, item, dest)
    assert dest.read_bytes() == path.read_bytes()

    # A resubmit finds it in its compressed form: nothing sent, the same form reported.
    again = uploads.upload_files(aws.settings, bucket, [scene])
    assert again.uploaded == [] and again.skipped == [sha] and again.encodings == result.encodings


def test_random_bytes_and_a_real_png_travel_as_they_are(aws, bucket, tmp_path):
    noise = put(tmp_path / "p" / "noise.vdb", random.Random(7).randbytes(2 * MiB))
    png = put(tmp_path / "p" / "texture.png", PNG.read_bytes())
    result = uploads.upload_files(aws.settings, bucket, [noise, png])
    assert sorted(result.uploaded) == sorted([noise[1], png[1]]) and result.encodings == {}
    assert result.wire_bytes == noise[2] + png[2]
    s3 = client(aws.settings, "s3")
    for _path, sha, size in (noise, png):
        assert s3.head_object(Bucket=bucket, Key=contract.cas_key(sha))["ContentLength"] == size
    items = storage.presign_inputs(
        aws.settings, bucket, [("noise.vdb", noise[1], noise[2]), ("texture.png", png[1], png[2])], 600
    )
    for item, (path, _sha, _size) in zip(items, (noise, png), strict=True):
        assert item.encoding == ""
        machine_fetch(aws, bucket, item, tmp_path / "machine" / item.path)
        assert (tmp_path / "machine" / item.path).read_bytes() == path.read_bytes()


def test_an_object_stored_plainly_before_compression_is_reused_as_it_is(aws, bucket, tmp_path):
    """A bucket filled by an earlier version: the plain object is found, not sent again, and
    the machine reads it plainly because the spec says so."""
    path, sha, size = put(tmp_path / "p" / "scene.blend", blend_like(2 * MiB))
    s3 = client(aws.settings, "s3")
    s3.put_object(Bucket=bucket, Key=contract.cas_key(sha), Body=path.read_bytes(), Metadata={"sha256": sha})
    result = uploads.upload_files(aws.settings, bucket, [(path, sha, size)])
    assert result.uploaded == [] and result.skipped == [sha] and result.encodings == {}
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=contract.cas_key(sha, "zlib"))
    [item] = storage.presign_inputs(
        aws.settings, bucket, [("scene.blend", sha, size)], 600, encodings=result.encodings
    )
    assert item.encoding == "" and item.url.split("?")[0].endswith(sha)
    machine_fetch(aws, bucket, item, tmp_path / "machine" / "scene.blend")
    assert (tmp_path / "machine" / "scene.blend").read_bytes() == path.read_bytes()


def test_a_file_that_changed_after_hashing_is_not_stored_under_the_old_hash(aws, bucket, tmp_path):
    """S3 checks the compressed body against the checksum we computed from it: the content
    address is checked on the bytes read while compressing instead."""
    path, sha, size = put(tmp_path / "p" / "scene.blend", blend_like(MiB))
    path.write_bytes(blend_like(MiB, seed=2))  # same size, other bytes
    with pytest.raises(uploads.NotAsHashed) as refused:
        uploads.upload_files(aws.settings, bucket, [(path, sha, size)])
    assert refused.value.path == path
    assert "Contents" not in client(aws.settings, "s3").list_objects_v2(Bucket=bucket, Prefix="cas/")


def test_a_tampered_compressed_object_is_refused_by_its_hash(aws, bucket, tmp_path):
    path, sha, size = put(tmp_path / "p" / "scene.blend", blend_like(MiB))
    result = uploads.upload_files(aws.settings, bucket, [(path, sha, size)])
    # Other bytes of the same size, compressed: a valid stream only the hash can tell apart.
    client(aws.settings, "s3").put_object(
        Bucket=bucket, Key=contract.cas_key(sha, "zlib"), Body=zlib.compress(blend_like(MiB, seed=9))
    )
    [item] = storage.presign_inputs(
        aws.settings, bucket, [("scene.blend", sha, size)], 600, encodings=result.encodings
    )
    dest = tmp_path / "machine" / "scene.blend"
    with pytest.raises(JobFailed) as failed:
        machine_fetch(aws, bucket, item, dest)
    assert (
        failed.value.kind == "download"
        and "damaged" in failed.value.cause
        and "checksum" in failed.value.cause
    )
    assert not dest.exists()


def test_a_compressed_object_that_inflates_past_its_size_is_refused(aws, bucket, tmp_path):
    path, sha, size = put(tmp_path / "p" / "scene.blend", blend_like(MiB))
    result = uploads.upload_files(aws.settings, bucket, [(path, sha, size)])
    s3 = client(aws.settings, "s3")
    s3.put_object(Bucket=bucket, Key=contract.cas_key(sha, "zlib"), Body=zlib.compress(bytes(256 * MiB), 9))
    [item] = storage.presign_inputs(
        aws.settings, bucket, [("scene.blend", sha, size)], 600, encodings=result.encodings
    )
    dest = tmp_path / "machine" / "scene.blend"
    with pytest.raises(JobFailed) as failed:
        machine_fetch(aws, bucket, item, dest)
    assert failed.value.kind == "download" and "declared" in failed.value.cause
    assert "Submit the job again" in failed.value.cause and not dest.exists()
    assert Path(str(dest) + ".part").stat().st_size <= size  # never more than the file on disk


# --- chunks --------------------------------------------------------------------------------


def test_chunks_travel_compressed_where_it_pays_and_a_chunk_bomb_is_refused(aws, bucket, tmp_path):
    """Half the file compresses, half is noise: each chunk is judged by its own bytes."""
    data = blend_like(MiB) + random.Random(5).randbytes(MiB)
    path, sha, size = put(tmp_path / "p" / "big.blend", data)
    pieces = [
        uploads.ChunkSource(path, at, 256 * KiB, hashlib.sha256(data[at : at + 256 * KiB]).hexdigest())
        for at in range(0, size, 256 * KiB)
    ]
    result = uploads.upload_files(aws.settings, bucket, [], chunks=pieces)
    forms = [result.encodings.get(contract.chunk_key(p.sha256), "") for p in pieces]
    assert forms == ["zlib"] * 4 + [""] * 4
    assert result.chunk_bytes_sent == size and result.wire_bytes < 0.8 * size
    chunks = {"big.blend": [(p.sha256, p.size) for p in pieces]}
    [item] = storage.presign_inputs(
        aws.settings, bucket, [("big.blend", sha, size)], 600, chunks=chunks, encodings=result.encodings
    )
    dest = tmp_path / "machine" / "big.blend"
    machine_fetch(aws, bucket, item, dest)
    assert dest.read_bytes() == data

    # A resubmit sends nothing: each chunk is found in the form it was stored in.
    again = uploads.upload_files(aws.settings, bucket, [], chunks=pieces)
    assert again.chunks_uploaded == [] and again.encodings == result.encodings

    client(aws.settings, "s3").put_object(
        Bucket=bucket,
        Key=contract.chunk_key(pieces[0].sha256, "zlib"),
        Body=zlib.compress(bytes(64 * MiB), 9),
    )
    dest.unlink()
    with pytest.raises(JobFailed) as failed:
        machine_fetch(aws, bucket, item, dest)
    assert failed.value.kind == "download" and "declared" in failed.value.cause and not dest.exists()


def test_the_contract_knows_the_forms_and_refuses_others():
    sha = "ab" * 32
    entry = {"path": "a.blend", "url": "https://b/f", "sha256": sha, "size": 3}
    assert contract.parse_input(entry).encoding == ""  # a spec from before compression
    assert contract.parse_input({**entry, "encoding": "zlib"}).encoding == "zlib"
    with pytest.raises(contract.ContractError, match="stored as"):
        contract.parse_input({**entry, "encoding": "zstd"})
    chunked = {
        **entry,
        "url": "",
        "chunks": [{"sha256": sha, "size": 3, "url": "https://b/c", "encoding": "gzip"}],
    }
    with pytest.raises(contract.ContractError, match="stored as"):
        contract.parse_input(chunked)
    assert contract.cas_key(sha, "zlib") == f"cas/{sha}.zlib"
    assert contract.chunk_key(sha, "zlib") == f"cas/chunks/{sha}.zlib"


def test_a_movie_made_here_reads_the_scene_in_the_form_it_was_stored(aws, bucket, tmp_path):
    """The add-on's own read of an input (the movie step on the artist's computer): a .blend
    stored compressed is inflated into a folder that does not exist yet, a plain one as before."""
    from cloud.job.cloud_steps import CloudSteps
    from cloud.job.local_movie import _fetch
    from cloud.job.records import JobRecord

    path, sha, size = put(tmp_path / "p" / "shot.blend", blend_like(MiB))
    sent = uploads.upload_files(aws.settings, bucket, [(path, sha, size)])
    record = JobRecord.from_json(
        '{"job_id": "j1", "blend_name": "shot.blend", "scene_name": "Scene", "region": "us-east-1", '
        '"instance_type": "c5.2xlarge", "spot": false, "frames": [1], "output_dir": "out", '
        '"price_per_hour": 1.0, "max_cost": 1.0, "max_hours": 1.0}'
    )
    record.bucket, record.pack_encodings = bucket, sent.encodings
    assert sent.encodings == {contract.cas_key(sha): "zlib"}
    steps = CloudSteps(tmp_path / "state")
    dest = tmp_path / "movie" / "job" / "shot.blend"
    _fetch(
        steps,
        aws.settings,
        JobRecord.from_json(record.to_json()),
        contract.cas_key(sha),
        dest,
        size,
        tmp_path,
        size,
    )
    assert dest.read_bytes() == path.read_bytes()


def test_a_file_whose_head_does_not_compress_is_still_judged_by_its_sample(aws, bucket, tmp_path):
    """The first 16 KiB only choose which key is asked for first; what is sent is decided on
    the sample over the whole file."""
    data = random.Random(11).randbytes(16 * KiB) + blend_like(2 * MiB)
    path, sha, size = put(tmp_path / "p" / "cache.vdb", data)
    assert compression.likely_form(path) == "" and compression.choose_file(path) == "zlib"
    result = uploads.upload_files(aws.settings, bucket, [(path, sha, size)])
    assert result.encodings == {contract.cas_key(sha): "zlib"} and result.wire_bytes < 0.5 * size
    again = uploads.upload_files(aws.settings, bucket, [(path, sha, size)])  # found on the second ask
    assert again.skipped == [sha] and again.encodings == result.encodings


def test_a_file_sent_as_it_is_goes_while_a_larger_one_is_still_being_compressed(
    aws, bucket, tmp_path, monkeypatch
):
    """The uplink is not left idle while a large file is compressed: the compression of the
    largest file (sent first) is held until the noise file's bytes have gone; were the files
    compressed one by one before being sent, the noise would wait on it and the hold time out."""
    scene = put(tmp_path / "p" / "scene.blend", blend_like(3 * MiB))
    noise = put(tmp_path / "p" / "noise.vdb", random.Random(3).randbytes(1 * MiB))
    noise_going = threading.Event()
    compress_file = compression.compress_file
    held: list[bool] = []

    def held_compress(source, dest, block=1 << 20, level=compression.LEVEL):
        held.append(noise_going.wait(30))  # the noise's upload reports progress meanwhile
        return compress_file(source, dest, block, level)

    def progress(step: uploads.UploadProgress) -> None:
        if step.sha256 == noise[1] and step.file_done > 0:
            noise_going.set()

    monkeypatch.setattr(compression, "compress_file", held_compress)
    result = uploads.upload_files(aws.settings, bucket, [scene, noise], progress)
    assert held == [True]
    assert sorted(result.uploaded) == sorted([scene[1], noise[1]])
    assert result.encodings == {contract.cas_key(scene[1]): "zlib"}


# --- the effort, from the link -------------------------------------------------------------
MB = 1_000_000
# A plain .blend on one core of the dev machine: level 1 77 MB/s to 0.38, level 6 41 MB/s to 0.35.
BLEND = {"speed1": 77 * MB, "speed6": 41 * MB, "ratio1": 0.38, "ratio6": 0.35}
# Bytes that barely compress (a noisy cache): 30 MB/s to 0.85 at level 1, no better at 6.
POOR = {"speed1": 30 * MB, "speed6": 25 * MB, "ratio1": 0.85, "ratio6": 0.84}


def test_the_level_is_picked_from_the_link_and_the_samples_speed_and_ratio():
    level = compression.choose_level
    assert level(6.25 * MB, **BLEND) == 1  # 50 Mbit/s home uplink: 65 ns a byte at 1, 68 at 6, 160 plain
    assert level(2.5 * MB, **BLEND) == 6  # 20 Mbit/s: 152 ns at 6 against 159 at 1
    assert level(0.5 * MB, **BLEND) == 6
    assert level(37.5 * MB, **BLEND) == 1  # 300 Mbit/s: 17 ns against 27 plain
    assert level(125 * MB, **BLEND) == 0  # 1 Gbit/s to a nearby region: compressing is the slower part
    assert level(1000 * MB, **BLEND) == 0  # this computer's loopback
    assert level(37.5 * MB, **BLEND, cores=1) == 1 and level(60 * MB, **BLEND, cores=1) == 0
    assert level(12.5 * MB, **POOR) == 0  # 100 Mbit/s: 85 ns compressed against 80 plain
    assert level(1.25 * MB, **POOR) == 1  # 10 Mbit/s: 697 against 800
    assert level(1.25 * MB, **{**POOR, "ratio1": 0.95}) == 0  # saves under a tenth: never
    assert level(0.0, **BLEND) == 0


def test_level_6_is_learnt_from_the_first_samples_then_estimated():
    effort = compression.Effort(learn=2)
    sample = blend_like(256 * KiB)
    measured = [effort.hard(sample, 0.4, 100 * MB) for _ in range(2)]
    assert all(0 < ratio < 0.4 and speed > 0 for ratio, speed in measured)
    ratio, speed = effort.hard(b"never compressed", 0.5, 50 * MB)  # estimated: no sample compressed
    factors = sorted(r / 0.4 for r, _s in measured), sorted(s / (100 * MB) for _r, s in measured)
    assert ratio == 0.5 * factors[0][1] and speed == 50 * MB * factors[1][1]


def test_the_link_is_measured_from_answered_requests_each_by_its_share_of_the_time(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(uploads.time, "monotonic", lambda: clock[0])
    meter = uploads.LinkMeter(measure_bytes=4000)
    one = meter.begin()
    clock[0] += 1.0
    meter.end(one, 1000)  # alone: 1000 bytes in 1 s
    assert meter.rate() is None  # under measure_bytes
    tokens = [meter.begin() for _ in range(4)]  # four at once, 4000 bytes in all in 4 s
    clock[0] += 4.0
    for token in tokens:
        meter.end(token, 1000)
    assert meter.rate() == 1000.0  # 5000 bytes over 1 s alone + 4 x (4 s shared by 4: 1 s)
    failed = meter.begin()
    meter.end(failed, 0)
    assert meter.rate() == 1000.0 and meter.in_flight == 0  # kept once measured


def test_a_slow_link_measured_while_uploading_picks_compression(aws, bucket, tmp_path):
    noise = put(tmp_path / "p" / "noise.vdb", random.Random(8).randbytes(3 * MiB))
    scene = put(tmp_path / "p" / "scene.blend", blend_like(1 * MiB))
    meter = uploads.LinkMeter(measure_bytes=2 * MiB)
    with SlowLink(aws.url, 2 * MiB) as link:  # 16.8 Mbit/s
        settings = replace(aws.settings, endpoint_url=link.url)
        first = uploads.upload_files(settings, bucket, [noise], link=meter)
        rate = meter.rate()
        assert first.encodings == {} and rate is not None and 0.5 * MiB < rate < 3 * MiB, rate
        second = uploads.upload_files(settings, bucket, [scene], link=meter)
    key = contract.cas_key(scene[1])
    assert second.encodings == {key: "zlib"} and second.levels[key] in (1, 6), second.levels


def test_a_fast_local_link_sends_poorly_compressible_bytes_as_they_are(aws, bucket, tmp_path):
    rng = random.Random(9)
    poor = b"".join(rng.randbytes(900) + bytes(124) for _ in range(2048))  # 0.88 at level 1
    path, sha, size = put(tmp_path / "p" / "cache.vdb", poor)
    assert compression.choose_file(path) == "zlib"  # the link unknown: it would go compressed
    meter = uploads.LinkMeter(measure_bytes=2 * MiB)
    noise = put(tmp_path / "p" / "noise.vdb", rng.randbytes(3 * MiB))
    uploads.upload_files(aws.settings, bucket, [noise], link=meter)  # straight to the emulator
    rate = meter.rate()
    assert rate is not None
    result = uploads.upload_files(aws.settings, bucket, [(path, sha, size)], link=meter)
    assert result.uploaded == [sha] and result.encodings == {} and result.wire_bytes == size, rate
