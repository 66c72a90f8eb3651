"""A stand-in for the NVIDIA driver's kernel caches, for the simulated machines (no GPU here).

On a GPU machine, Cycles' "Loading render kernels" has the driver compile OptiX pipelines into
the OptiX disk cache (`OPTIX_CACHE_PATH`) and JIT-compile PTX into the CUDA compute cache
(`CUDA_CACHE_PATH`); an entry already there is used as it is. This script does the same with
files: the simulator's Blender (`make_blender_tarball`) runs it as Blender starts when the
simulated machine has a stand-in GPU. Each "kernel" is a file named and filled from the kernel,
the GPU model and the driver version (the same inputs give the same bytes, as a cache entry
would); an existing entry is left alone. It appends what it did to `$SIM_MACHINE/standin-driver.log`:
`cached=<n> compiled=<m>` with the folders it used, so a test can tell a restored cache from a
fresh compile.

Python 3.9 syntax; standard library only.
"""

from __future__ import annotations

import hashlib
import os

KERNELS = ("optix/pipeline_shade_surface", "optix/pipeline_intersect", "cuda/kernel_sm_86_film_convert")
ENTRY_BYTES = 48 * 1024


def entry(kernel: str, gpu: str, driver: str) -> tuple[str, bytes]:
    """(file name, contents) of one cache entry, both derived from what it was compiled for."""
    seed = hashlib.sha256(f"{kernel}|{gpu}|{driver}".encode()).digest()
    body = b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(ENTRY_BYTES // 32))
    return seed.hex()[:24] + ".bin", body


def main() -> None:
    gpu, driver = os.environ.get("SIM_GPU_NAME", ""), os.environ.get("SIM_GPU_DRIVER", "")
    home = os.environ.get("HOME", ".")
    folders = {
        "optix": os.environ.get("OPTIX_CACHE_PATH") or os.path.join(home, ".cache", "NVIDIA", "OptixCache"),
        "cuda": os.environ.get("CUDA_CACHE_PATH") or os.path.join(home, ".nv", "ComputeCache"),
    }
    cached = compiled = 0
    for kernel in KERNELS:
        kind, _, name = kernel.partition("/")
        file_name, body = entry(name, gpu, driver)
        path = os.path.join(folders[kind], file_name)
        if os.path.isfile(path):
            cached += 1
            continue
        os.makedirs(folders[kind], exist_ok=True)
        with open(path, "wb") as out:
            out.write(body)
        compiled += 1
    log = os.path.join(os.environ.get("SIM_MACHINE", home), "standin-driver.log")
    with open(log, "a") as out:
        out.write(f"cached={cached} compiled={compiled} optix={folders['optix']} cuda={folders['cuda']}\n")


if __name__ == "__main__":
    main()
