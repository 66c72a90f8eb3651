"""AWS Batch emulated: moto's Batch over real HTTP, each container a local process run by the
Docker API stand-in (dev/docker_standin.py) in its own machine folder.

This module starts its own moto server: moto reads `DOCKER_HOST` when it starts, and the
session's shared server has none. Where moto falls short (terminating an array job's parent
reaches none of its children) the test plays AWS's part and says so.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from dev import process_sweep
from dev.aws_emulator import moto_server, reset
from dev.docker_standin import DockerStandin
from tests import waiting

# Process groups and /proc: the emulation is Linux-only.
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="runs processes the Linux way")

DEADLINE_S = 25.0

# A child of the array job: one "frame" per index, written where the test can see it, plus what
# it was given (its folder, the Batch variables) and a marker in its own machine folder.
RENDER = """
import json, os, pathlib, sys
index = os.environ["AWS_BATCH_JOB_ARRAY_INDEX"]
pathlib.Path("frame.txt").write_text(index)
names = ("AWS_BATCH_JOB_ID", "AWS_BATCH_JOB_ARRAY_INDEX", "AWS_BATCH_JOB_ARRAY_SIZE",
         "AWS_BATCH_JOB_ATTEMPT", "AWS_BATCH_JQ_NAME", "AWS_BATCH_CE_NAME", "MOTO_HTTP_ENDPOINT",
         "AWS_SECRET_ACCESS_KEY", "SCENE")
seen = {name: os.environ.get(name) for name in names}
seen.update(cwd=os.getcwd(), frame=pathlib.Path("frame.txt").read_text())
out = pathlib.Path(os.environ["RESULTS"])
(out / f"{index}.tmp").write_text(json.dumps(seen))
os.replace(out / f"{index}.tmp", out / f"{index}.json")
print("rendered frame", index)
print("a warning on stderr", file=sys.stderr)
"""

# A child that runs until told otherwise (a file that never appears), 60 s at most; it starts a
# grandchild too, which the kill must reach as well.
HANG = """
import os, pathlib, subprocess, sys, time
index = os.environ["AWS_BATCH_JOB_ARRAY_INDEX"]
out = pathlib.Path(os.environ["RESULTS"])
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
(out / f"{index}.tmp").write_text(f"{os.getpid()} {helper.pid}")
os.replace(out / f"{index}.tmp", out / f"{index}.pids")
deadline = time.monotonic() + 60
while not (out / "never").exists() and time.monotonic() < deadline:
    time.sleep(0.1)
"""

# The boot script's own fallback timer (cloud/machine/bootstrap.sh), with `true` for `poweroff`
# (this container has the host's PATH), and a process in a session of its own, as the
# supervisor starts Blender: the container's main process then ends at once.
STRAYS = """
import os, pathlib, subprocess, sys
out = pathlib.Path(os.environ["RESULTS"])
subprocess.run(["sh", "-c", "(nohup sh -c 'sleep 600; true' >/dev/null 2>&1 &)"], check=True)
own = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
(out / "own.tmp").write_text(str(own.pid))
os.replace(out / "own.tmp", out / "own.pid")
"""


@dataclass
class BatchWorld:
    url: str
    standin: DockerStandin

    def client(self, service: str) -> Any:
        """A plain boto3 client on moto (the harness's own view, not the product's session)."""
        return boto3.session.Session().client(
            service,
            region_name="us-east-1",
            endpoint_url=self.url,
            aws_access_key_id="AKIAEXAMPLETESTKEY00",
            aws_secret_access_key="test-secret-not-real",
        )


@pytest.fixture(scope="module")
def batch_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchWorld]:
    base = tmp_path_factory.mktemp("batch")
    with DockerStandin(base / "machines") as standin, contextlib.ExitStack() as stack:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("DOCKER_HOST", standin.docker_host)
            url = stack.enter_context(moto_server(base / "moto.log"))
        standin.moto_url = url
        yield BatchWorld(url, standin)


@pytest.fixture
def world(batch_world: BatchWorld) -> BatchWorld:
    reset(batch_world.url)
    return batch_world


wait_for = functools.partial(waiting.wait_for, deadline_s=DEADLINE_S)


def make_queue(world: BatchWorld, script: str, results: Path) -> tuple[Any, str, str]:
    """A managed EC2 compute environment (scale to zero), its queue and a job definition."""
    iam = world.client("iam")
    ec2 = world.client("ec2")
    batch = world.client("batch")
    trust = {"Version": "2012-10-17", "Statement": []}
    role = iam.create_role(RoleName="batch-service", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    iam.create_role(RoleName="render-instance", AssumeRolePolicyDocument=json.dumps(trust))
    profile = iam.create_instance_profile(InstanceProfileName="render-instance")["InstanceProfile"]
    iam.add_role_to_instance_profile(InstanceProfileName="render-instance", RoleName="render-instance")
    subnet = ec2.describe_subnets()["Subnets"][0]
    group = ec2.describe_security_groups(
        Filters=[
            {"Name": "vpc-id", "Values": [subnet["VpcId"]]},
            {"Name": "group-name", "Values": ["default"]},
        ]
    )["SecurityGroups"][0]

    suffix = uuid.uuid4().hex[:8]
    env = batch.create_compute_environment(
        computeEnvironmentName=f"render-ce-{suffix}",
        type="MANAGED",
        state="ENABLED",
        serviceRole=role["Arn"],
        computeResources={
            "type": "EC2",
            "minvCpus": 0,
            "maxvCpus": 16,
            "instanceTypes": ["g4dn.xlarge"],
            "subnets": [subnet["SubnetId"]],
            "securityGroupIds": [group["GroupId"]],
            "instanceRole": profile["Arn"],
        },
    )
    queue = batch.create_job_queue(
        jobQueueName=f"render-queue-{suffix}",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env["computeEnvironmentArn"]}],
    )
    definition = batch.register_job_definition(
        jobDefinitionName=f"render-frames-{suffix}",
        type="container",
        containerProperties={
            "image": "cloud-render/worker:latest",
            "command": [sys.executable, "-c", script],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}],
            "environment": [{"name": "RESULTS", "value": str(results)}],
        },
    )
    return batch, queue["jobQueueArn"], definition["jobDefinitionArn"]


def job(batch: Any, job_id: str) -> dict[str, Any]:
    return batch.describe_jobs(jobs=[job_id])["jobs"][0]


def children(batch: Any, parent_id: str) -> list[dict[str, Any]]:
    listed = batch.list_jobs(arrayJobId=parent_id)["jobSummaryList"]
    return sorted(listed, key=lambda j: j["jobId"])


def test_an_array_job_runs_each_child_as_a_process_in_its_own_machine_folder(world, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    batch, queue, definition = make_queue(world, RENDER, results)
    ec2 = world.client("ec2")

    # A per-job setting through the overrides, which moto shares among the children.
    scene = {"environment": [{"name": "SCENE", "value": "shot-010"}]}
    parent = batch.submit_job(
        jobName="frames",
        jobQueue=queue,
        jobDefinition=definition,
        arrayProperties={"size": 3},
        containerOverrides=scene,
    )
    parent_id = parent["jobId"]
    done = wait_for(
        "the array job to finish", lambda: job(batch, parent_id)["status"] in {"SUCCEEDED", "FAILED"}
    )
    assert done
    described = job(batch, parent_id)
    assert described["status"] == "SUCCEEDED", described
    assert described["arrayProperties"]["size"] == 3

    seen = {int(p.stem): json.loads(p.read_text()) for p in results.glob("*.json")}
    assert sorted(seen) == [0, 1, 2]
    folders = {child["cwd"] for child in seen.values()}
    assert len(folders) == 3
    assert all(Path(f).parent == world.standin.base_dir for f in folders)
    for index, child in seen.items():
        assert child["frame"] == str(index)
        assert child["AWS_BATCH_JOB_ID"] == f"{parent_id}:{index}"
        assert child["AWS_BATCH_JOB_ARRAY_INDEX"] == str(index)
        assert child["AWS_BATCH_JOB_ARRAY_SIZE"] == "3"
        assert child["AWS_BATCH_JOB_ATTEMPT"] == "1"
        assert child["AWS_BATCH_JQ_NAME"] == queue.rsplit("/", 1)[-1]
        assert child["AWS_BATCH_CE_NAME"].startswith("render-ce-")
        assert child["SCENE"] == "shot-010"
        assert child["MOTO_HTTP_ENDPOINT"] == world.url
        assert child["AWS_SECRET_ACCESS_KEY"] is None  # the machine holds no credentials

    statuses = [c["status"] for c in children(batch, parent_id)]
    assert statuses == ["SUCCEEDED"] * 3

    # What moto made of each container's output: its log stream in CloudWatch Logs.
    logs = world.client("logs")
    child = job(batch, f"{parent_id}:1")
    stream = child["container"]["logStreamName"]
    messages = [
        e["message"]
        for e in logs.get_log_events(logGroupName="/aws/batch/job", logStreamName=stream)["events"]
    ]
    assert "rendered frame 1" in messages
    assert "a warning on stderr" in messages

    # The stand-in's side: three processes, exit 0, folders thrown away once moto removed them.
    machines = [
        m for m in world.standin.machines() if m.env.get("AWS_BATCH_JOB_ID", "").startswith(parent_id)
    ]
    assert len(machines) == 3
    wait_for("moto to remove the containers", lambda: all(m.removed for m in machines))
    assert [m.exit_code for m in machines] == [0, 0, 0]
    assert not any(m.folder.exists() for m in machines)
    assert world.standin.unhandled == []
    assert world.standin.errors == []

    # moto gap: a managed compute environment with minvCpus 0 has no instances, and none
    # appear for the job: the children ran on no EC2 instance at all.
    instances = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    assert instances == []


def test_terminating_a_running_array_job_kills_its_processes(world, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    batch, queue, definition = make_queue(world, HANG, results)

    parent = batch.submit_job(
        jobName="frames", jobQueue=queue, jobDefinition=definition, arrayProperties={"size": 3}
    )
    parent_id = parent["jobId"]
    pid_files = wait_for("three children to start", lambda: len(list(results.glob("*.pids"))) == 3)
    assert pid_files
    pids = [int(pid) for p in results.glob("*.pids") for pid in p.read_text().split()]
    assert len(pids) == 6 and all(_alive(pid) for pid in pids)
    wait_for(
        "the children to be RUNNING",
        lambda: [c["status"] for c in children(batch, parent_id)] == ["RUNNING"] * 3,
    )

    # Cancelling reaches no job that has started (as on AWS): the processes keep running.
    batch.cancel_job(jobId=parent_id, reason="artist cancelled")
    assert all(_alive(pid) for pid in pids)

    # On AWS, terminating the parent terminates every child. moto stops the parent only, so
    # the harness plays AWS's part and terminates each child too.
    batch.terminate_job(jobId=parent_id, reason="artist cancelled")
    for child in children(batch, parent_id):
        batch.terminate_job(jobId=child["jobId"], reason="artist cancelled")

    wait_for(
        "every child to fail", lambda: [c["status"] for c in children(batch, parent_id)] == ["FAILED"] * 3
    )
    wait_for("every process to be gone", lambda: not any(_alive(pid) for pid in pids))
    machines = [
        m for m in world.standin.machines() if m.env.get("AWS_BATCH_JOB_ID", "").startswith(parent_id)
    ]
    assert len(machines) == 3
    wait_for("moto to remove the containers", lambda: all(m.removed for m in machines))
    assert [m.exit_code for m in machines] == [137, 137, 137]
    assert world.standin.running() == []
    reasons = {job(batch, c["jobId"]).get("statusReason") for c in children(batch, parent_id)}
    assert reasons == {"artist cancelled"}


def _alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, waiting to be reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_containers_dead_man_timer_and_own_session_die_with_it(world, tmp_path):
    """A container that leaves a `sleep; poweroff` timer and a process of a session of its own
    behind, and exits: the stand-in ends both with it."""
    results = tmp_path / "results"
    results.mkdir()
    batch, queue, definition = make_queue(world, STRAYS, results)
    submitted = batch.submit_job(jobName="strays", jobQueue=queue, jobDefinition=definition)
    wait_for("the job to end", lambda: job(batch, submitted["jobId"])["status"] in {"SUCCEEDED", "FAILED"})
    own = int((results / "own.pid").read_text())
    machine = next(m for m in world.standin.machines() if m.env.get("RESULTS") == str(results))
    wait_for("the container's leftovers to be gone", lambda: not _alive(own))
    assert process_sweep.marked(process_sweep.MACHINE_MARK, str(machine.folder)) == []
