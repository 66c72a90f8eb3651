"""The GPU kernel caches kept between machines: the archive checks, the GPU look-up, the offer.

The archive a machine restores was written by another render machine, so the checks run on
crafted hostile archives; the offer runs against the emulated S3 (real presigned URLs); the
GPU is a stand-in `nvidia-smi` on PATH (this computer has none).
"""

from __future__ import annotations

import base64
import io
import json
import tarfile
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from cloud.aws import kernel_cache as offers
from cloud.aws.session import client
from cloud.aws.storage import StoredObject
from cloud.job.cloud_steps import CloudSteps
from cloud.job.records import JobRecord
from cloud.machine import contract
from cloud.machine import kernel_cache as kc
from cloud.machine.contract import WorkerSpec
from dev.simulator import StandInGpu
from tests.factories import job_record

BUCKET = "cloud-render-kcache"
GPU = StandInGpu("NVIDIA A10G", "550.54.15")
MANIFEST = {"gpu": GPU.name, "driver": GPU.driver, "blender_version": "5.0.1", "build_hash": "abc"}


def member(name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple:
    return name, data, kind, link


def archive(path: Path, members: list[tuple], manifest: dict | None = None, mode: str = "w") -> Path:
    """A tar with `manifest.json` first (unless None) and the given (name, data, type, link) members."""
    with tarfile.open(path, mode) as tar:
        if manifest is not None:
            members = [member("manifest.json", json.dumps(manifest).encode()), *members]
        for name, data, kind, link in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mtime = kind, link, int(time.time())
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return path


def stand_in_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpu: StandInGpu | None) -> None:
    """PATH holds only a folder with (or without) the stand-in nvidia-smi."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if gpu is not None:
        (bin_dir / "nvidia-smi").write_text(gpu.nvidia_smi())
        (bin_dir / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/bin:/usr/bin" if gpu is not None else str(bin_dir))


HOSTILE = {
    "traversal": [member("optix/../../outside.txt", b"pwned")],
    "absolute": [member("/tmp/kcache-absolute.txt", b"pwned")],
    "symlink": [member("optix/link", kind=tarfile.SYMTYPE, link="../../outside.txt")],
    "hardlink": [member("optix/a", b"a"), member("optix/hard", kind=tarfile.LNKTYPE, link="optix/a")],
    "device": [member("cuda/dev", kind=tarfile.CHRTYPE)],
    "fifo": [member("cuda/fifo", kind=tarfile.FIFOTYPE)],
    "other_folder": [member("home/.bashrc", b"pwned")],
    "duplicate": [member("optix/a", b"a"), member("optix/a", b"b")],
    "oversized_member": [member("optix/big", b"x" * 5000)],
    "oversized_total": [member(f"cuda/part{i}", b"x" * 900) for i in range(6)],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_whole_and_writes_nothing(tmp_path, case):
    target, outside = tmp_path / "work" / "kernel-cache", tmp_path / "outside.txt"
    path = archive(tmp_path / "a.tar", [member("optix/fine", b"ok"), *HOSTILE[case]], MANIFEST)
    with pytest.raises(kc.ArchiveRefused):
        kc.unpack(str(path), str(target), 4096, {"gpu": GPU.name, "driver": GPU.driver})
    assert not outside.exists() and not Path("/tmp/kcache-absolute.txt").exists()
    written = [p for p in (tmp_path / "work").rglob("*") if p.is_file() or p.is_symlink()]
    assert written == [], written  # not even the harmless member before the bad one


def test_archive_for_another_driver_or_without_manifest_is_refused(tmp_path):
    expect = {"gpu": GPU.name, "driver": GPU.driver}
    for name, manifest in (("other", {**MANIFEST, "driver": "535.1"}), ("none", None)):
        path = archive(tmp_path / f"{name}.tar", [member("optix/a", b"a")], manifest)
        with pytest.raises(kc.ArchiveRefused, match=r"driver|manifest"):
            kc.unpack(str(path), str(tmp_path / name), 4096, expect)
    gz = archive(tmp_path / "gz.tar", [member("optix/a", b"a")], MANIFEST, mode="w:gz")
    with pytest.raises(kc.ArchiveRefused, match="readable tar"):  # plain tar only: no decompression bomb
        kc.unpack(str(gz), str(tmp_path / "gz"), 4096, expect)


def test_pack_then_unpack_gives_the_same_bytes(tmp_path):
    source = tmp_path / "one" / "kernel-cache"
    files = {"optix/cache7.db": b"\x00db" * 100, "cuda/ab/cd/entry": b"cubin" * 50}
    for rel, data in files.items():
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_bytes(data)
    tar = tmp_path / "kept.tar"
    kc.pack(str(source), sorted(kc.snapshot(str(source))), MANIFEST, str(tar))
    target = tmp_path / "two" / "kernel-cache"
    manifest = kc.unpack(str(tar), str(target), 1 << 20, {"gpu": GPU.name, "driver": GPU.driver})
    assert manifest["build_hash"] == "abc"
    assert {rel: (target / rel).read_bytes() for rel in files} == files
    assert sorted(p.name for p in target.iterdir()) == ["cuda", "optix"]  # no staging folder left


def test_gpu_identified_by_nvidia_smi_or_not_at_all(tmp_path, monkeypatch):
    stand_in_gpu(tmp_path, monkeypatch, GPU)
    assert kc.identify_gpu() == (GPU.name, GPU.driver)
    stand_in_gpu(tmp_path, monkeypatch, StandInGpu("NVIDIA A10G", "not a version; rm -rf /"))
    assert kc.identify_gpu() is None
    (tmp_path / "bin" / "nvidia-smi").unlink()
    stand_in_gpu(tmp_path, monkeypatch, None)
    assert kc.identify_gpu() is None


def test_malformed_offers_are_refused():
    good = {
        "blender_version": "5.0.1",
        "gpu_model": "NVIDIA A10G",
        "prefix": "kernel-cache/5-0-1/nvidia-a10g/",
        "archives": [{"driver": "550.54.15", "url": "https://bucket/k", "size": 10}],
    }
    assert contract.parse_kernel_cache_offer(good).archives[0].driver == "550.54.15"
    for bad in (
        {**good, "prefix": "jobs/other/out/"},
        {**good, "archives": [{"driver": "../../x", "url": "https://bucket/k", "size": 10}]},
        {**good, "archives": [{"driver": "550.1", "url": "file:///etc/passwd", "size": 10}]},
        {**good, "archives": [{"driver": "550.1", "url": "https://b/k", "size": 1 << 40}]},
        {**good, "archives": [good["archives"][0]] * (contract.MAX_KERNEL_CACHE_OFFERS + 1)},
        [],
    ):
        with pytest.raises(contract.ContractError):
            contract.parse_kernel_cache_offer(bad)


def put_archive(s3, key: str, path: Path) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())


def test_offer_lists_newest_archives_for_the_build_and_gpu(aws, tmp_path):
    s3 = client(aws.settings, "s3")
    s3.create_bucket(Bucket=BUCKET)
    prefix = contract.kernel_cache_prefix("5.0.1", "NVIDIA A10G")
    assert prefix == "kernel-cache/5-0-1/nvidia-a10g/"
    drivers = ["535.1", "550.1", "550.2", "560.3", "570.9"]
    for driver in drivers:  # written one after the other: the last is the newest
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}{driver}.tar", Body=b"t" * 10)
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}notes.txt", Body=b"junk")
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}sub/580.1.tar", Body=b"junk")
    s3.put_object(Bucket=BUCKET, Key="kernel-cache/5-0-1/nvidia-t4/550.1.tar", Body=b"other gpu")
    got = offers.offer(aws.settings, BUCKET, "5.0.1", "NVIDIA A10G", 3600)
    assert got is not None and got.prefix == prefix
    # Written within the same second (S3 keeps times to the second): the higher drivers first.
    assert [a.driver for a in got.archives] == ["570.9", "560.3", "550.2", "550.1"]
    policy = json.loads(base64.b64decode(got.upload_fields["policy"]))
    assert ["starts-with", "$key", prefix] in policy["conditions"]
    assert ["content-length-range", 0, contract.MAX_KERNEL_CACHE_BYTES] in policy["conditions"]
    assert offers.offer(aws.settings, BUCKET, "5.0.1", None, 3600) is None  # no GPU, no offer
    assert contract.parse_kernel_cache_offer(asdict(got))


def test_newest_written_archive_comes_first():
    prefix = "kernel-cache/5-0-1/nvidia-a10g/"
    day = datetime(2026, 12, 1, tzinfo=UTC)
    objects = [
        StoredObject(prefix + "570.9.tar", 10, "e", day - timedelta(days=9)),  # old, higher driver
        StoredObject(prefix + "550.2.tar", 10, "e", day),
        StoredObject(prefix + "560.1.tar", 0, "e", day),  # empty: never offered
        StoredObject(prefix + "580.1.tar", contract.MAX_KERNEL_CACHE_BYTES + 1, "e", day),  # too big
        StoredObject(prefix + "x/590.1.tar", 10, "e", day),
    ]
    assert [driver for driver, _obj in offers.newest_first(objects, prefix)] == ["550.2", "570.9"]


def test_hostile_archive_in_the_bucket_costs_only_the_cache(aws, tmp_path, monkeypatch):
    """The machine's side with real presigned URLs: a path-traversal archive offered for this
    driver is refused with a log line, the cache folders stay empty and usable, nothing lands
    outside; then a good archive from the same bucket restores byte for byte."""
    s3 = client(aws.settings, "s3")
    s3.create_bucket(Bucket=BUCKET)
    prefix = contract.kernel_cache_prefix("5.0.1", GPU.name)
    hostile = archive(tmp_path / "h.tar", [member("optix/../../../escaped.txt", b"pwned")], MANIFEST)
    put_archive(s3, f"{prefix}{GPU.driver}.tar", hostile)
    stand_in_gpu(tmp_path, monkeypatch, GPU)
    offer = offers.offer(aws.settings, BUCKET, "5.0.1", GPU.name, 3600)
    said: list[str] = []
    work = tmp_path / "machine" / "run"
    cache = kc.KernelCache(asdict(offer), str(work), said.append)
    env = cache.prepare()
    assert env["OPTIX_CACHE_PATH"] == str(work / "kernel-cache" / "optix")
    assert env["CUDA_CACHE_PATH"] == str(work / "kernel-cache" / "cuda")
    assert any("was refused" in line and "outside the folder" in line for line in said), said
    assert not list(tmp_path.rglob("escaped.txt"))
    assert [p for p in (work / "kernel-cache").rglob("*") if p.is_file()] == []

    good_files = {"optix/entry.bin": b"o" * 300, "cuda/x/entry": b"c" * 200}
    source = tmp_path / "src"
    for rel, data in good_files.items():
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_bytes(data)
    kc.pack(str(source), list(good_files), MANIFEST, str(tmp_path / "good.tar"))
    put_archive(s3, f"{prefix}{GPU.driver}.tar", tmp_path / "good.tar")
    offer = offers.offer(aws.settings, BUCKET, "5.0.1", GPU.name, 3600)
    said.clear()
    again = kc.KernelCache(asdict(offer), str(tmp_path / "m2"), said.append)
    again.prepare()
    assert any("kernel cache restored" in line for line in said), said
    assert {rel: (tmp_path / "m2" / "kernel-cache" / rel).read_bytes() for rel in good_files} == good_files
    again.note_build("5.0.1", "abc")
    again.save()  # nothing changed since the restore: no upload
    assert any("not uploaded again" in line for line in said), said

    # A machine whose Blender reports another build than the archive's keeps its own in its place.
    third = kc.KernelCache(asdict(offer), str(tmp_path / "m3"), said.append)
    third.prepare()
    third.note_build("5.0.1", "another-build")
    third.save()
    assert any(f"kernel cache kept as {prefix}{GPU.driver}.tar" in line for line in said), said
    kept = s3.get_object(Bucket=BUCKET, Key=f"{prefix}{GPU.driver}.tar")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(kept)) as tar:
        extracted = tar.extractfile("manifest.json")
        assert extracted is not None and json.load(extracted)["build_hash"] == "another-build"
        assert sorted(tar.getnames()) == sorted(["manifest.json", *good_files])


def test_no_gpu_means_no_cache_and_one_line(tmp_path, monkeypatch):
    stand_in_gpu(tmp_path, monkeypatch, None)
    said: list[str] = []
    offer = {"blender_version": "5.0.1", "gpu_model": "NVIDIA T4", "prefix": "kernel-cache/5-0-1/nvidia-t4/"}
    cache = kc.KernelCache(offer, str(tmp_path / "work"), said.append)
    assert cache.prepare() == {}
    cache.save()
    assert len(said) == 1 and "no NVIDIA GPU" in said[0]
    assert not (tmp_path / "work" / "kernel-cache").exists()


def test_the_job_spec_offers_the_cache_for_gpu_jobs_only(aws, tmp_path):
    """The add-on's side at submit: the catalog's GPU for the instance type names the folder,
    the offer travels in the spec (not the user-data) and reads back through the contract; a
    CPU job, a CPU instance or a bucket that cannot be listed gets none, and no error."""
    s3 = client(aws.settings, "s3")
    s3.create_bucket(Bucket=BUCKET)
    prefix = contract.kernel_cache_prefix("5.0.1", "NVIDIA A10G")
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}{GPU.driver}.tar", Body=b"t" * 10)
    steps = CloudSteps(tmp_path / "state")

    def job(instance_type: str, bucket: str = BUCKET) -> JobRecord:
        return job_record(tmp_path / "out", job_id="j1", instance_type=instance_type, bucket=bucket)

    gpu_job = SimpleNamespace(device="GPU", blender_version="5.0.1")
    got = steps.kernel_cache(aws.settings, job("g5.xlarge"), gpu_job, 3600)  # type: ignore[arg-type]
    assert got is not None and got.gpu_model == "NVIDIA A10G" and got.prefix == prefix
    assert [a.driver for a in got.archives] == [GPU.driver]
    spec = WorkerSpec("j1", "5.0.1", "shot.blend", [1], [], "https://u", {}, "jobs/j1/out/", kernel_cache=got)
    assert WorkerSpec.from_dict(json.loads(spec.to_json())).kernel_cache == got
    cpu_job = SimpleNamespace(device="CPU", blender_version="5.0.1")
    assert steps.kernel_cache(aws.settings, job("g5.xlarge"), cpu_job, 3600) is None  # type: ignore[arg-type]
    assert steps.kernel_cache(aws.settings, job("c7i.2xlarge"), gpu_job, 3600) is None  # type: ignore[arg-type]
    missing = job("g5.xlarge", bucket="cloud-render-no-such-bucket")
    assert steps.kernel_cache(aws.settings, missing, gpu_job, 3600) is None  # type: ignore[arg-type]


def test_only_machine_0_of_a_batch_job_keeps_the_cache(tmp_path, monkeypatch):
    """N machines of one array job compile the same kernels: one upload, from machine 0."""
    stand_in_gpu(tmp_path, monkeypatch, GPU)
    monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", "2")
    said: list[str] = []
    offer = {
        "blender_version": "5.0.1",
        "gpu_model": GPU.name,
        "prefix": "kernel-cache/5-0-1/nvidia-a10g/",
        "upload_url": "http://127.0.0.1:9/",  # nothing listens: an upload attempt would fail loudly
    }
    cache = kc.KernelCache(offer, str(tmp_path / "work"), said.append)
    env = cache.prepare()
    Path(env["OPTIX_CACHE_PATH"], "entry.bin").write_bytes(b"compiled")  # stands in for the driver
    cache.note_build("5.0.1", "abc")
    cache.save()
    assert said[-1] == "kernel cache: machine 0 of this job keeps it, not machine 2", said
    assert not any("could not keep" in line for line in said)


def test_a_cache_rewritten_in_place_has_not_grown_but_new_kernels_have():
    """The OptiX cache is a database the driver may rewrite on every use: same files, a few
    pages more, is no reason to upload it again; a new entry, or much more data, is."""
    before = {"optix/optix7cache.db": (4_000_000, 1), "cuda/index": (5_648, 1)}
    touched = {"optix/optix7cache.db": (4_000_000 + 8192, 2), "cuda/index": (5_648, 2)}
    assert not kc.grew(before, touched)
    assert kc.grew(before, {**touched, "cuda/a/b/entry": (1024, 3)})
    assert kc.grew(before, {**touched, "optix/optix7cache.db": (4_000_000 + kc.GROWTH_SLACK + 1, 2)})
