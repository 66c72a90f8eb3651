"""Benchmark: cloud.aws.uploads.upload_files against the AWS CLI, to the emulated S3 (moto server).

1. Throughput: a job of 50 files of mixed sizes (1 GB; `--small` makes it 100 MB), uploaded
   by our uploader and by `aws s3 cp --recursive` to the same endpoint, alternating, best of
   `--rounds`. Prints MB/s for each and the ratio (ours / CLI; above 1 means we are faster),
   for our upload alone and with hashing included (we must hash to skip what exists): hashing
   overlaps the uploads (bench/pipelined_upload.py), every byte hashed, no cache.
   A resubmit with one 5 MB file changed: with the local hash cache, against hashing all again.
   AWS Deadline Cloud's job attachments (the `deadline` package, pinned in
   bench/vs_deadline/requirements.txt, run in a bench-only venv this script creates on first
   use: never a dependency of the add-on) upload the same job to the same endpoint, hashing
   included, and do the same resubmit with their own hash cache (bench/vs_deadline/).
2. Resubmits, each against `aws s3 sync` of the same tree: one file changed; the project
   folder renamed (the CLI syncs it to the new project prefix); a second scene sharing 90% of
   its textures. Bytes sent are counted by a TCP proxy in front of the emulator (request
   bodies and headers, both tools alike).

    .venv/bin/python bench/upload.py [--small] [--rounds N] [--no-deadline]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a script, not add-on code: make cloud/ and tests/ importable

import requests  # noqa: E402

from bench.pipelined_upload import hash_and_upload  # noqa: E402
from cloud.aws.bucket_setup import new_bucket_name  # noqa: E402
from cloud.aws.known_objects import KnownObjects  # noqa: E402
from cloud.aws.session import AwsSettings, client  # noqa: E402
from cloud.aws.uploads import hash_file, upload_files  # noqa: E402
from cloud.pack.hash_cache import HashCache  # noqa: E402
from dev.aws_emulator import moto_server  # noqa: E402
from dev.error_server import CountingProxy  # noqa: E402

MB = 1_000_000
DEADLINE_VENV = ROOT / ".venv-bench-deadline"
DEADLINE_REQUIREMENTS = ROOT / "bench" / "vs_deadline" / "requirements.txt"
DEADLINE_PREFIX = "DeadlineCloud"  # the queue's job-attachment root prefix
FILES = 50
KEY_ID, SECRET = "AKIAEXAMPLETESTKEY00", "test-secret-not-real"


def make_job(root: Path, total: int, seed: int = 7) -> list[Path]:
    """50 files: a few big caches, some mid-size textures, many small ones; random bytes."""
    rng = random.Random(seed)
    weights = [rng.lognormvariate(0, 1.6) for _ in range(FILES)]
    scale = total / sum(weights)
    paths = []
    for i, weight in enumerate(weights):
        size = max(1, int(weight * scale))
        kind = "caches" if size > total / 12 else "textures" if size > total / 200 else "misc"
        path = root / kind / f"{kind[:-1]}_{i:02d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_random(path, size, rng)
        paths.append(path)
    return paths


def write_random(path: Path, size: int, rng: random.Random) -> None:
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(left, 4 << 20)
            out.write(rng.randbytes(n))
            left -= n


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def hashed(root: Path) -> list[tuple[Path, str, int]]:
    return [(p, hash_file(p), p.stat().st_size) for p in sorted(root.rglob("*")) if p.is_file()]


def cli(args: list[str], endpoint: str, home: Path) -> tuple[float, int]:
    """Run the AWS CLI; returns seconds and how many files it reported uploading."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    aws = ROOT / ".venv" / "bin" / "aws"
    start = time.perf_counter()
    done = subprocess.run(
        [str(aws), *args, "--endpoint-url", endpoint, "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - start, len(re.findall(r"^upload: ", done.stdout, re.M))


def deadline_python() -> Path:
    """The bench-only venv with the pinned `deadline` package: created (or renewed when the pin
    changed) here, from the same Python as the dev venv."""
    python = DEADLINE_VENV / "bin" / "python"
    stamp = DEADLINE_VENV / ".stamp"
    wanted = DEADLINE_REQUIREMENTS.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"creating the bench-only Deadline Cloud venv in {DEADLINE_VENV.name} ...", flush=True)
    shutil.rmtree(DEADLINE_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(DEADLINE_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    done = subprocess.run([*pip, "-r", str(DEADLINE_REQUIREMENTS)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(
            f"Could not install {DEADLINE_REQUIREMENTS.name} into {DEADLINE_VENV.name} (run with "
            f"--no-deadline to leave Deadline out):\n{done.stderr[-3000:]}"
        )
    stamp.write_text(wanted)
    return python


def deadline_submit(folder: Path, bucket: str, url: str, cache: Path) -> dict:
    """One Deadline Cloud job-attachment submit of `folder` (hash through its cache, upload what
    the bucket lacks, the manifest); the times are taken inside its process, imports excluded."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": url,
        "AWS_CONFIG_FILE": str(cache / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(cache / "aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    done = subprocess.run(
        [
            str(deadline_python()),
            str(ROOT / "bench" / "vs_deadline" / "attachments.py"),
            str(folder),
            bucket,
            DEADLINE_PREFIX,
            str(cache),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"Deadline Cloud's job attachments failed against the emulator:\n{done.stderr[-4000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def fresh_bucket(settings: AwsSettings, url: str) -> str:
    requests.post(f"{url}/moto-api/reset", timeout=30).raise_for_status()  # frees moto's memory
    bucket = new_bucket_name()
    client(settings, "s3").create_bucket(Bucket=bucket)
    return bucket


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def throughput(work: Path, url: str, settings: AwsSettings, rounds: int) -> None:
    job = work / "job"
    make_job(job, args_total)
    size = tree_size(job)
    print(f"job: {FILES} files, {size / MB:.0f} MB in {job}")
    ours_up, ours_all, theirs, deadline = [], [], [], []
    paths = [p for p in sorted(job.rglob("*")) if p.is_file()]
    for _ in range(rounds):
        bucket = fresh_bucket(settings, url)
        files = hashed(job)
        up_s = timed(lambda files=files, bucket=bucket: upload_files(settings, bucket, files))
        ours_up.append(up_s)
        # Hashing included: no cache, every byte hashed, overlapping the uploads (one read from disk).
        bucket = fresh_bucket(settings, url)
        ours_all.append(timed(lambda bucket=bucket: hash_and_upload(settings, bucket, paths)))
        bucket = fresh_bucket(settings, url)
        seconds, count = cli(["s3", "cp", "--recursive", str(job), f"s3://{bucket}/job/"], url, work)
        assert count == FILES, count
        theirs.append(seconds)
        if with_deadline:  # an empty bucket and an empty hash cache: every byte hashed and sent
            bucket = fresh_bucket(settings, url)
            cache = Path(tempfile.mkdtemp(prefix="deadline-cache-", dir=work))
            run = deadline_submit(job, bucket, url, cache)
            assert run["hashed_files"] == FILES and run["uploaded_files"] == FILES, run
            deadline.append(run)
    ours, ours_hashing, cli_s = min(ours_up), min(ours_all), min(theirs)
    print(f"ours (upload):        {ours:6.2f} s  {size / MB / ours:7.1f} MB/s")
    print(f"ours (hash + upload): {ours_hashing:6.2f} s  {size / MB / ours_hashing:7.1f} MB/s")
    print(f"aws s3 cp --recursive:{cli_s:6.2f} s  {size / MB / cli_s:7.1f} MB/s")
    if deadline:
        best = min(deadline, key=lambda r: r["seconds"])
        dl_s = best["seconds"]
        print(
            f"Deadline Cloud job attachments (hash + upload): {dl_s:6.2f} s  {size / MB / dl_s:7.1f} MB/s "
            f"(hashing {best['hash_seconds']:.2f} s; peak {max(r['peak_mib'] for r in deadline):.0f} MiB)"
        )
        figures.update(deadline_ratio=cli_s / dl_s, ours_vs_deadline=dl_s / ours_hashing)
    print(f"throughput ratio ours/CLI: {cli_s / ours:.2f}x upload, {cli_s / ours_hashing:.2f}x with hashing")
    print(f"peak memory of this process so far: {peak_mib():.0f} MiB")
    figures.update(
        upload_ratio=cli_s / ours,
        hashed_ratio=cli_s / ours_hashing,
        ours_mb_s=size / MB / ours_hashing,
        cli_mb_s=size / MB / cli_s,
    )


def peak_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def resubmit_with_cache(work: Path, url: str, settings: AwsSettings, rounds: int) -> None:
    """One 5 MB file changed in the job: our resubmit with the hash cache against the same
    resubmit hashing everything again (what every submit did before the cache), same run."""
    job = work / "job"
    paths = [p for p in sorted(job.rglob("*")) if p.is_file()]
    old = time.time() - 60  # saved a minute ago: outside the cache's racy window
    for path in paths:
        os.utime(path, (old, old))
    cache = HashCache(work / "state" / "hashes.sqlite")
    # What the bucket holds, as this computer saw it (Deadline keeps the like: its S3 check cache).
    known = KnownObjects(work / "state" / "bucket-objects.sqlite")
    bucket = fresh_bucket(settings, url)
    hash_and_upload(settings, bucket, paths, cache.hash, known=known)  # fills both caches
    deadline_cache = work / "state" / "deadline-cache"
    if with_deadline:  # Deadline's first submit fills its caches (hashes, what S3 holds)
        deadline_submit(job, bucket, url, deadline_cache)
    changed = min((p for p in paths if p.stat().st_size >= 5 * MB), key=lambda p: p.stat().st_size)
    ours: list[float] = []
    theirs: list[dict] = []
    for round_ in range(rounds):  # tens of milliseconds each: best of `rounds`, new bytes each time
        write_random(changed, 5 * MB, random.Random(3 + round_))
        os.utime(changed, (old + 1 + round_, old + 1 + round_))
        cache.hits = cache.misses = 0
        ours.append(timed(lambda: hash_and_upload(settings, bucket, paths, cache.hash, known=known)))
        hits, misses = cache.hits, cache.misses
        assert (hits, misses) == (len(paths) - 1, 1), (hits, misses)
        if with_deadline:  # the same change, through Deadline's hash cache
            run = deadline_submit(job, bucket, url, deadline_cache)
            assert run["hashed_files"] == 1 and run["uploaded_files"] == 1, run
            theirs.append(run)
    cached_s = min(ours)
    if theirs:
        run = min(theirs, key=lambda r: r["seconds"])
        print(
            f"resubmit, one 5 MB file changed, Deadline Cloud with its hash cache: {run['seconds']:.2f} s "
            f"({run['hash_cache_hits']} hits, {run['hashed_files']} re-hashed, {run['uploaded_files']} uploaded; "
            f"best of {len(theirs)})"
        )
        figures.update(deadline_resubmit_s=run["seconds"], resubmit_vs_deadline=cached_s / run["seconds"])
    write_random(changed, 5 * MB, random.Random(100))
    full_s = timed(lambda: hash_and_upload(settings, bucket, paths))
    print(
        f"resubmit, one 5 MB file changed: {cached_s:.3f} s with the hash cache ({hits} hits, {misses} "
        f"re-hashed; best of {len(ours)}) | {full_s:.2f} s hashing everything again"
    )
    figures.update(resubmit_s=cached_s, resubmit_ratio=full_s / cached_s)


def resubmits(work: Path, url: str, settings: AwsSettings) -> None:
    scene1 = work / "projects" / "forest"
    make_job(scene1, args_total, seed=11)
    proxy = CountingProxy.to_url(url)
    proxy.__enter__()
    via = replace(settings, endpoint_url=proxy.url)
    try:
        bucket = fresh_bucket(settings, url)
        upload_files(via, bucket, hashed(scene1))
        cli(["s3", "sync", str(scene1), f"s3://{bucket}/forest/"], proxy.url, work)

        def measure(name: str, tree: Path, prefix: str, changed: int, key: str) -> None:
            proxy.sent = 0
            start = time.perf_counter()
            result = upload_files(via, bucket, hashed(tree))
            ours_s, ours_bytes = time.perf_counter() - start, proxy.sent
            proxy.sent = 0
            cli_s, count = cli(["s3", "sync", str(tree), f"s3://{bucket}/{prefix}/"], proxy.url, work)
            cli_bytes = proxy.sent
            figures[f"{key}_bytes_ratio"] = cli_bytes / max(ours_bytes, 1)
            print(
                f"{name:<34} changed {changed / MB:7.1f} MB | ours {ours_bytes / MB:8.2f} MB sent "
                f"({len(result.uploaded)} files, {ours_s:5.1f} s) | aws s3 sync {cli_bytes / MB:8.2f} MB "
                f"({count} files, {cli_s:5.1f} s)"
            )

        # 1. One texture repainted (same size, new content).
        texture = sorted((scene1 / "textures").iterdir())[0]
        write_random(texture, texture.stat().st_size, random.Random(99))
        measure("one file changed", scene1, "forest", texture.stat().st_size, "changed")

        # 2. The project folder renamed: same files, new path.
        renamed = scene1.with_name("forest-final")
        scene1.rename(renamed)
        measure("project folder renamed", renamed, "forest-final", 0, "renamed")

        # 3. A second scene: 90% of the bytes shared (hard links), 10% new textures.
        scene2 = work / "projects" / "lake"
        files = sorted((p for p in renamed.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
        budget, new_bytes = tree_size(renamed) * 0.10, 0
        rng = random.Random(5)
        for path in files:
            target = scene2 / path.relative_to(renamed)
            target.parent.mkdir(parents=True, exist_ok=True)
            if new_bytes + path.stat().st_size <= budget and path.parent.name == "textures":
                write_random(target, path.stat().st_size, rng)
                new_bytes += path.stat().st_size
            else:
                os.link(path, target)
        measure("second scene sharing 90% of bytes", scene2, "lake", new_bytes, "shared")
    finally:
        proxy.close()


args_total = 1000 * MB
with_deadline = True
figures: dict[str, float] = {}  # what the RESULT line says


def main() -> None:
    global args_total, with_deadline
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", action="store_true", help="100 MB instead of 1 GB")
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs per tool (best is kept)")
    parser.add_argument(
        "--no-deadline", action="store_true", help="leave out Deadline Cloud's job attachments"
    )
    args = parser.parse_args()
    with_deadline = not args.no_deadline
    args_total = (100 if args.small else 1000) * MB
    work = Path(tempfile.mkdtemp(prefix="cloud-render-bench-upload-"))
    try:
        with moto_server(work / "moto.log") as url:
            settings = AwsSettings(access_key_id=KEY_ID, secret_access_key=SECRET, endpoint_url=url)
            throughput(work, url, settings, args.rounds)
            resubmit_with_cache(work, url, settings, args.rounds)
            print()
            resubmits(work, url, settings)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("RESULT " + " ".join(f"{key}={value:.2f}" for key, value in figures.items()))


if __name__ == "__main__":
    main()
