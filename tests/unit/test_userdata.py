"""The boot script (user-data) and the supervisor's pure helpers."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from cloud.aws.presign import presign_get, presign_post
from cloud.aws.session import client
from cloud.errors import CloudError
from cloud.job.user_data import USER_DATA_LIMIT, build_user_data
from cloud.machine import WORKER_FILES
from cloud.machine.contract import out_prefix
from cloud.machine.installs import nearest_patch, python_for_bpy
from cloud.machine.supervisor import order_frames
from cloud.machine.transport import Poster, multipart
from dev.simulator import CuttableProxy, InstanceSimulator

POST = {
    "url": "https://bucket.s3.amazonaws.com/",
    "fields": {
        "key": "jobs/j1/out/${filename}",
        "policy": "eyJleHBpcmF0aW9uIjogIjIwMjYtMTEtMjVUMTY6MDA6MDBaIn0=",
        "x-amz-signature": "0123abcd",
        "x-amz-credential": "AKIAEXAMPLETESTKEY00/20261125/us-east-1/s3/aws4_request",
    },
}
LONG_URL = "https://bucket.s3.amazonaws.com/k?X-Amz-Signature=" + "a" * 64 + "&X-Amz-Credential=" + "b" * 400

BOOT_BUCKET = "cloud-render-boot-test"  # a name the artist's policies reach


def urls() -> dict[str, str]:
    return {name: f"{LONG_URL}&f={name}" for name in WORKER_FILES}


def test_user_data_shape():
    script = build_user_data(LONG_URL + "&spec", urls(), 95, POST)
    assert len(script.encode()) < USER_DATA_LIMIT
    assert script.startswith("#!/bin/bash\n")
    commands = [line for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert commands[0].startswith(
        "shutdown -h +95 "
    )  # the dead-man timer comes before anything that can fail
    assert not re.search(r"^\s*halt\b|\|\|\s*halt\b", script, re.M)  # halt keeps an instance billing
    assert (
        "dnf install -y -q libXfixes libXrender libXxf86vm libxkbcommon libSM libICE libXi mesa-libGL libglvnd-egl"
        in script
    )
    assert "libxrender1 libxi6 libxkbcommon0 libsm6 libxxf86vm1 libgl1 libegl1" in script
    for name, url in urls().items():
        assert f"worker {name} '{url}'" in script
    assert "KEY_PREFIX=jobs/j1/out/" in script and "--form-string x-amz-signature=0123abcd" in script
    assert "${filename}" not in script
    subprocess.run(["bash", "-n"], input=script.encode(), check=True)


def test_session_token_is_written_once():
    """Temporary credentials repeat a long token in every URL; the script names it once."""
    token = "IQoJb3JpZ2luX2VjE+/=" + "A" * 1200
    quoted = token.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    spec = f"{LONG_URL}&X-Amz-Security-Token={quoted}&spec"
    worker = {name: f"{url}&X-Amz-Security-Token={quoted}" for name, url in urls().items()}
    post = {"url": POST["url"], "fields": dict(POST["fields"], **{"x-amz-security-token": token})}
    script = build_user_data(spec, worker, 30, post)
    assert len(script.encode()) < USER_DATA_LIMIT and script.count(token) == 1 and script.count(quoted) == 1
    # What bash makes of the spec URL and the POST fields is exactly what was presigned.
    lines = script.splitlines()
    setup = "\n".join(line for line in lines if line.startswith(("TOKEN=", "TOKEN_Q=", "POST_FIELDS=")))
    fetch = next(line for line in lines if line.startswith("fetch ") and "job-spec.json" in line)
    word = fetch[len("fetch ") : fetch.index(' "$ROOT')]
    shown = subprocess.run(
        ["bash", "-c", f'{setup}\nprintf "%s\\n" {word} "${{POST_FIELDS[@]}}"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    fields = [x for k, v in post["fields"].items() if k != "key" for x in ("--form-string", f"{k}={v}")]
    assert shown == [spec, *fields]


def test_user_data_checks_its_inputs():
    with pytest.raises(ValueError, match=r"supervisor\.py"):
        build_user_data(LONG_URL, {k: v for k, v in urls().items() if k != "supervisor.py"}, 10, POST)
    huge = {name: "https://x/" + "a" * 5000 for name in WORKER_FILES}
    with pytest.raises(CloudError) as caught:
        build_user_data(LONG_URL, huge, 10, POST)
    assert caught.value.message == "The render machine's start script is too large for AWS."
    assert caught.value.action.startswith("Use a shorter bucket name")


def boot_bucket(aws: Any) -> tuple[Any, Any, dict[str, str]]:
    """The boot tests' bucket with the worker files in it: S3 and EC2 clients, and the links.
    The links are signed by the artist, as the product signs them; EC2 is the harness's own."""
    s3, ec2 = client(aws.settings, "s3"), client(aws.admin, "ec2")
    s3.create_bucket(Bucket=BOOT_BUCKET)
    for name in WORKER_FILES:
        s3.put_object(Bucket=BOOT_BUCKET, Key=f"worker/{name}", Body=b"# worker file\n")
    return s3, ec2, {name: presign_get(s3, BOOT_BUCKET, f"worker/{name}", 600) for name in WORKER_FILES}


def boot(aws: Any, ec2: Any, script: str, work_root: Path) -> tuple[str, Any]:
    """Launch a machine of job j1 with `script` as its user-data; its id and what the simulator
    made of it, once it has terminated."""
    with InstanceSimulator(aws.url, work_root=work_root) as sim:
        instance = ec2.run_instances(
            ImageId=ec2.describe_images()["Images"][0]["ImageId"],
            MinCount=1,
            MaxCount=1,
            UserData=script,
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": "cloud-render:job", "Value": "j1"}]}
            ],
        )["Instances"][0]["InstanceId"]
        return instance, sim.wait_terminated(instance, timeout=60)


def test_boot_failure_reports_and_powers_off(aws, tmp_path):
    """A spec that cannot be downloaded ends in error.json, the boot log in the bucket, and termination."""
    s3, ec2, worker = boot_bucket(aws)
    script = build_user_data(
        presign_get(s3, BOOT_BUCKET, "jobs/j1/missing-spec.json", 600),
        worker,
        5,
        presign_post(s3, BOOT_BUCKET, out_prefix("j1"), 600, 1 << 20),
    )
    instance, machine = boot(aws, ec2, script, tmp_path)
    assert (machine.dir / "power-off").exists() and (machine.dir / "deadman").read_text().strip() == "5"
    error = json.loads(s3.get_object(Bucket=BOOT_BUCKET, Key="jobs/j1/out/error.json")["Body"].read())
    assert error["kind"] == "download" and error["cause"] == "The job spec could not be downloaded."
    log = s3.get_object(Bucket=BOOT_BUCKET, Key="jobs/j1/out/logs/000000.log")["Body"].read().decode()
    assert "dead-man in 5 min" in log and "HTTP 404" in log
    assert "(simulated) dnf install" in log or "(simulated) apt-get" in log
    found = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
    assert found["State"]["Name"] == "terminated"


def test_boot_with_an_expired_upload_policy_powers_off_at_once(aws, tmp_path):
    """The sign-in behind the job's links expired before the machine booted: the boot script's
    first upload is refused, so it downloads nothing, keeps its error on disk and powers off."""
    s3, ec2, worker = boot_bucket(aws)
    post = presign_post(s3, BOOT_BUCKET, out_prefix("j1"), 1, 1 << 20)
    proxy = CuttableProxy()  # the simulator's S3 front, as every machine meets it
    with proxy.serving() as proxy_url:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy_url}))
        poster = Poster(post["url"], post["fields"], out_prefix("j1"), opener=opener)
        deadline = time.monotonic() + 30
        while not poster.refusal:  # until S3 refuses the one-second policy
            assert time.monotonic() < deadline, "the one-second policy never expired"
            with contextlib.suppress(urllib.error.HTTPError):
                poster.put("probe", b"")
    script = build_user_data(presign_get(s3, BOOT_BUCKET, "jobs/j1/worker-spec.json", 600), worker, 5, post)
    _, machine = boot(aws, ec2, script, tmp_path)
    assert (machine.dir / "power-off").exists()
    error = json.loads((machine.root / "error.json").read_text())
    assert error["kind"] == "credentials_expired" and "has probably expired" in error["cause"]
    log = (machine.root / "bootstrap.log").read_text()
    assert "upload of status.json refused: HTTP 403 Invalid according to Policy: Policy expired." in log
    assert "downloading the worker" not in log and "starting the supervisor" not in log
    assert not (machine.root / "job-spec.json").exists()
    stored = {o["Key"] for o in s3.list_objects_v2(Bucket=BOOT_BUCKET, Prefix="jobs/").get("Contents", [])}
    assert stored <= {"jobs/j1/out/probe"}  # the test's own probe, while the policy still lived


def test_preview_first_order():
    frames = list(range(1, 18))
    ordered = order_frames(frames, "preview_first")
    assert ordered[:3] == [1, 9, 17] and ordered[3:5] == [5, 13] and ordered[5:9] == [3, 7, 11, 15]
    assert sorted(ordered) == frames
    assert order_frames([3, 1, 2, 2], "sequential") == [1, 2, 3]


def test_nearest_patch_release():
    available = ["4.2.0", "4.2.3", "4.2.9", "4.5.1", "5.0.1", "5.0.0rc1"]
    assert nearest_patch("4.2.3", available) == "4.2.3"
    assert nearest_patch("4.2.5", available) == "4.2.3"
    assert nearest_patch("4.2.6", available) == "4.2.9"
    assert nearest_patch("5.0.0", available) == "5.0.1"
    assert nearest_patch("4.3.0", available) is None
    assert python_for_bpy("5.0.1") == "3.11" and python_for_bpy("5.1.0") == "3.13"


def test_presigned_post_body_is_accepted(aws):
    """The supervisor's hand-built multipart body is what S3 accepts for a presigned POST."""
    import urllib.request

    s3 = client(aws.settings, "s3")
    s3.create_bucket(Bucket=BOOT_BUCKET)
    post = presign_post(s3, BOOT_BUCKET, out_prefix("j1"), 600, 1 << 20)
    fields = dict(post["fields"], key=out_prefix("j1") + "frames/a b/f_0001.png")
    body, content_type = multipart(fields, "f_0001.png", b"\x89PNG data")
    urllib.request.urlopen(
        urllib.request.Request(post["url"], body, {"Content-Type": content_type}), timeout=10
    ).read()
    assert (
        s3.get_object(Bucket=BOOT_BUCKET, Key="jobs/j1/out/frames/a b/f_0001.png")["Body"].read()
        == b"\x89PNG data"
    )
