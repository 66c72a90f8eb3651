"""The boot script (user-data) and the supervisor's pure helpers."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
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
from cloud.machine import WORKER_FILES, worker_archive
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


WORKER_URL = LONG_URL + "&worker"
WORKER_SHA = hashlib.sha256(b"worker").hexdigest()


def test_user_data_shape():
    script = build_user_data(LONG_URL + "&spec", WORKER_URL, WORKER_SHA, 95, POST)
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
    assert f"fetch '{WORKER_URL}' \"$ROOT/worker.tar.gz\"" in script and script.count(WORKER_SHA) == 1
    assert "KEY_PREFIX=jobs/j1/out/" in script and "--form-string x-amz-signature=0123abcd" in script
    assert "${filename}" not in script and "@@" not in script
    assert "python3 -m machine" in script
    subprocess.run(["bash", "-n"], input=script.encode(), check=True)


def test_user_data_size_does_not_depend_on_the_machine_files(tmp_path):
    """One link and one digest, however many files ship. With a session token (in both links,
    the POST's fields and, base64, its policy, as S3 signs them) the script keeps 4 KB of EC2's
    16 KB free; one link a file took 16,074 bytes with 13 files."""
    token = "IQoJb3JpZ2luX2VjE%2B" + "A" * 1100
    policy = base64.b64encode(json.dumps({"conditions": [{"x-amz-security-token": token}]}).encode())
    fields = dict(POST["fields"], **{"x-amz-security-token": token, "policy": policy.decode()})
    post = {"url": POST["url"], "fields": fields}
    sizes = []
    for count in (1, len(WORKER_FILES), 200):
        files = {}
        for index in range(count):
            files[f"m{index:03}.py"] = str(tmp_path / f"m{index:03}.py")
            Path(files[f"m{index:03}.py"]).write_text(f"X = {index}\n")
        digest = hashlib.sha256(worker_archive(files)).hexdigest()
        worker = f"{LONG_URL}&X-Amz-Security-Token={token}&{digest}"
        spec = f"{LONG_URL}&X-Amz-Security-Token={token}&spec"
        sizes.append(len(build_user_data(spec, worker, digest, 30, post).encode()))
    assert len(set(sizes)) == 1 and sizes[0] < USER_DATA_LIMIT - 4096, sizes


def test_worker_archive_is_the_same_bytes_for_the_same_files(tmp_path):
    """Content-addressed: names sorted, no owner or time of this computer, gzip without a date."""
    first = worker_archive()
    copies = {}
    for name, path in WORKER_FILES.items():  # copied elsewhere, other times: the same archive
        copies[name] = str(tmp_path / name)
        Path(copies[name]).write_bytes(Path(path).read_bytes())
        os.utime(copies[name], (1_000_000_000, 1_000_000_000))
    assert worker_archive(copies) == first
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == sorted(WORKER_FILES)
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {
            (0, 0, 0, "", "", 0o644)
        }
        for m in members:
            assert tar.extractfile(m).read() == Path(WORKER_FILES[m.name]).read_bytes()
    assert first[4:8] == b"\0\0\0\0"  # gzip's MTIME field
    changed = dict(WORKER_FILES, **{"extra.py": str(tmp_path / "extra.py")})
    Path(changed["extra.py"]).write_text("X = 1\n")
    assert worker_archive(changed) != first


def test_session_token_is_written_once():
    """Temporary credentials repeat a long token in every URL; the script names it once."""
    token = "IQoJb3JpZ2luX2VjE+/=" + "A" * 1200
    quoted = token.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    spec = f"{LONG_URL}&X-Amz-Security-Token={quoted}&spec"
    worker = f"{WORKER_URL}&X-Amz-Security-Token={quoted}"
    post = {"url": POST["url"], "fields": dict(POST["fields"], **{"x-amz-security-token": token})}
    script = build_user_data(spec, worker, WORKER_SHA, 30, post)
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


def test_the_add_on_keeps_one_archive_under_its_digest(tmp_path):
    """The upload reads the archive from the state folder: written under its SHA-256 (the key it
    gets in the bucket), once, and an earlier version's archive goes."""
    from cloud.job.cloud_steps import CloudSteps

    steps = CloudSteps(tmp_path)
    path, sha, size = steps.worker_archive()
    stale = path.with_name("0" * 64 + ".tar.gz")
    stale.write_bytes(b"an earlier add-on's worker")
    assert steps.worker_archive() == (path, sha, size) and not stale.exists()
    assert path.read_bytes() == worker_archive() and path.name == f"{sha}.tar.gz"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha and size == path.stat().st_size
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_user_data_checks_its_inputs():
    with pytest.raises(ValueError, match=r"not a SHA-256"):
        build_user_data(LONG_URL, WORKER_URL, "abc", 10, POST)
    with pytest.raises(CloudError) as caught:
        build_user_data(LONG_URL, "https://x/" + "a" * 16000, WORKER_SHA, 10, POST)
    assert caught.value.message == "The render machine's start script is too large for AWS."
    assert caught.value.action.startswith("Use a shorter bucket name")


def boot_bucket(aws: Any, archive: bytes = b"") -> tuple[Any, Any, str, str]:
    """The boot tests' bucket with a worker archive in it (the real one unless given): S3 and EC2
    clients, the archive's link and its SHA-256. The links are signed by the artist, as the
    product signs them; EC2 is the harness's own."""
    s3, ec2 = client(aws.settings, "s3"), client(aws.admin, "ec2")
    s3.create_bucket(Bucket=BOOT_BUCKET)
    archive = archive or worker_archive()
    s3.put_object(Bucket=BOOT_BUCKET, Key="worker.tar.gz", Body=archive)
    link = presign_get(s3, BOOT_BUCKET, "worker.tar.gz", 600)
    return s3, ec2, link, hashlib.sha256(archive).hexdigest()


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
    s3, ec2, worker, digest = boot_bucket(aws)
    script = build_user_data(
        presign_get(s3, BOOT_BUCKET, "jobs/j1/missing-spec.json", 600),
        worker,
        digest,
        5,
        presign_post(s3, BOOT_BUCKET, out_prefix("j1"), 600, 1 << 20),
    )
    instance, machine = boot(aws, ec2, script, tmp_path)
    assert (machine.dir / "power-off").exists() and (machine.dir / "deadman").read_text().strip() == "5"
    error = json.loads(s3.get_object(Bucket=BOOT_BUCKET, Key="jobs/j1/out/error.json")["Body"].read())
    assert error["kind"] == "download" and error["cause"] == "The job spec could not be downloaded."
    log = s3.get_object(Bucket=BOOT_BUCKET, Key="jobs/j1/out/logs/000000.log")["Body"].read().decode()
    assert "dead-man in 5 min" in log and "HTTP 404" in log
    assert f"worker unpacked: {len(WORKER_FILES)} files" in log  # the real archive, checked and laid out
    assert {p.name for p in (machine.root / "worker" / "machine").iterdir()} == set(WORKER_FILES)
    assert "(simulated) dnf install" in log or "(simulated) apt-get" in log
    found = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
    assert found["State"]["Name"] == "terminated"


def evil_archive() -> bytes:
    """A worker archive with a member that climbs out of the worker folder."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name in ("supervisor.py", "../escaped.py"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"X=1"))
    return raw.getvalue()


@pytest.mark.parametrize(
    "archive, wrong_digest, cause",
    [
        (
            b"",
            True,
            "The worker archive is not the one this job was given (its SHA-256 differs). Submit again.",
        ),
        (
            evil_archive(),
            False,
            "The worker archive holds '../escaped.py', which is not a plain file inside it.",
        ),
    ],
    ids=["tampered", "escaping"],
)
def test_boot_refuses_a_worker_archive_it_cannot_trust(aws, tmp_path, archive, wrong_digest, cause):
    """Bytes other than those the user-data names, or a member outside the worker folder: the
    machine unpacks nothing, says why in error.json and powers off before the spec."""
    s3, ec2, worker, digest = boot_bucket(aws, archive)
    if wrong_digest:
        digest = hashlib.sha256(b"another worker").hexdigest()
    spec = presign_get(s3, BOOT_BUCKET, "jobs/j1/worker-spec.json", 600)
    script = build_user_data(
        spec, worker, digest, 5, presign_post(s3, BOOT_BUCKET, out_prefix("j1"), 600, 1 << 20)
    )
    _, machine = boot(aws, ec2, script, tmp_path)
    assert (machine.dir / "power-off").exists()
    error = json.loads(s3.get_object(Bucket=BOOT_BUCKET, Key="jobs/j1/out/error.json")["Body"].read())
    assert (error["kind"], error["cause"]) == ("download", cause)
    assert list((machine.root / "worker").rglob("*.py")) == [] and not (machine.root / "escaped.py").exists()
    assert not (machine.root / "job-spec.json").exists()


def test_boot_with_an_expired_upload_policy_powers_off_at_once(aws, tmp_path):
    """The sign-in behind the job's links expired before the machine booted: the boot script's
    first upload is refused, so it downloads nothing, keeps its error on disk and powers off."""
    s3, ec2, worker, digest = boot_bucket(aws)
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
    spec = presign_get(s3, BOOT_BUCKET, "jobs/j1/worker-spec.json", 600)
    script = build_user_data(spec, worker, digest, 5, post)
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
