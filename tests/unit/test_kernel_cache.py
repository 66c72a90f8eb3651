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
import urllib.request
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest

from cloud.aws import kernel_cache as offers
from cloud.aws.kernel_drivers import KernelDrivers
from cloud.aws.session import client
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
        "prefix": "kernel-cache/v2/5-0-1/nvidia-a10g/",
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


def test_offer_is_the_remembered_drivers_archive_and_fake_newer_ones_change_nothing(aws, tmp_path):
    """The offer is one exact key, `<remembered driver>.tar`: four "newer driver" archives
    written after the real one (what a hostile machine with the folder's POST could place)
    are never offered; with nothing remembered, nothing is offered; a remembered driver with
    no archive, or one that is not a driver version, offers none either."""
    s3 = client(aws.settings, "s3")
    s3.create_bucket(Bucket=BUCKET)
    prefix = contract.kernel_cache_prefix("5.0.1", "NVIDIA A10G")
    assert prefix == "kernel-cache/v2/5-0-1/nvidia-a10g/"
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}{GPU.driver}.tar", Body=b"real" * 10)
    for fake in ("560.1", "570.2", "580.3", "590.4"):  # written later: "newest" by time and version
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}{fake}.tar", Body=b"poison")
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}{GPU.driver}.tar.bak", Body=b"junk")
    s3.put_object(Bucket=BUCKET, Key="kernel-cache/v2/5-0-1/nvidia-t4/550.1.tar", Body=b"other gpu")

    got = offers.offer(aws.settings, BUCKET, "5.0.1", "NVIDIA A10G", 3600, driver=GPU.driver)
    assert got is not None and got.prefix == prefix
    assert [(a.driver, a.size) for a in got.archives] == [(GPU.driver, 40)]
    with urllib.request.urlopen(got.archives[0].url) as response:  # the presigned GET of that key
        assert response.read() == b"real" * 10
    policy = json.loads(base64.b64decode(got.upload_fields["policy"]))
    assert ["starts-with", "$key", prefix] in policy["conditions"]
    assert ["content-length-range", 0, contract.MAX_KERNEL_CACHE_BYTES] in policy["conditions"]
    assert contract.parse_kernel_cache_offer(asdict(got)) == got

    for driver in ("", "600.1", "../../x"):  # nothing remembered, no such archive, not a version
        none = offers.offer(aws.settings, BUCKET, "5.0.1", "NVIDIA A10G", 3600, driver=driver)
        assert none is not None and none.archives == [] and none.upload_url, driver
    assert offers.offer(aws.settings, BUCKET, "5.0.1", None, 3600, driver=GPU.driver) is None  # no GPU


def test_the_driver_is_remembered_per_region_bucket_and_folder(tmp_path):
    drivers = KernelDrivers(tmp_path / "state" / "kernel-drivers.sqlite")
    prefix = contract.kernel_cache_prefix("5.0.1", GPU.name)
    assert drivers.driver("eu-west-1", BUCKET, prefix) == ""
    drivers.remember("eu-west-1", BUCKET, prefix, "535.1")
    drivers.remember("eu-west-1", BUCKET, prefix, GPU.driver)  # the newest report wins
    drivers.remember("eu-west-1", BUCKET, prefix, "9; DROP TABLE drivers")  # not a version: ignored
    assert drivers.driver("eu-west-1", BUCKET, prefix) == GPU.driver
    assert drivers.driver("us-east-1", BUCKET, prefix) == ""
    assert drivers.driver("eu-west-1", "other-bucket", prefix) == ""
    assert drivers.driver("eu-west-1", BUCKET, contract.kernel_cache_prefix("4.2.3", GPU.name)) == ""
    (tmp_path / "blocked").mkdir()
    assert KernelDrivers(tmp_path / "blocked").driver("eu-west-1", BUCKET, prefix) == ""  # costs a compile


def test_status_reports_the_driver_as_a_driver_version():
    status = {"state": "rendering", "gpu_driver": GPU.driver}
    assert contract.parse_status(status, [1]).gpu_driver == GPU.driver
    assert contract.parse_status({"state": "rendering"}, [1]).gpu_driver == ""
    for bad in ("../../x", "550.1.tar", 550, "1" * 300):
        with pytest.raises(contract.ContractError, match="gpu_driver"):
            contract.parse_status({**status, "gpu_driver": bad}, [1])


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
    offer = offers.offer(aws.settings, BUCKET, "5.0.1", GPU.name, 3600, driver=GPU.driver)
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
    offer = offers.offer(aws.settings, BUCKET, "5.0.1", GPU.name, 3600, driver=GPU.driver)
    said.clear()
    again = kc.KernelCache(asdict(offer), str(tmp_path / "m2"), said.append)
    again.prepare()
    assert any("kernel cache restored" in line for line in said), said
    assert {rel: (tmp_path / "m2" / "kernel-cache" / rel).read_bytes() for rel in good_files} == good_files
    again.note_build("5.0.1", "abc")
    again.save()  # nothing changed since the restore: no upload
    assert any("not uploaded again" in line for line in said), said

    # Restored and not grown is never sent back, whatever build its manifest names: only
    # growth from this render counts (a poisoned archive does not keep itself alive).
    before = s3.head_object(Bucket=BUCKET, Key=f"{prefix}{GPU.driver}.tar")
    said.clear()
    third = kc.KernelCache(asdict(offer), str(tmp_path / "m3"), said.append)
    third.prepare()
    third.note_build("5.0.1", "another-build")
    third.save()
    assert any("not uploaded again" in line for line in said) and not any("kept as" in x for x in said), said
    after = s3.head_object(Bucket=BUCKET, Key=f"{prefix}{GPU.driver}.tar")
    assert (after["ETag"], after["LastModified"]) == (before["ETag"], before["LastModified"])

    # One that compiled new kernels on top of the restored ones keeps the whole cache.
    fourth = kc.KernelCache(asdict(offer), str(tmp_path / "m4"), said.append)
    env = fourth.prepare()
    Path(env["CUDA_CACHE_PATH"], "new-entry").write_bytes(b"n" * 100)
    fourth.note_build("5.0.1", "abc")
    fourth.save()
    assert (
        f"kernel cache kept as {prefix}{GPU.driver}.tar" in said[-1]
        and "it grew from this render" in said[-1]
    )
    kept = s3.get_object(Bucket=BUCKET, Key=f"{prefix}{GPU.driver}.tar")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(kept)) as tar:
        assert sorted(tar.getnames()) == sorted(["manifest.json", "cuda/new-entry", *good_files])


def test_no_gpu_means_no_cache_and_one_line(tmp_path, monkeypatch):
    stand_in_gpu(tmp_path, monkeypatch, None)
    said: list[str] = []
    offer = {
        "blender_version": "5.0.1",
        "gpu_model": "NVIDIA T4",
        "prefix": "kernel-cache/v2/5-0-1/nvidia-t4/",
    }
    cache = kc.KernelCache(offer, str(tmp_path / "work"), said.append)
    assert cache.prepare() == {}
    cache.save()
    assert len(said) == 1 and "no NVIDIA GPU" in said[0]
    assert not (tmp_path / "work" / "kernel-cache").exists()


def gpu_request(**changes):  # type: ignore[no-untyped-def]
    return SimpleNamespace(
        **{"device": "GPU", "blender_version": "5.0.1", "auto_run": False, "addons": [], **changes}
    )


def test_the_job_spec_offers_the_driver_earlier_machines_reported(aws, tmp_path):
    """The add-on's side: the catalog's GPU for the instance type names the folder; the first
    job offers no archive but a way to keep one; at its end the driver its machines reported
    is remembered, and the next job offers exactly that archive. The offer travels in the spec
    and reads back through the contract; a CPU job or a CPU instance gets none, and no error."""
    s3 = client(aws.settings, "s3")
    s3.create_bucket(Bucket=BUCKET)
    prefix = contract.kernel_cache_prefix("5.0.1", "NVIDIA A10G")
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}{GPU.driver}.tar", Body=b"t" * 10)
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}999.9.tar", Body=b"fake")
    steps = CloudSteps(tmp_path / "state")

    def job(instance_type: str, bucket: str = BUCKET) -> JobRecord:
        return job_record(tmp_path / "out", job_id="j1", instance_type=instance_type, bucket=bucket)

    first = steps.kernel_cache(aws.settings, job("g5.xlarge"), gpu_request(), 3600)  # type: ignore[arg-type]
    assert first is not None and first.gpu_model == "NVIDIA A10G" and first.prefix == prefix
    assert first.archives == [] and first.upload_url  # nothing remembered: compile and keep

    ended = job("g5.xlarge")
    ended.kernel_cache_prefix, ended.gpu_driver = prefix, GPU.driver  # as the submit and status.json set them
    steps.after_job(aws.settings, ended)
    got = steps.kernel_cache(aws.settings, job("g5.xlarge"), gpu_request(), 3600)  # type: ignore[arg-type]
    assert got is not None and [a.driver for a in got.archives] == [GPU.driver]
    spec = WorkerSpec("j1", "5.0.1", "shot.blend", [1], [], "https://u", {}, "jobs/j1/out/", kernel_cache=got)
    assert WorkerSpec.from_dict(json.loads(spec.to_json())).kernel_cache == got

    # A job that could not keep a cache teaches nothing, whatever its machine reported.
    python_job = job("g5.xlarge")
    python_job.gpu_driver = "999.9"
    steps.after_job(aws.settings, python_job)
    assert steps.kernel_drivers.driver(aws.settings.region, BUCKET, prefix) == GPU.driver

    cpu = gpu_request(device="CPU")
    assert steps.kernel_cache(aws.settings, job("g5.xlarge"), cpu, 3600) is None  # type: ignore[arg-type]
    assert steps.kernel_cache(aws.settings, job("c7i.2xlarge"), gpu_request(), 3600) is None  # type: ignore[arg-type]
    missing = job("g5.xlarge", bucket="cloud-render-no-such-bucket")
    steps.kernel_drivers.remember(missing.region, missing.bucket, prefix, GPU.driver)
    assert steps.kernel_cache(aws.settings, missing, gpu_request(), 3600) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"auto_run": True}, "the scene runs Python on the machine (Auto Run is on)"),
        ({"addons": [{"module": "rigify"}]}, "add-ons travel with the job and run Python on the machine"),
    ],
)
def test_a_job_whose_scene_can_run_python_never_keeps_its_cache(aws, tmp_path, monkeypatch, changes, why):
    """Its offer may restore but carries no upload POST, its machine says why in the log and
    writes nothing to the bucket, and the add-on learns no driver from it."""
    s3 = client(aws.settings, "s3")
    s3.create_bucket(Bucket=BUCKET)
    prefix = contract.kernel_cache_prefix("5.0.1", GPU.name)
    source = tmp_path / "src"
    (source / "optix").mkdir(parents=True)
    (source / "optix" / "entry.bin").write_bytes(b"o" * 300)
    kc.pack(str(source), ["optix/entry.bin"], MANIFEST, str(tmp_path / "kept.tar"))
    put_archive(s3, f"{prefix}{GPU.driver}.tar", tmp_path / "kept.tar")
    before = s3.head_object(Bucket=BUCKET, Key=f"{prefix}{GPU.driver}.tar")
    steps = CloudSteps(tmp_path / "state")
    record = job_record(tmp_path / "out", job_id="j1", instance_type="g5.xlarge", bucket=BUCKET)
    steps.kernel_drivers.remember(record.region, BUCKET, prefix, GPU.driver)

    got = steps.kernel_cache(aws.settings, record, gpu_request(**changes), 3600)  # type: ignore[arg-type]
    assert got is not None and (got.upload_url, got.upload_fields) == ("", {})
    assert got.not_kept_because == why and [a.driver for a in got.archives] == [GPU.driver]

    stand_in_gpu(tmp_path, monkeypatch, GPU)
    said: list[str] = []
    machine = kc.KernelCache(asdict(got), str(tmp_path / "machine"), said.append)
    env = machine.prepare()
    assert any("kernel cache restored" in line for line in said), said  # restoring stays allowed
    Path(env["OPTIX_CACHE_PATH"], "planted.bin").write_bytes(b"p" * 1000)  # what scene Python could do
    machine.note_build("5.0.1", "abc")
    machine.save()
    assert said[-1] == f"kernel cache: not kept for other jobs: {why}", said
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="kernel-cache/")
    assert [o["Key"] for o in listing["Contents"]] == [f"{prefix}{GPU.driver}.tar"]
    after = s3.head_object(Bucket=BUCKET, Key=f"{prefix}{GPU.driver}.tar")
    assert after["ETag"] == before["ETag"]


def test_only_machine_0_of_a_batch_job_keeps_the_cache(tmp_path, monkeypatch):
    """N machines of one array job compile the same kernels: one upload, from machine 0."""
    stand_in_gpu(tmp_path, monkeypatch, GPU)
    monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", "2")
    said: list[str] = []
    offer = {
        "blender_version": "5.0.1",
        "gpu_model": GPU.name,
        "prefix": "kernel-cache/v2/5-0-1/nvidia-a10g/",
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
