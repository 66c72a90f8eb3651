"""A screenshot of the job's page for a phone (cloud/job/phone_page.py), as a phone opens it.

The page is written to a bucket of the emulated account (moto behind the strict layer), with a
machine's status.json halfway through the job and its latest frame, small, and opened through its presigned link by
headless Chromium at a phone's size (390 x 844): the page fetches the status from the bucket
as it would from S3. Needs `chromium` (Debian's package); nothing in the test suite does.

    .venv/bin/python dev/phone_page_shot.py [docs/screenshots/job_page_phone.png]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cloud.aws import bucket_setup  # noqa: E402
from cloud.aws.session import AwsSettings, client  # noqa: E402
from cloud.job import phone_page  # noqa: E402
from cloud.job.records import JobRecord  # noqa: E402
from cloud.machine import contract  # noqa: E402
from dev.aws_emulator import endpoint_variables, moto_server  # noqa: E402


def latest_frame(folder: Path) -> bytes:
    """A frame as a machine's Blender leaves it for the page: rendered here with the venv's bpy
    (Blender's default scene, Cycles, a few samples) and saved as a JPEG of the preview's size."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=False)
    scene: Any = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 16
    scene.cycles.device = "CPU"
    scene.render.resolution_x, scene.render.resolution_y = (
        contract.PREVIEW_SIDE,
        contract.PREVIEW_SIDE * 9 // 16,
    )
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "JPEG"
    scene.render.filepath = str(folder / "preview.jpg")
    bpy.ops.render.render(write_still=True)
    return (folder / "preview.jpg").read_bytes()


def main() -> int:
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs/screenshots/job_page_phone.png"
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("chromium is not installed (apt-get install chromium)")
        return 1
    with tempfile.TemporaryDirectory() as tmp, moto_server(Path(tmp) / "moto.log") as url:
        os.environ.update(endpoint_variables(url))
        settings = AwsSettings(
            access_key_id="AKIAEXAMPLETESTKEY00", secret_access_key="test-secret-not-real", endpoint_url=url
        )
        bucket = bucket_setup.ensure_bucket(settings, Path(tmp) / "buckets.json")
        now = time.time()
        record = JobRecord(
            job_id="20261207-1306-shot",
            blend_name="forest_walk.blend",
            scene_name="Forest walk",
            region="us-east-1",
            instance_type="g5.xlarge",
            spot=True,
            frames=list(range(1, 241)),
            output_dir=tmp,
            price_per_hour=0.4,
            max_cost=8.0,
            max_hours=6.0,
            bucket=bucket,
        )
        record = replace(record, launched_at=now - 47 * 60)
        status = {
            "state": "rendering",
            "frame": 97,
            "frames_done": list(range(1, 97)),
            "seconds_per_frame": 26.4,
            "message": "",
            "device": "NVIDIA A10G",
            "heartbeat_epoch": round(now - 4, 3),
            "seq": 611,
        }
        client(settings, "s3").put_object(
            Bucket=bucket,
            Key=contract.out_prefix(record.job_id) + "status.json",
            Body=json.dumps(status).encode(),
            ContentType="application/json",
        )
        client(settings, "s3").put_object(
            Bucket=bucket, Key=contract.preview_key(record.job_id), Body=latest_frame(Path(tmp))
        )
        link = phone_page.write_page(settings, record)
        dest.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={tmp}/chromium",
                "--window-size=390,844",
                "--virtual-time-budget=5000",
                f"--screenshot={dest}",
                link.url,
            ],
            check=True,
            timeout=120,
            capture_output=True,
        )
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
