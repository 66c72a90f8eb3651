"""GPU kernel caches kept in the bucket: the first machine uploads, the next restores before Blender.

Real renders through the instance simulator with a stand-in GPU: an `nvidia-smi` on the
machine's PATH that names a model and driver, and the stand-in driver (dev/standin_driver.py)
that fills OPTIX_CACHE_PATH / CUDA_CACHE_PATH as Blender starts, where the real driver does so
while Cycles loads its kernels. The offer is the add-on's own (cloud/aws/kernel_cache.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.aws import kernel_cache as offers
from cloud.aws.kernel_drivers import KernelDrivers
from cloud.aws.session import client
from cloud.job.cloud_steps import CloudSteps
from cloud.machine import contract
from cloud.machine import kernel_cache as kc
from dev.batch_job import make_scene, start_job
from dev.batch_simulator import BatchSimulator
from dev.emulator import emulated_account
from dev.simulator import InstanceSimulator, StandInGpu
from tests.e2e.test_batch_job import SPOT_STANDARD
from tests.e2e.test_worker import BUCKET, FRAMES, run_job, scene, stage  # noqa: F401 (scene is a fixture)

pytestmark = pytest.mark.slow

GPU = StandInGpu("NVIDIA A10G", "550.54.15")


def offer_for(aws, version: str, driver: str = "") -> contract.KernelCacheOffer | None:
    s3 = client(aws.settings, "s3")
    if BUCKET not in [b["Name"] for b in client(aws.admin, "s3").list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    return offers.offer(aws.settings, BUCKET, version, GPU.name, 3600, driver=driver)


def cache_files(machine_root: Path) -> dict[str, bytes]:
    base = machine_root / "run" / "kernel-cache"
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def test_first_machine_keeps_the_cache_and_the_next_restores_it(aws, scene, tarball, tmp_path):  # noqa: F811
    version = tarball[0].name.split("-")[1]
    prefix = contract.kernel_cache_prefix(version, GPU.name)
    key = prefix + f"{GPU.driver}.tar"
    s3 = client(aws.settings, "s3")
    drivers = KernelDrivers(tmp_path / "state" / "kernel-drivers.sqlite")
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim", gpu=GPU) as sim:
        remembered = drivers.driver(aws.settings.region, BUCKET, prefix)
        first = stage(aws, scene, tarball, "kcache-1", kernel_cache=offer_for(aws, version, remembered))
        one, _ = run_job(sim, first)
        kept = s3.head_object(Bucket=BUCKET, Key=key)
        # The add-on learns the driver from the machine's status.json, through the contract.
        status = contract.parse_status(first.get_json("status.json"), list(FRAMES))
        drivers.remember(aws.settings.region, BUCKET, prefix, status.gpu_driver)
        remembered = drivers.driver(aws.settings.region, BUCKET, prefix)
        second = stage(aws, scene, tarball, "kcache-2", kernel_cache=offer_for(aws, version, remembered))
        two, _ = run_job(sim, second)
        machines = sim.machines[one].dir, sim.machines[two].dir
    assert remembered == GPU.driver
    for job in (first, second):
        assert job.get_json("done.json") is not None, job.log_text()[-3000:]

    # The first job offered nothing (no driver remembered): its machine compiled everything
    # and kept it under the build/GPU/driver key.
    log = first.log_text()
    assert "kernel cache: none kept for NVIDIA A10G with driver 550.54.15 (offered: none)" in log
    assert f"kernel cache kept as {key}" in log and "none was restored" in log
    assert (machines[0] / "standin-driver.log").read_text().split()[:2] == ["cached=0", "compiled=3"]
    filled = cache_files(machines[0] / "root")
    assert len(filled) == 3 and {name.split("/")[0] for name in filled} == {"optix", "cuda"}

    # The second restored it before Blender started: the stand-in driver found every entry,
    # the bytes are the first machine's, and nothing was uploaded again.
    log = second.log_text()
    restored, started = log.find("kernel cache restored for NVIDIA A10G"), log.find("starting Blender")
    assert -1 < restored < started, log[-3000:]
    assert (machines[1] / "standin-driver.log").read_text().split()[:2] == ["cached=3", "compiled=0"]
    assert cache_files(machines[1] / "root") == filled
    assert "not uploaded again" in log and "kernel cache kept as" not in log
    after = s3.head_object(Bucket=BUCKET, Key=key)
    assert (after["ETag"], after["LastModified"]) == (kept["ETag"], kept["LastModified"])


def test_machine_without_nvidia_smi_renders_without_a_cache(aws, scene, tarball, tmp_path):  # noqa: F811
    version = tarball[0].name.split("-")[1]
    job = stage(aws, scene, tarball, "kcache-nogpu", kernel_cache=offer_for(aws, version))
    with InstanceSimulator(aws.url, work_root=tmp_path / "sim") as sim:  # no stand-in GPU
        instance, _ = run_job(sim, job)
        machine = sim.machines[instance].dir
    ended = (job.get_json("error.json"), job.get_json("interrupted.json"), job.log_text()[-3000:])
    assert job.get_json("done.json") is not None and job.get("error.json") is None, ended
    log = job.log_text()
    assert log.count("kernel cache") == 1 and "kernel cache: no NVIDIA GPU found" in log
    assert not (machine / "root" / "run" / "kernel-cache").exists()
    assert not (machine / "standin-driver.log").exists()
    listing = client(aws.settings, "s3").list_objects_v2(Bucket=BUCKET, Prefix="kernel-cache/")
    assert listing.get("KeyCount", 0) == 0


class GpuCacheSteps(CloudSteps):
    """The harness plays a GPU instance type: the emulated machines render on the CPU (a
    c5.2xlarge, device CPU), for which the catalog names no GPU and the add-on offers no
    cache, so this names the stand-in GPU the machines' nvidia-smi names."""

    def gpu_model(self, record, request):  # type: ignore[no-untyped-def]
        return GPU.name


def test_batch_children_restore_the_kept_cache_before_blender(tmp_path):
    """Two array children of a later job: each restores the kept archive before its Blender
    starts (the stand-in driver finds every entry), renders, and neither uploads it again."""
    import bpy

    from dev import standin_driver

    version, build_hash = bpy.app.version_string.split()[0], bpy.app.build_hash.decode()
    shot = make_scene(tmp_path / "scene" / "shot.blend", frames=2, size=24, samples=1)
    with BatchSimulator(tmp_path / "sim", gpu=GPU) as sim, emulated_account(moto_url=sim.url) as account:
        account.quotas.set_quota(SPOT_STANDARD, 64.0)  # room for the two machines
        # What an earlier job's machine kept: the stand-in driver's own entries, packed as the
        # machine packs them, under the build/GPU/driver key.
        work = tmp_path / "work"
        bucket = CloudSteps(work / "state").ensure_bucket(sim.settings, 14)
        source = tmp_path / "kept"
        for kernel in standin_driver.KERNELS:
            kind, _, name = kernel.partition("/")
            file_name, body = standin_driver.entry(name, GPU.name, GPU.driver)
            (source / kind).mkdir(parents=True, exist_ok=True)
            (source / kind / file_name).write_bytes(body)
        manifest = {
            "gpu": GPU.name,
            "driver": GPU.driver,
            "blender_version": version,
            "build_hash": build_hash,
        }
        kc.pack(str(source), sorted(kc.snapshot(str(source))), manifest, str(tmp_path / "kept.tar"))
        key = contract.kernel_cache_prefix(version, GPU.name) + f"{GPU.driver}.tar"
        s3 = client(sim.settings, "s3")
        s3.put_object(Bucket=bucket, Key=key, Body=(tmp_path / "kept.tar").read_bytes())
        kept = s3.head_object(Bucket=bucket, Key=key)
        # What the add-on remembered from that job's machines: the driver they ran.
        steps = GpuCacheSteps(work / "state")
        steps.kernel_drivers.remember(
            sim.settings.region, bucket, contract.kernel_cache_prefix(version, GPU.name), GPU.driver
        )

        job = start_job(sim, shot, [1, 2], 2, work, steps_class=GpuCacheSteps, version=version)
        job.runner.join(240)
        assert not job.runner.is_alive() and job.record.stage == "done", (
            job.record.message,
            job.record.action,
        )
        children = sim.children_of(job.record.launch_id)
        after = s3.head_object(Bucket=bucket, Key=key)
    # The job could keep a cache, and its machines' status.json named their driver.
    assert (job.record.kernel_cache_prefix, job.record.gpu_driver) == (
        contract.kernel_cache_prefix(version, GPU.name),
        GPU.driver,
    )
    assert (after["ETag"], after["LastModified"]) == (kept["ETag"], kept["LastModified"])
    assert len(children) == 2
    for child in children:
        log = (child.folder / "root" / "run" / "render.log").read_text()
        restored, started = log.find("kernel cache restored for NVIDIA A10G"), log.find("starting Blender")
        assert -1 < restored < started, log[-3000:]
        assert (child.folder / "standin-driver.log").read_text().split()[:2] == ["cached=3", "compiled=0"]
        assert "kernel cache kept as" not in log
