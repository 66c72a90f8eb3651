"""The many-machines engine's parts: what AWS Batch is set up with (moto over HTTP), frame claims
by conditional writes (moto honours If-None-Match on PutObject: 200 first, 412 after), and how
many machines fit a vCPU quota."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from cloud.aws import batch
from cloud.aws.fleet import machines_that_fit
from cloud.aws.presign import presign_list_pages
from cloud.aws.quotas import CapacityReport
from cloud.aws.session import AwsSettings, client
from cloud.cost.catalog import load_catalog
from cloud.errors import CloudError
from cloud.job.batch_engine import BatchEngine, check_scene_fits, child_size_for
from cloud.job.cloud_steps import CloudSteps, PackedScene
from cloud.job.events import EventQueue, LogLines
from cloud.job.job_thread import JobRunner
from cloud.job.records import JobRecord, JobRequest, RecordStore, Stage, new_job_id
from cloud.machine import contract
from cloud.machine.batch_worker import BatchSupervisor, Claims, list_pages
from dev.batch_simulator import BatchSimulator
from dev.emulator import create_artist
from tests.factories import job_record
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchSimulator]:
    # Its own moto (managed policies known, Batch on the Docker stand-in); nothing is submitted.
    with BatchSimulator(tmp_path_factory.mktemp("batch-engine")) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def artist(sim: BatchSimulator) -> AwsSettings:
    """What the product signs with: the artist's IAM user with Cloud Render's two policies (as
    during Set Up). `sim.settings` (the account's root) is for the harness's own steps."""
    key_id, secret = create_artist(sim.settings)
    return replace(sim.settings, access_key_id=key_id, secret_access_key=secret)


def test_the_engine_is_made_once_scaled_to_zero_and_closed(sim, artist):
    settings = artist
    first = batch.ensure_engine(settings, "g4dn.xlarge", True, 16, pack_bytes=3 * 1024**3)
    again = batch.ensure_engine(settings, "g4dn.xlarge", True, 16, pack_bytes=3 * 1024**3)
    assert again == first  # idempotent: same queue, same job definition revision

    b = client(settings, "batch")
    [env] = b.describe_compute_environments(computeEnvironments=[first.compute_environment])[
        "computeEnvironments"
    ]
    resources = env["computeResources"]
    assert env["computeEnvironmentName"].startswith("cloud-render-")
    assert resources["minvCpus"] == 0 and resources["maxvCpus"] == 16
    assert resources["type"] == "SPOT" and resources["instanceTypes"] == ["g4dn.xlarge"]
    assert (
        "/aws-service-role/batch.amazonaws.com/" in env["serviceRole"]
    )  # moto spells the name "...Forbatch"

    [definition] = b.describe_job_definitions(jobDefinitions=[first.definition_arn])["jobDefinitions"]
    container = definition["containerProperties"]
    assert container["image"].startswith("public.ecr.aws/")
    assert {"type": "GPU", "value": "1"} in container["resourceRequirements"]
    capabilities = {e["name"]: e["value"] for e in container["environment"]}["NVIDIA_DRIVER_CAPABILITIES"]
    assert "graphics" in capabilities.split(",")  # OptiX and EGL reach the container only then
    # Nothing of one job in the definition: each job brings its own limit (see the next test).
    assert definition["timeout"]["attemptDurationSeconds"] == batch.FALLBACK_TIMEOUT_S
    rules = definition["retryStrategy"]["evaluateOnExit"]  # moto answers the actions in lower case
    assert (rules[0]["onStatusReason"], rules[0]["action"].upper()) == ("Host EC2*", "RETRY")
    assert rules[-1]["action"].upper() == "EXIT"

    ec2 = client(settings, "ec2")
    [template] = ec2.describe_launch_templates(LaunchTemplateNames=[batch.LAUNCH_TEMPLATE])["LaunchTemplates"]
    data = ec2.describe_launch_template_versions(LaunchTemplateId=template["LaunchTemplateId"])[
        "LaunchTemplateVersions"
    ][-1]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    # Hop limit 1 keeps a bridged container from IMDS, not Batch's host-networked one: what that
    # one can reach is listed in cloud/machine/README.md and checked by the test below.
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    volume = data["BlockDeviceMappings"][0]["Ebs"]
    assert volume["Encrypted"] is True and volume["VolumeSize"] >= 46  # a 3 GB pack, twice, + 40

    iam = client(sim.settings, "iam")  # read back as the account
    attached = iam.list_attached_role_policies(RoleName=batch.INSTANCE_ROLE)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [batch.ECS_FOR_EC2_POLICY]
    assert iam.list_role_policies(RoleName=batch.INSTANCE_ROLE)["PolicyNames"] == []  # no inline policy


# What a Batch container can do with the instance role's credentials (it shares the host's
# network, so IMDSv2's hop limit does not keep it from them): cloud/machine/README.md,
# "What a Batch machine's container can reach". The ECS agent's and the logs' work, and reading
# the account's private container images; nothing of the render's.
ROLE_ALLOWS = [
    ("ecs:RegisterContainerInstance", "arn:aws:ecs:us-east-1:123456789012:cluster/AWSBatch-x"),
    ("ecs:Poll", "arn:aws:ecs:us-east-1:123456789012:container-instance/AWSBatch-x/1"),
    ("ecs:SubmitTaskStateChange", "arn:aws:ecs:us-east-1:123456789012:cluster/other"),
    ("ecs:DeregisterContainerInstance", "arn:aws:ecs:us-east-1:123456789012:cluster/other"),
    ("ecs:CreateCluster", "*"),
    ("ecr:GetAuthorizationToken", "*"),
    ("ecr:BatchGetImage", "arn:aws:ecr:us-east-1:123456789012:repository/private"),
    ("logs:PutLogEvents", "arn:aws:logs:us-east-1:123456789012:log-group:any:log-stream:x"),
    ("ec2:DescribeTags", "*"),
]
ROLE_REFUSES = [
    ("s3:GetObject", "arn:aws:s3:::cloud-render-123456789012-us-east-1/cas/abc"),
    ("s3:PutObject", "arn:aws:s3:::cloud-render-123456789012-us-east-1/jobs/j/out/frame.png"),
    ("s3:ListBucket", "arn:aws:s3:::cloud-render-123456789012-us-east-1"),
    ("ec2:RunInstances", "arn:aws:ec2:us-east-1:123456789012:instance/*"),
    ("ec2:TerminateInstances", "arn:aws:ec2:us-east-1:123456789012:instance/i-1"),
    ("batch:SubmitJob", "arn:aws:batch:us-east-1:123456789012:job-queue/cloud-render-q"),
    ("batch:TerminateJob", "arn:aws:batch:us-east-1:123456789012:job/x"),
    ("iam:PassRole", "arn:aws:iam::123456789012:role/cloud-render-ecs-instance"),
    ("iam:CreateAccessKey", "arn:aws:iam::123456789012:user/artist"),
    ("ssm:GetParameter", "arn:aws:ssm:us-east-1::parameter/aws/service/x"),
    ("budgets:ModifyBudget", "arn:aws:budgets::123456789012:budget/cloud-render"),
    ("servicequotas:RequestServiceQuotaIncrease", "*"),
    ("sts:AssumeRole", "arn:aws:iam::123456789012:role/cloud-render-ecs-instance"),
]


def test_the_instance_roles_credentials_reach_the_ecs_agents_work_and_nothing_of_the_render(sim, artist):
    """Read back after Set Up as the account: the role's policies (moto holds AWS's managed
    policy text), evaluated as IAM does (dev/strict_aws/authorize.py)."""
    from dev.strict_aws.authorize import Check, evaluate
    from dev.strict_aws.principals import Policy, Principal

    batch.ensure_engine(artist, "g4dn.xlarge", True, 16, pack_bytes=1024**3)
    iam = client(sim.settings, "iam")
    assert iam.list_role_policies(RoleName=batch.INSTANCE_ROLE)["PolicyNames"] == []
    policies = []
    for attached in iam.list_attached_role_policies(RoleName=batch.INSTANCE_ROLE)["AttachedPolicies"]:
        found = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
        version = iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=found["DefaultVersionId"])
        document = version["PolicyVersion"]["Document"]
        policies.append(
            Policy(attached["PolicyArn"], document if isinstance(document, dict) else json.loads(document))
        )
    role = Principal(
        "user", arn=f"arn:aws:iam::123456789012:role/{batch.INSTANCE_ROLE}", policies=tuple(policies)
    )

    def allowed(action: str, resource: str) -> bool:
        return evaluate(role, Check(action, resource, {})).allowed

    assert [a for a, r in ROLE_ALLOWS if not allowed(a, r)] == []
    assert [a for a, r in ROLE_REFUSES if allowed(a, r)] == []


def test_a_frame_is_claimed_by_one_machine_only(sim, artist):
    settings = artist
    s3 = client(settings, "s3")
    s3.create_bucket(Bucket="cloud-render-claims-test")
    url = s3.generate_presigned_url(
        "put_object",
        Params={"Bucket": "cloud-render-claims-test", "Key": contract.claim_key("j1", 5)},
        ExpiresIn=600,
    )
    said: list[str] = []
    first = Claims({"5": url}, index=0, attempt=1, say=said.append)
    second = Claims({"5": url}, index=1, attempt=1, say=said.append)
    assert first.claim(5) is True
    assert second.claim(5) is False  # 412 PreconditionFailed: the claim exists
    assert first.claim(6) is False  # no link for that frame: not this job's
    body = s3.get_object(Bucket="cloud-render-claims-test", Key=contract.claim_key("j1", 5))["Body"].read()
    assert json.loads(body or b"{}").get("machine", 0) == 0
    # Straight S3 semantics, as the machines rely on them: a second conditional PUT is refused.
    request = urllib.request.Request(url, data=b"{}", method="PUT", headers={"If-None-Match": "*"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 412


def report(quota: float | None, in_use: int = 0, vcpus: int = 8) -> CapacityReport:
    return CapacityReport(
        offered=True,
        vcpus_needed=vcpus,
        quota_vcpus=quota,
        fits=True,
        message="",
        action="",
        instance_type="g5.2xlarge",
        region="eu-west-1",
        quota_label="Running On-Demand G and VT instances",
        vcpus_in_use=in_use,
    )


def test_machines_that_fit_the_quota():
    assert machines_that_fit(report(32), 4).ok
    fit = machines_that_fit(report(32, in_use=8), 4)
    assert (fit.ok, fit.fits) == (False, 3)
    assert fit.message == (
        "Your account's limit of 32 vCPUs for Running On-Demand G and VT instances in eu-west-1 (8 in use) "
        "leaves room for 3 g5.2xlarge machines (8 vCPUs each), not 4."
    )
    assert fit.action == (
        "Render on 3 machines, or request a quota increase to 40 vCPUs (AWS usually answers within a day)."
    )
    none = machines_that_fit(report(4), 2)
    assert (none.ok, none.fits) == (False, 0)
    assert none.action.startswith("Request a quota increase to 16 vCPUs")
    unknown = machines_that_fit(report(None), 5)
    assert (unknown.ok, unknown.fits) == (True, 5)


@pytest.mark.parametrize("text", ["../1", "-1", "1e3", "", "10000", None, "0x1"])
def test_a_machine_index_from_a_key_is_checked(text):
    with pytest.raises(contract.ContractError):
        contract.machine_index(text)


def test_a_machine_index_in_range():
    assert contract.machine_index("7") == 7


def claim_urls(s3, bucket: str, job: str, frames: list[int]) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A new bucket and each frame's presigned claim PUT, as the add-on hands them to machines."""
    s3.create_bucket(Bucket=bucket)
    return {
        str(f): s3.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": contract.claim_key(job, f)}, ExpiresIn=600
        )
        for f in frames
    }


def test_a_retry_finds_its_lost_claims_over_several_listing_pages(sim, artist, tmp_path):
    """A machine lost right after claiming (or mid-frame, or before its upload) leaves claims and
    no rendered mark; its retry finds them from the claims' ETags (the claim body names machine
    and attempt), reading both listings page by page: pages of 4 here (moto honours MaxKeys and
    StartAfter), 13 frames, more claims and more marks than a page."""
    settings = artist
    s3 = client(settings, "s3")
    bucket, job = "cloud-render-pages-test", "j2"
    frames = list(range(1, 14))
    urls = claim_urls(s3, bucket, job, frames)
    lost = Claims(urls, index=1, attempt=1, say=print)
    other = Claims(urls, index=0, attempt=1, say=print)
    ones = [2, 3, 5, 7, 8, 10, 11, 13]  # machine 1's first attempt claimed these...
    assert all(lost.claim(f) for f in ones)
    assert all(other.claim(f) for f in frames if f not in ones)
    for f in (3, 5, 7, 8, 10):  # ...and uploaded these (five marks: more than a page)
        s3.put_object(Bucket=bucket, Key=contract.marks_prefix(job, 1) + contract.rendered_mark(f), Body=b"")
    names = [str(f) for f in frames]
    claim_pages = presign_list_pages(s3, bucket, contract.claims_prefix(job), names, 600, page=4)
    marks = [contract.rendered_mark(f) for f in frames]
    mark_pages = {
        str(i): presign_list_pages(s3, bucket, contract.marks_prefix(job, i), marks, 600, page=4)
        for i in (0, 1)
    }
    assert len(claim_pages) == 4 and len(mark_pages["1"]) == 4
    first_page = list_pages(claim_pages[:1], "one page", print)
    assert len(first_page) == 4  # one page alone misses claims: the pages are what covers them
    post = {"url": "http://127.0.0.1:9/", "fields": {}}
    spec = {
        "job_id": job,
        "frames": frames,
        "upload_url": post["url"],
        "upload_fields": post["fields"],
        "upload_prefix": contract.out_prefix(job),
        "claim_urls": urls,
        "claim_list_urls": claim_pages,
        "machine_list_urls": mark_pages,
    }
    retry = BatchSupervisor(spec, str(tmp_path / "m1"), index=1, attempt=2)
    assert retry.lost_claims() == [2, 11, 13]  # claimed by attempt 1, never marked uploaded
    third = BatchSupervisor(spec, str(tmp_path / "m1b"), index=1, attempt=3)
    assert third.lost_claims() == [2, 11, 13]  # every earlier attempt's claims count
    assert BatchSupervisor(spec, str(tmp_path / "m1c"), index=1, attempt=1).lost_claims() == []
    assert BatchSupervisor(spec, str(tmp_path / "m0"), index=0, attempt=2).lost_claims() == [
        f for f in frames if f not in ones
    ]


def test_a_job_of_many_frames_lists_every_claim():
    """More frames than S3 lists at once: the pages start just after one another's last key in
    S3's order (names sort as text: "10" before "2"), each at most a page long."""
    s3 = boto3.session.Session().client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    names = [str(f) for f in range(1, 2501)]
    pages = presign_list_pages(s3, "b", "jobs/j/out/claims/", names, 600)
    assert len(pages) == 3
    starts = [parse_qs(urlsplit(url).query).get("start-after", [""])[0] for url in pages]
    keys = sorted(f"jobs/j/out/claims/{n}" for n in names)
    assert starts == ["", keys[999], keys[1999]]
    assert all(parse_qs(urlsplit(url).query)["max-keys"] == ["1000"] for url in pages)


def two_machines_at_work(
    sim: BatchSimulator,
    artist: AwsSettings,
    tmp_path: Path,
    bucket: str,
    frames: list[int],
    attempt_seconds: int,
) -> tuple[batch.Engine, JobRunner, EventQueue]:
    """A two-machine Batch job whose children are both running (a boot script that sleeps), and
    the job thread that follows it, not started: the engine, the runner and its events."""
    settings = artist
    engine = batch.ensure_engine(settings, "g4dn.xlarge", True, 16, pack_bytes=3 * 1024**3)
    s3 = client(settings, "s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="boot.sh", Body=b"sleep 300\n")  # a machine at work
    boot_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "boot.sh"}, ExpiresIn=600
    )
    job_id = new_job_id()
    size = batch.child_size(4, 16, 1)
    batch_id = batch.submit(settings, engine, job_id, 2, boot_url, attempt_seconds=attempt_seconds, size=size)
    for index in (0, 1):
        assert sim.machine(batch_id, index, timeout=120).running
    record = job_record(
        tmp_path / "out",
        job_id=job_id,
        instance_type="g4dn.xlarge",
        spot=True,
        frames=frames,
        bucket=bucket,
        launch_id=batch_id,
        launched_at=time.time(),
        machines=2,
        stage=Stage.RENDERING.value,
    )
    events = EventQueue()
    runner = JobRunner(record, settings, events, RecordStore(tmp_path / "jobs"), CloudSteps(tmp_path))
    return engine, runner, events


def logged(events: EventQueue) -> list[str]:
    """Every job-log line among the events queued so far."""
    return [
        line for e in events.drain(budget_s=1.0, limit=10_000) if isinstance(e, LogLines) for line in e.lines
    ]


def test_cancel_ends_every_child_checks_none_is_left_and_the_environment_scales_to_zero(
    sim, artist, tmp_path
):
    settings = artist
    engine, runner, events = two_machines_at_work(
        sim, artist, tmp_path, "cloud-render-cancel-test", [1, 2, 3, 4], 1234
    )
    record = runner.record
    batch_id = record.launch_id
    # Each child carries the job's own limit (its share of the caps), not the definition's backstop.
    kids = client(settings, "batch").describe_jobs(jobs=[f"{batch_id}:0", f"{batch_id}:1"])["jobs"]
    assert [k["timeout"]["attemptDurationSeconds"] for k in kids] == [1234, 1234]

    runner.finish_cancelled()  # what Cancel ends in: every child told, then the end-of-job check

    assert record.stage == Stage.CANCELLED.value
    log = logged(events)
    assert "[cloud-render] Checked: no machine of this job is still running." in log
    assert not any("Still running" in line for line in log)
    assert not any(c.live for c in batch.children(settings, batch_id, 2))
    wait_for(
        "both machine processes to end", lambda: not any(m.running for m in sim.children_of(batch_id)), 120
    )
    assert batch.live_jobs(settings) == []  # the forgotten-machine search finds nothing either

    # The compute environment scales to zero by itself once no job is live: minvCpus 0. moto gap:
    # it starts no instance for a managed environment and never changes desiredvCpus, so 0 here
    # is what the engine set, not Batch scaling down; on AWS the instances end minutes later.
    [env] = client(settings, "batch").describe_compute_environments(
        computeEnvironments=[engine.compute_environment]
    )["computeEnvironments"]
    assert (env["computeResources"]["minvCpus"], env["computeResources"]["desiredvCpus"]) == (0, 0)


def test_a_child_still_live_when_the_job_ends_is_stopped_and_said(sim, artist, tmp_path):
    settings = artist
    _, runner, events = two_machines_at_work(sim, artist, tmp_path, "cloud-render-left-test", [1, 2], 900)
    batch_id = runner.record.launch_id
    runner.left_running_grace_s = 1.0  # nothing told them to stop: no need to wait the full grace
    # An ending that did not stop the machines (as if their termination had been lost): the
    # end-of-job check finds both children live, stops them and says so.
    runner.end(Stage.FAILED, "Something went wrong.", "Relaunch the missing frames.")

    log = logged(events)
    assert (
        "[cloud-render] Still running after the job ended: machine 0 (running), machine 1 (running). "
        "Stopping them."
    ) in log
    wait_for(
        "Batch to show no live child",
        lambda: not any(c.live for c in batch.children(settings, batch_id, 2)),
        120,
    )
    wait_for(
        "both machine processes to end", lambda: not any(m.running for m in sim.children_of(batch_id)), 120
    )


def test_a_machine_behind_the_others_skips_their_claims_after_one_listing(sim, artist, tmp_path):
    """Two lost claims in a row, then one listing of the claims: the walk skips every frame the
    others hold instead of losing a conditional write on each, and still takes the first free
    one in the job's order."""
    s3 = client(artist, "s3")
    bucket, job = "cloud-render-skip-test", "j3"
    frames = list(range(1, 21))
    urls = claim_urls(s3, bucket, job, frames)
    ahead = Claims(urls, index=0, attempt=1, say=print)
    assert all(ahead.claim(f) for f in range(1, 13) if f != 9)  # frame 9 is still free
    spec = {
        "job_id": job,
        "frames": frames,
        "upload_url": "http://127.0.0.1:9/",
        "upload_fields": {},
        "upload_prefix": contract.out_prefix(job),
        "claim_urls": urls,
        "claim_list_urls": presign_list_pages(
            s3, bucket, contract.claims_prefix(job), [str(f) for f in frames], 600, page=4
        ),
    }
    behind = BatchSupervisor(spec, str(tmp_path / "m1"), index=1, attempt=1)
    assert behind.next_claim() == 9  # the first free frame in order
    assert len(behind.claims.seconds) == 3  # frames 1 and 2 refused, then the listing, then 9
    assert behind.next_claim() == 13
    assert len(behind.claims.seconds) == 4  # 10 to 12 skipped without a request


# The product's launch with a boot script that only ends: what is checked is what Batch is
# asked for, not the render.
TINY_BOOT = "exit 0\n"


def launch_request(tmp_path: Path, instance_type: str, render_pixels: int) -> tuple[JobRecord, JobRequest]:
    """A two-machine job of `instance_type` rendering `render_pixels` a frame, its bucket made."""
    job_id = new_job_id()
    request = JobRequest(
        job_id=job_id,
        blend_copy=tmp_path / "shot.blend",
        blend_name="/p/shot.blend",
        scene_name="Scene",
        frames=[1, 2],
        output_dir=tmp_path / "out",
        region="us-east-1",
        instance_type=instance_type,
        spot=True,
        max_cost=5.0,
        max_hours=1.0,
        price_per_hour=0.5,
        blender_version="4.2.0",
        machines=2,
        render_pixels=render_pixels,
    )
    record = JobRecord.from_request(request)
    record.bucket = f"cloud-render-size-{job_id[-8:].lower()}"
    return record, request


# One instance's worth (AWS's published sizes, as the catalog holds them), memory less 10%.
ONE_INSTANCE = {
    "g4dn.xlarge": {"VCPU": "4", "MEMORY": str(int(16 * 1024 * 0.9)), "GPU": "1"},  # 14745 MiB
    "g5.12xlarge": {"VCPU": "48", "MEMORY": str(int(192 * 1024 * 0.9)), "GPU": "4"},  # 176947 MiB
    "m5.2xlarge": {"VCPU": "8", "MEMORY": str(int(32 * 1024 * 0.9))},  # 29491 MiB, no GPU
}


@pytest.mark.parametrize("instance_type", sorted(ONE_INSTANCE))
def test_each_child_is_sized_to_fill_one_instance_of_the_jobs_type(sim, artist, tmp_path, instance_type):
    """Batch's MEMORY is a hard limit and its placement unit: children ask for one instance's
    vCPUs, GPUs and memory (less what the host keeps), so one child runs per instance and Blender
    may use that memory. The job definition keeps its small placeholders for every type."""
    settings = artist
    record, request = launch_request(tmp_path, instance_type, render_pixels=1920 * 1080)
    client(settings, "s3").create_bucket(Bucket=record.bucket)
    packed = PackedScene(blend_path="shot.blend", files={"shot.blend": ("0" * 64, 1000)}, root=None)

    launched = BatchEngine().launch(settings, record, request, packed, TINY_BOOT)

    b = client(settings, "batch")
    [parent] = b.describe_jobs(jobs=[launched.launch_id])["jobs"]
    overrides = {r["type"]: r["value"] for r in parent["container"]["resourceRequirements"]}
    assert overrides == ONE_INSTANCE[instance_type]
    # Every child carries it, and the emulated machines were started with it.
    kids = b.describe_jobs(jobs=[f"{launched.launch_id}:{i}" for i in (0, 1)])["jobs"]
    assert [{r["type"]: r["value"] for r in k["container"]["resourceRequirements"]} for k in kids] == [
        ONE_INSTANCE[instance_type]
    ] * 2
    assert sim.machine(launched.launch_id, 0, timeout=120).resources == ONE_INSTANCE[instance_type]
    [definition] = b.describe_job_definitions(jobDefinitions=[parent["jobDefinition"]])["jobDefinitions"]
    placeholders = {r["type"]: r["value"] for r in definition["containerProperties"]["resourceRequirements"]}
    assert (placeholders["VCPU"], placeholders["MEMORY"]) == ("1", "2048")


def test_a_frame_too_large_for_one_machine_is_refused_before_anything_starts(sim, artist, tmp_path):
    """16384 x 16384 pixels need about 64 GB of render buffers alone: more than a g4dn.xlarge
    leaves (14 GB), so the job is refused in words before a boot script or a Batch job exists."""
    settings = artist
    record, request = launch_request(tmp_path, "g4dn.xlarge", render_pixels=16384 * 16384)
    client(settings, "s3").create_bucket(Bucket=record.bucket)

    with pytest.raises(CloudError) as refused:
        BatchEngine().check_capacity(settings, record, request)

    assert refused.value.message == (
        "Each frame needs about 64 GB of memory at this resolution, more than the 14 GB a "
        "g4dn.xlarge machine leaves for rendering."
    )
    assert refused.value.action == (
        "Lower Output Properties > Resolution %, or choose a machine type with more memory."
    )
    assert client(settings, "s3").list_objects_v2(Bucket=record.bucket).get("KeyCount", 0) == 0
    # The same frame fits a g6e.12xlarge (384 GB): nothing is refused there.
    check_scene_fits(
        16384 * 16384, "g6e.12xlarge", child_size_for("g6e.12xlarge", load_catalog().get("g6e.12xlarge"))
    )


def test_a_job_on_a_type_the_catalog_does_not_know_is_refused_in_words():
    with pytest.raises(CloudError) as refused:
        child_size_for("x9.huge", None)
    assert "x9.huge" in refused.value.message and refused.value.action


def test_every_catalog_type_sizes_a_child_within_its_instance():
    """No type asks for more than it registers with Batch (nominal memory less ~5%), and none
    leaves Blender less than 85% of it."""
    for facts in load_catalog().types.values():
        size = child_size_for(facts.name, facts)
        nominal = facts.ram_gib * 1024
        assert 0.85 * nominal < size.memory_mib <= 0.95 * nominal - 32, facts.name
        assert (size.vcpus, size.gpus) == (facts.vcpu, facts.gpu_count)
