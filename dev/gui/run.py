"""`make test-gui` and `make screenshots`: the add-on in a real Blender window.

On this computer: build the extension, build (once) the trixie chroot with Debian's Blender
4.3.2 (`build_chroot.sh`), install the zip in it as "Install from Disk" does, start the
emulated AWS account and the instance simulator, then run the real GUI under Xvfb inside the
chroot with `drive.py`. The chroot shares this computer's network, so the GUI Blender reaches
the emulator on 127.0.0.1.

    run.py test    the click-through: Render in Cloud, confirmed, followed to Done; checks the
                   Image Editor shows the sequence, the panel says Done with the frame count,
                   and Blender's console holds no Python traceback
    run.py shots   the same session with every state shot, PNGs into docs/screenshots/
    run.py shots quote,panel
                   only those parts of the session (drive.py's STAGES; the keys, Set Up and the
                   scene always run), their PNGs replaced and the others kept: for one state
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # dev tooling runs from a checkout

CACHE = Path(os.environ.get("CLOUD_RENDER_GUI_CACHE", Path.home() / ".cache" / "cloud-render-gui"))
CHROOT = CACHE / "chroot"
INSIDE = "/opt/cloud-render-gui"  # the work folder, as the chroot sees it
WORK = CHROOT / INSIDE.lstrip("/")
SHOT_DIR = ROOT / "docs" / "screenshots"
GUI_TIMEOUT_S = 900
BLENDER_VERSION = "4.3.2"  # Debian trixie's Blender: the version the GUI asks the machine for
# On-demand and spot G/VT and P instance vCPU quotas (the CPU machines keep theirs).
GPU_QUOTA_CODES = (
    "L-DB2E81BA",
    "L-417A185B",
    "L-3819A6DF",
    "L-7212CCBC",
)
UPLINK_BYTES_PER_S = 4e6  # `make screenshots` only: the GUI's uploads pass at 4 MB/s (dev/relay.py SlowLink)
STANDARD_QUOTA_CODE = "L-1216C47A"  # on-demand standard (A, C, D, H, I, M, R, T, Z) vCPUs

os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIAEMULATEDTEST0001")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "emulatedSecretKeyForTestsOnly0123456789ab")
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull


def say(text: str) -> None:
    print(f"[gui] {text}", flush=True)


def loud(text: str) -> None:
    bar = "!" * 78
    print(f"\n{bar}\n{text}\n{bar}\n", file=sys.stderr, flush=True)


def in_chroot(*args: str, env: dict[str, str] | None = None, timeout: float | None = None) -> int:
    base = {"HOME": "/root", "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    command = ["chroot", str(CHROOT), "env", "-i", *(f"{k}={v}" for k, v in {**base, **(env or {})}.items())]
    return subprocess.run([*command, *args], timeout=timeout, check=False).returncode


def prepare_chroot() -> bool:
    code = subprocess.run([str(HERE / "build_chroot.sh")], check=False).returncode
    if code != 0:
        return False
    return subprocess.run([str(HERE / "chroot_mounts.sh"), "up"], check=False).returncode == 0


def install_extension() -> None:
    from dev.build import build, run_cli, zip_for_this_platform

    source = os.environ.get("CLOUD_RENDER_GUI_SOURCE")  # another tree to build, e.g. a clean export
    if source:
        out = CACHE / "dist"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        run_cli("build", "--source-dir", source, "--output-dir", str(out), "--split-platforms")
        zip_path = zip_for_this_platform(sorted(out.glob("cloud_render-*.zip")))
    else:
        zip_path = zip_for_this_platform(build(CACHE / "dist"))
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "tarball").mkdir(parents=True)
    shutil.copy2(zip_path, WORK / "cloud_render.zip")
    shutil.copy2(HERE / "drive.py", WORK / "drive.py")
    shutil.copy2(HERE / "in_chroot.sh", WORK / "in_chroot.sh")
    shutil.rmtree(CHROOT / "root" / ".config" / "blender", ignore_errors=True)  # a fresh user
    code = in_chroot(
        "blender", "--factory-startup", "--online-mode", "--command", "extension", "install-file",
        "-r", "user_default", "-e", f"{INSIDE}/cloud_render.zip",
    )  # fmt: skip
    if code != 0:
        raise SystemExit(f"installing {zip_path.name} into the chroot's Blender failed ({code})")
    say(f"installed {zip_path.name} into Blender {BLENDER_VERSION} (chroot)")


def machine_blender_tarball(dest: Path) -> tuple[Path, str]:
    """The simulated machine's "Blender 4.3.2 release": its `blender` runs the chroot's real
    Blender 4.3.2, so the machine's environment matches the artist's (the fingerprint check
    stops a job whose Blender differs; the bpy module the simulator uses elsewhere is 5.0)."""
    dest.mkdir(parents=True, exist_ok=True)
    top = f"blender-{BLENDER_VERSION}-linux-x64"
    path = dest / f"{top}.tar.xz"
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"  # by its path: a Batch machine's PATH has no sbin
    script = f'#!/bin/sh\nexec "{chroot}" "{CHROOT}" /usr/bin/blender "$@"\n'.encode()
    with tarfile.open(path, "w:xz") as archive:
        info = tarfile.TarInfo(f"{top}/blender")
        info.size, info.mode, info.mtime = len(script), 0o755, int(time.time())
        archive.addfile(info, io.BytesIO(script))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def shared_folder() -> Iterator[Path]:
    """A folder at the same path on this computer and in the chroot (a bind mount): the
    simulated machines work in it, and the chroot's Blender reads and writes their files."""
    folder = Path(tempfile.mkdtemp(prefix="cloud-render-gui-sim-"))
    inside = CHROOT / folder.relative_to("/")
    inside.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--bind", str(folder), str(inside)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(inside)], check=False)
        shutil.rmtree(folder, ignore_errors=True)


def run_gui(mode: str, only: str = "") -> dict:
    from dev.emulator import emulated_account
    from dev.simulator import InstanceSimulator

    _path, digest = machine_blender_tarball(WORK / "tarball")
    (WORK / "tarball" / "sha256.txt").write_text(digest)
    (WORK / "shots").mkdir()
    with contextlib.ExitStack() as stack:
        machines = stack.enter_context(shared_folder())
        moto_url = None
        if mode == "shots" and (not only or {"batch", "still"} & set(only.split(","))):
            # Many machines (frames, or a still's parts): moto's Batch runs each array child as a
            # machine in the shared folder (dev/batch_simulator.py), so the children's Blender is
            # the chroot's too.
            from dev.batch_simulator import BatchSimulator

            moto_url = stack.enter_context(BatchSimulator(machines / "batch")).url
        account = stack.enter_context(emulated_account(moto_url, log_path=WORK / "moto.log"))
        stack.enter_context(InstanceSimulator(account.url, work_root=machines))
        endpoints = {k: v for k, v in os.environ.items() if k.startswith("AWS_ENDPOINT_URL")}
        gui_url = account.url
        if mode == "shots":  # uploads at a home uplink's pace, so Uploading can be seen
            from dev.relay import SlowLink

            gui_url = stack.enter_context(SlowLink(account.url, UPLINK_BYTES_PER_S)).url
            endpoints = {k: gui_url if v == account.url else v for k, v in endpoints.items()}
        # The artist's IAM user, as the README has it: both policies for Set Up, then Render alone.
        key_id, secret = account.create_artist(("render", "setup"))
        (WORK / "emulator.json").write_text(json.dumps({"s3": gui_url, "key_id": key_id, "secret": secret}))
        stack.enter_context(detach_after_set_up(account))
        if moto_url:
            account.quotas.set_quota(STANDARD_QUOTA_CODE, 64.0, "us-east-1")  # 3 machines of 8 vCPUs
        if mode == "shots":
            forget_a_machine(account.url)
            for quota in GPU_QUOTA_CODES:  # a new account: no GPU machines until AWS says yes
                account.quotas.set_quota(quota, 0, "us-east-1")
        say(f"emulated account at {account.url}, simulator on; starting the GUI ({mode})")
        started = time.monotonic()
        env = {"GUI_WORK": INSIDE, "GUI_MODE": mode, "GUI_ONLY": only, **endpoints}
        env.update({"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"})
        code = in_chroot("bash", f"{INSIDE}/in_chroot.sh", str(GUI_TIMEOUT_S), env=env)
        say(f"GUI session ended ({code}) after {time.monotonic() - started:.0f} s")
    result_path = WORK / "result.json"
    return json.loads(result_path.read_text()) if result_path.exists() else {}


@contextlib.contextmanager
def detach_after_set_up(account: Any) -> Iterator[None]:
    """Plays the artist in the AWS console: once the GUI says Set Up is done (drive.py writes
    `set-up-done`), the Set Up policy is detached; the rest of the session renders with the daily
    Render policy alone."""
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.2):
            if (WORK / "set-up-done").exists():
                account.detach("setup")
                (WORK / "set-up-policy-detached").write_text("detached")
                say("Set Up done in the GUI: the Set Up policy is detached, Render alone from here")
                return

    watcher = threading.Thread(target=watch, name="detach-set-up", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join(5)


def forget_a_machine(url: str) -> None:
    """Harness: a machine of ours left running with no job tag (a crash mid-launch leaves one),
    for the Jobs list's "Check for Forgotten Machines". The simulator boots only job machines."""
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=url, region_name="us-east-1")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    tags = [{"Key": "cloud-render:managed", "Value": "true"}]
    ec2.run_instances(
        ImageId=image, InstanceType="g4dn.xlarge", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )  # fmt: skip


def read_qr(shot: Path) -> list[str]:
    """What a QR reader (zxing-cpp, not the library that drew the code) finds in a screenshot:
    the chroot's ImageMagick turns the PNG into a plain grey map first."""
    import numpy as np
    import zxingcpp

    grey = WORK / "small" / (shot.stem + ".pgm")
    grey.parent.mkdir(exist_ok=True)
    code = in_chroot("convert", f"{INSIDE}/shots/{shot.name}", "-colorspace", "Gray", "-depth", "8",
                     f"pgm:{INSIDE}/small/{grey.name}")  # fmt: skip
    if code != 0 or not grey.exists():
        return []
    data = grey.read_bytes()
    magic, width, height, top, rest = data.split(maxsplit=4)
    assert magic == b"P5" and top == b"255", "an 8-bit binary grey map"
    pixels = np.frombuffer(rest[: int(width) * int(height)], dtype=np.uint8).reshape(int(height), int(width))
    return [found.text for found in zxingcpp.read_barcodes(pixels)]


def qr_problems(result: dict) -> list[str]:
    """The QR code the panel showed reads back as the job's page link."""
    url = result.get("page_url", "")
    if not url:
        return ["the finished job had no page link to show as a QR code"]
    shot = WORK / "shots" / "job_page_qr.png"
    if not shot.exists():
        return ["no screenshot of the QR code was taken"]
    read = read_qr(shot)
    if read != [url]:
        return [f"the QR code in the panel reads {read!r}, not the job's page link"]
    return []


def problems(result: dict, console: str, partial: bool = False) -> list[str]:
    found = []
    if "Traceback (most recent call last)" in console:
        found.append("Blender's console holds a Python traceback")
    if partial:  # a partial shots run may skip the job the click-through checks
        return found + ([f"stages raised: {result['errors']}"] if result.get("errors") else [])
    if not result:
        found.append("the GUI session wrote no result")
        return found
    if result.get("errors"):
        found.append(f"stages raised: {result['errors']}")
    if result.get("state") != "done":
        found.append(f"the job ended {result.get('state')!r}: {result.get('message')!r}")
    total = result.get("frames_total", 0)
    if not total or result.get("frames_done") != total:
        found.append(f"frames {result.get('frames_done')}/{total}")
    if f"{total} frames" not in result.get("message", ""):
        found.append(f"the panel does not say the frame count: {result.get('message')!r}")
    if not any(
        name == result.get("image_name") and source == "SEQUENCE"
        for name, source in result.get("image_editors", [])
    ):
        found.append(f"no Image Editor shows the job's sequence: {result.get('image_editors')}")
    if result.get("image_frames") != total:
        found.append(f"the sequence holds {result.get('image_frames')} frames, not {total}")
    return found + qr_problems(result)


def publish(shots: Path, partial: bool) -> None:
    """Small PNGs into docs/screenshots/: full screens halved, 256 colours, no metadata. A
    partial run replaces only the PNGs it took."""
    SHOT_DIR.mkdir(parents=True, exist_ok=True)
    for old in [] if partial else SHOT_DIR.glob("*.png"):
        old.unlink()
    small = WORK / "small"
    small.mkdir(exist_ok=True)
    for path in sorted(shots.glob("*.png")):
        code = in_chroot(  # the chroot's ImageMagick: this computer may have none
            "convert", f"{INSIDE}/shots/{path.name}", "-resize", "960x960>", "-strip", "-colors", "256",
            f"PNG8:{INSIDE}/small/{path.name}",
        )  # fmt: skip
        if code != 0:
            raise SystemExit(f"could not shrink {path.name} ({code})")
        shutil.copy2(small / path.name, SHOT_DIR / path.name)
    say(f"{len(list(SHOT_DIR.glob('*.png')))} screenshots in {SHOT_DIR.relative_to(ROOT)}")


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "test"
    only = sys.argv[2] if len(sys.argv) > 2 and mode == "shots" else ""
    if not prepare_chroot():
        loud(
            "THE REAL-BLENDER GUI CHECK DID NOT RUN: the trixie chroot with Blender 4.3.2 could not be "
            f"made or mounted at {CHROOT} (it needs root for debootstrap, chroot and mounts)."
        )
        return 1 if os.environ.get("CI") == "true" else 0
    try:
        install_extension()
        result = run_gui("shots" if mode == "shots" else "test", only)
        if mode == "shots":
            publish(WORK / "shots", partial=bool(only))
    finally:
        subprocess.run([str(HERE / "chroot_mounts.sh"), "down"], check=False)
    console_path = WORK / "shots" / "blender_console.log"
    console = console_path.read_text(errors="replace") if console_path.exists() else ""
    found = problems(result, console, partial=bool(only))
    say(f"result: {json.dumps(result)}")
    if found:
        loud("GUI click-through FAILED:\n- " + "\n- ".join(found) + f"\nBlender's console: {console_path}")
        return 1
    if only:
        say(f"partial shots run ({only}) passed: no stage raised, no traceback")
    else:
        say("GUI click-through passed: Done, frames in the Image Editor, no traceback")
    return 0


if __name__ == "__main__":
    sys.exit(main())
