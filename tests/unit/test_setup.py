"""The first-run "Set up" flow against moto over HTTP, the local Service Quotas and SSM servers,
and local HTTP servers with injected delays standing in for the regions' latency endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from cloud.aws import account_setup, batch
from cloud.aws.budget import BUDGET_NAME
from cloud.aws.compute import SECURITY_GROUP_NAME
from cloud.aws.session import client
from dev.aws_emulator import free_port
from dev.error_server import AwsReplyServer, caller_identity, s3_error
from dev.quota_server import Ec2Proxy
from dev.ssm_seed import seed_deep_learning_amis
from tests import quota_fixtures
from tests.aws_recorder import RecordingProxy, operations
from tests.ping_server import ping_server

account = quota_fixtures.account
quotas = quota_fixtures.quotas
public_params = quota_fixtures.public_params

G_ON_DEMAND = "L-DB2E81BA"

# Set Up ends with the Batch engine, whose role gets AWS's managed ECS policy: moto must know it.
pytestmark = pytest.mark.iam_managed_policies


@pytest.fixture
def latency_urls() -> Iterator[dict[str, str]]:
    """ap-northeast-1 answers first, eu-west-1 next, us-east-1 last; us-west-2 not at all."""
    delays = {"ap-northeast-1": 0.0, "eu-west-1": 0.08, "us-east-1": 0.3}
    servers = {region: ping_server(d) for region, d in delays.items()}
    try:
        urls = {r: f"http://127.0.0.1:{s.server_address[1]}/ping" for r, s in servers.items()}
        urls["us-west-2"] = f"http://127.0.0.1:{free_port()}/ping"
        yield urls
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()


class NoGpuOffersProxy(Ec2Proxy):
    """EC2 in front of moto that offers no instance type at all in `region` (as for an account
    whose region lacks the types, or is not opted in); every other request goes to moto."""

    def __init__(self, upstream: str, region: str) -> None:
        super().__init__(upstream)
        self.no_offers_region = region

    def answer(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], bytes] | None:
        answered = super().answer(method, path, headers, raw)
        last = self.seen[-1]
        if last.target == "DescribeInstanceTypeOfferings" and last.region == self.no_offers_region:
            xml = (
                '<?xml version="1.0" encoding="UTF-8"?>'
                '<DescribeInstanceTypeOfferingsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
                "<requestId>req-1</requestId><instanceTypeOfferingSet/>"
                "</DescribeInstanceTypeOfferingsResponse>"
            )
            return 200, {"Content-Type": "text/xml;charset=UTF-8"}, xml.encode()
        return answered


def _statuses(report: account_setup.SetupReport) -> dict[str, str]:
    return {s.name: s.status for s in report.steps}


def test_fresh_account_with_gpu_quota_is_ready_to_render(account, tmp_path: Path) -> None:
    account.quotas.set_quota(G_ON_DEMAND, 8)
    lines: list[str] = []
    report = account_setup.run_setup(account.settings, tmp_path, region="us-east-1", progress=lines.append)

    assert report.ready is True
    assert report.summary().splitlines()[0] == "Ready to render"
    assert _statuses(report) == {
        account_setup.KEYS: "done",
        account_setup.REGION: "done",
        account_setup.BUCKET: "done",
        account_setup.FIREWALL: "done",
        account_setup.IMAGE: "done",
        account_setup.QUOTA: "done",
        account_setup.BATCH: "done",
        account_setup.BUDGET: "offered",
        account_setup.JOB_MAIL: "offered",
    }
    assert report.region == "us-east-1"
    assert report.alternatives == []
    assert (
        report.step(account_setup.QUOTA).message == "Your AWS account can start a g4dn.xlarge in us-east-1."
    )
    budget = report.step(account_setup.BUDGET)
    assert (budget.button, budget.required) == (account_setup.BUTTON_CREATE_BUDGET, False)

    # What setup made is really there, in the account.
    s3 = client(account.moto_settings, "s3")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [report.bucket]
    assert report.bucket.startswith("cloud-render-")
    groups = client(account.moto_settings, "ec2").describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [SECURITY_GROUP_NAME]}]
    )["SecurityGroups"]
    assert [g["GroupId"] for g in groups] == [report.security_group]
    assert groups[0]["IpPermissions"] == []
    assert report.image_id == account.images["al2023"]
    assert (tmp_path / "buckets.json").exists()

    # Every step reported through `progress`, and the last line says the outcome.
    for name in _statuses(report):
        assert any(line.startswith(f"{name}: ") for line in lines), name
    assert lines[-1] == "Ready to render"

    # Running setup again reuses what exists: same bucket, same group, still one of each.
    again = account_setup.run_setup(account.settings, tmp_path, region="us-east-1")
    assert (again.ready, again.bucket, again.security_group) == (True, report.bucket, report.security_group)
    assert len(s3.list_buckets()["Buckets"]) == 1


def test_the_bucket_set_up_made_is_the_one_jobs_use(account, tmp_path: Path) -> None:
    """One registry: Set Up (given the state folder) and a job (given the user folder) share it."""
    from cloud.job.cloud_steps import CloudSteps

    account.quotas.set_quota(G_ON_DEMAND, 8)
    report = account_setup.run_setup(account.settings, tmp_path / "state", region="us-east-1")
    assert report.bucket.startswith("cloud-render-")
    steps = CloudSteps(tmp_path)
    assert steps.ensure_bucket(account.settings, 14) == report.bucket
    assert steps.ensure_bucket(account.settings, 3) == report.bucket  # retention changes, bucket stays
    s3 = client(account.moto_settings, "s3")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [report.bucket]


def test_new_account_without_gpu_quota_lists_what_aws_still_needs(account, tmp_path: Path) -> None:
    report = account_setup.run_setup(account.settings, tmp_path, region="us-east-1")

    assert report.ready is False
    assert _statuses(report)[account_setup.BUCKET] == "done"
    assert _statuses(report)[account_setup.FIREWALL] == "done"
    quota = report.step(account_setup.QUOTA)
    assert quota is not None
    assert quota.status == "needs_action"
    assert quota.message == (
        "New AWS accounts may not start GPU machines until AWS raises a limit called a quota: "
        "yours allows 0 vCPUs of Running On-Demand G and VT instances in us-east-1, and a g4dn.xlarge needs 4."
    )
    assert quota.action.startswith("Request quota increase")
    assert quota.button == account_setup.BUTTON_REQUEST_QUOTA

    # Meanwhile: what the account can run now (32 standard vCPUs, no GPU), with hourly prices.
    assert report.alternatives
    assert all("(CPU, " in alt and "/h)" in alt for alt in report.alternatives)
    assert report.alternatives[0] == "c7i.4xlarge (CPU, 16 vCPUs, $0.714/h)"
    assert "c7i.2xlarge (CPU, 8 vCPUs, $0.357/h)" in report.alternatives

    summary = report.summary().splitlines()
    assert summary[0] == "Not ready to render yet. AWS still needs:"
    assert summary[1] == f"- {account_setup.QUOTA}: {quota.message} {quota.action}"
    assert summary[2].startswith("Meanwhile your account can render on: c7i.4xlarge (CPU")
    assert len(summary) == 3  # the offered budget is not something AWS needs

    # The button: one request for enough vCPUs, recorded by Service Quotas.
    words = account_setup.request_quota(account.settings, "us-east-1", "g4dn.xlarge")
    assert words == (
        "Asked AWS to raise Running On-Demand G and VT instances in us-east-1 to 8 vCPUs, "
        "enough for a g4dn.xlarge; the request is waiting for AWS."
    )
    assert [(r.region, r.quota_code, r.desired) for r in account.quotas.requests] == [
        ("us-east-1", G_ON_DEMAND, 8.0)
    ]

    # Setup run again shows the open request instead of offering a second one.
    later = account_setup.run_setup(account.settings, tmp_path, region="us-east-1")
    quota = later.step(account_setup.QUOTA)
    assert quota is not None
    assert quota.status == "needs_action"
    assert quota.message.endswith("You asked for 8 vCPUs: waiting for AWS.")
    assert quota.button == ""
    assert later.bucket == report.bucket
    assert len(account.quotas.requests) == 1

    # Once AWS raises the quota, the same setup ends ready.
    account.quotas.requests[0].status = "APPROVED"
    account.quotas.set_quota(G_ON_DEMAND, 8)
    assert (
        account_setup.run_setup(account.settings, tmp_path, region="us-east-1").summary().splitlines()[0]
        == "Ready to render"
    )
    assert account_setup.request_quota(account.settings, "us-east-1", "g4dn.xlarge") == (
        "No request needed: your account may already run a g4dn.xlarge in us-east-1 "
        "(8 vCPUs of Running On-Demand G and VT instances)."
    )


def test_root_keys_stop_setup_at_the_first_step(account, tmp_path: Path) -> None:
    lines: list[str] = []
    with AwsReplyServer() as sts:
        sts.reply = caller_identity("arn:aws:iam::123456789012:root")
        settings = replace(account.settings, service_endpoints=(("sts", sts.url),))
        report = account_setup.run_setup(settings, tmp_path, progress=lines.append)

    assert report.ready is False
    assert [(s.name, s.status) for s in report.steps] == [(account_setup.KEYS, "failed")]
    step = report.steps[0]
    assert step.message.startswith("These are your AWS account's root keys")
    assert "IAM > Users > Create user" in step.action
    assert step.button == account_setup.BUTTON_RETRY
    assert report.summary() == (
        f"Not ready to render yet. AWS still needs:\n- {account_setup.KEYS}: {step.message} {step.action}"
    )
    assert lines[-1] == "Not ready to render yet. AWS still needs:"
    # Nothing was created with root keys.
    assert client(account.moto_settings, "s3").list_buckets()["Buckets"] == []
    assert not (tmp_path / "buckets.json").exists()


def test_a_failing_step_is_plain_words_and_the_others_go_on(account, tmp_path: Path) -> None:
    account.quotas.set_quota(G_ON_DEMAND, 8)
    with AwsReplyServer() as s3:
        s3.reply = s3_error(
            "AccessDenied",
            "User: arn:aws:iam::123456789012:user/artist is not authorized to perform: s3:CreateBucket",
            403,
        )
        settings = replace(
            account.settings, service_endpoints=(*account.settings.service_endpoints, ("s3", s3.url))
        )
        report = account_setup.run_setup(settings, tmp_path, region="us-east-1")

    bucket = report.step(account_setup.BUCKET)
    assert bucket is not None
    assert bucket.status == "failed"
    assert bucket.message == (
        "Your AWS user is not allowed to use s3:CreateBucket while preparing your storage bucket."
    )
    assert bucket.action.startswith(
        "This is Set Up's work: attach the CloudRenderSetUp policy (Preferences > Copy Set Up Policy)"
    )
    assert bucket.button == account_setup.BUTTON_RETRY
    assert report.bucket == ""
    # The rest of the account was still set up, so the list of what is left is complete.
    statuses = _statuses(report)
    assert [statuses[n] for n in (account_setup.FIREWALL, account_setup.IMAGE, account_setup.QUOTA)] == [
        "done",
        "done",
        "done",
    ]
    assert report.ready is False
    assert report.summary().splitlines()[1:] == [
        f"- {account_setup.BUCKET}: {bucket.message} {bucket.action}"
    ]


def test_region_is_the_nearest_that_offers_gpus(
    account, latency_urls: dict[str, str], tmp_path: Path
) -> None:
    seed_deep_learning_amis(account.params, account.moto_settings, region="eu-west-1")
    account.quotas.set_quota(G_ON_DEMAND, 8, region="eu-west-1")
    with NoGpuOffersProxy(account.moto_url, region="ap-northeast-1") as proxy:
        assert isinstance(proxy, NoGpuOffersProxy)
        report = account_setup.run_setup(account.with_ec2(proxy), tmp_path, latency_urls=latency_urls)

    assert report.region == "eu-west-1"
    region_step = report.step(account_setup.REGION)
    assert region_step is not None and region_step.status == "done"
    assert region_step.message.startswith("Picked eu-west-1: the nearest region (")
    assert "from g4dn.xlarge at $0.587/h" in region_step.message
    assert region_step.message.endswith("Nearer ap-northeast-1 offered no GPU machines to your account.")
    assert report.summary().splitlines()[0] == "Ready to render"
    s3 = client(account.moto_settings.in_region("eu-west-1"), "s3")
    assert s3.get_bucket_location(Bucket=report.bucket)["LocationConstraint"] == "eu-west-1"


def test_no_reachable_region_is_a_failed_step(account, tmp_path: Path) -> None:
    urls = {"us-east-1": f"http://127.0.0.1:{free_port()}/ping"}
    report = account_setup.run_setup(account.settings, tmp_path, latency_urls=urls)
    assert [(s.name, s.status) for s in report.steps] == [
        (account_setup.KEYS, "done"),
        (account_setup.REGION, "failed"),
    ]
    step = report.steps[1]
    assert step.message == "Cloud Render could not reach any AWS region from this computer."
    assert step.action == "Check your internet connection (or firewall), then run Set up again."
    assert report.ready is False


def test_budget_is_created_when_asked(account, tmp_path: Path) -> None:
    account.quotas.set_quota(G_ON_DEMAND, 8)
    bad = account_setup.run_setup(
        account.settings, tmp_path, region="us-east-1", budget=(10, "not-an-address"), mail="not-an-address"
    )
    mail = bad.step(account_setup.JOB_MAIL)
    assert mail is not None
    assert (mail.status, mail.required) == ("failed", False)
    assert mail.message == "The e-mail address 'not-an-address' does not look right."
    step = bad.step(account_setup.BUDGET)
    assert step is not None
    assert (step.status, step.message) == (
        "failed",
        "The email address for budget alerts does not look right.",
    )
    assert step.action == "Enter the address where AWS should send the alert, like name@example.com."
    assert bad.ready is False  # asked for, so it counts

    report = account_setup.run_setup(
        account.settings,
        tmp_path,
        region="us-east-1",
        budget=(10, "artist@example.com"),
        mail="artist@example.com",
    )
    mail = report.step(account_setup.JOB_MAIL)
    assert mail is not None
    assert (mail.status, mail.message) == (
        "done",
        "AWS e-mails artist@example.com when a job ends or waits for your answer, even with Blender closed. "
        "AWS sends you a confirmation mail first: open its link, or no job e-mail arrives.",
    )
    topics = client(account.moto_settings, "sns").list_topics()["Topics"]
    assert [t["TopicArn"].rsplit(":", 1)[-1] for t in topics] == ["cloud-render-job-mail"]
    step = report.step(account_setup.BUDGET)
    assert step is not None
    assert step.status == "done"
    assert step.message == (
        "Monthly budget created: AWS emails artist@example.com when spending passes 80% of $10."
    )
    assert report.ready is True
    found = client(account.moto_settings, "budgets").describe_budgets(AccountId="123456789012")["Budgets"]
    assert [(b["BudgetName"], b["BudgetLimit"]["Amount"]) for b in found] == [(BUDGET_NAME, "10.00")]


@pytest.fixture
def recorder(account) -> Iterator[RecordingProxy]:
    """IAM, EC2 and Batch through a proxy that writes down each call (and can refuse some)."""
    with RecordingProxy(account.moto_url) as proxy:
        assert isinstance(proxy, RecordingProxy)
        yield proxy


def test_set_up_makes_the_batch_engine_once_and_a_submit_after_it_writes_nothing(
    account, recorder: RecordingProxy, tmp_path: Path
) -> None:
    account.quotas.set_quota(G_ON_DEMAND, 8)
    settings = recorder.route(account.settings)
    lines: list[str] = []
    report = account_setup.run_setup(
        settings, tmp_path, region="us-east-1", machines=2, progress=lines.append
    )

    assert report.ready is True
    step = report.step(account_setup.BATCH)
    assert step is not None and step.status == "done"
    env_name, queue_name = batch.names("g4dn.xlarge", False)
    assert step.message.startswith(
        f"Ready for jobs on many machines: {env_name} in us-east-1 (g4dn.xlarge, on-demand, up to 8 vCPUs; "
        "no machine runs while no job does). Made now: AWS Batch's service-linked role; the machines' role"
    )
    # Each part was said as it was being made, as Set Up says its other steps.
    for said in ("Preparing AWS Batch for jobs on many machines…", "Preparing the roles AWS Batch needs…"):
        assert said in lines
    assert any(line.startswith(f"{account_setup.BATCH}: done. ") for line in lines)

    # Every piece is in the account: nothing left to make by hand, nothing for a first job to pay.
    iam = client(account.moto_settings, "iam")
    assert iam.list_roles(PathPrefix=batch.SERVICE_LINKED_PATH)["Roles"]
    attached = iam.list_attached_role_policies(RoleName=batch.INSTANCE_ROLE)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [batch.ECS_FOR_EC2_POLICY]
    profile = iam.get_instance_profile(InstanceProfileName=batch.INSTANCE_ROLE)["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [batch.INSTANCE_ROLE]
    ec2 = client(account.moto_settings, "ec2")
    [template] = ec2.describe_launch_templates(LaunchTemplateNames=[batch.LAUNCH_TEMPLATE])["LaunchTemplates"]
    b = client(account.moto_settings, "batch")
    [env] = b.describe_compute_environments(computeEnvironments=[env_name])["computeEnvironments"]
    resources = env["computeResources"]
    # The quota (8 vCPUs) allows two g4dn.xlarge: the ceiling a later job of two finds in place.
    assert (resources["minvCpus"], resources["maxvCpus"], resources["instanceTypes"]) == (
        0,
        8,
        ["g4dn.xlarge"],
    )
    assert resources["launchTemplate"]["launchTemplateId"] == template["LaunchTemplateId"]
    assert [q["jobQueueName"] for q in b.describe_job_queues(jobQueues=[queue_name])["jobQueues"]] == [
        queue_name
    ]
    [definition] = b.describe_job_definitions(jobDefinitionName=batch.JOB_DEFINITION, status="ACTIVE")[
        "jobDefinitions"
    ]

    # A second Set Up reads and compares: not one write to IAM, EC2 or Batch.
    mark = recorder.mark()
    again = account_setup.run_setup(settings, tmp_path, region="us-east-1", machines=2)
    assert again.ready is True
    assert operations(recorder.writes(mark)) == []
    step = again.step(account_setup.BATCH)
    assert step is not None and step.message.endswith("Nothing needed changing.")

    # The first job on two machines after Set Up (the shape BatchEngine.launch asks for) creates
    # nothing either: the same queue, the same definition revision.
    mark = recorder.mark()
    engine = batch.ensure_engine(
        settings, "g4dn.xlarge", False, batch.vcpus_for(4, 2), pack_bytes=2 * 1024**3
    )
    assert operations(recorder.writes(mark)) == []
    assert (engine.compute_environment, engine.definition_arn) == (env_name, definition["jobDefinitionArn"])
    # Describe and compare only: six reads, one per piece, and none of IAM (a job holds only
    # the daily Render policy, which allows no IAM call).
    assert operations(recorder.calls[mark:]) == [
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeLaunchTemplates",
        "ec2:DescribeLaunchTemplateVersions",
        "batch:DescribeComputeEnvironments",
        "batch:DescribeJobQueues",
        "batch:DescribeJobDefinitions",
    ]

    # A job of another shape changes only what differs: more machines than the ceiling, a pack
    # larger than the disk. (moto 5.2.5 accepts UpdateComputeEnvironment but applies none of
    # its computeResources, so the call is what can be seen here, not its effect.)
    mark = recorder.mark()
    batch.ensure_engine(settings, "g4dn.xlarge", False, batch.vcpus_for(4, 4), pack_bytes=40 * 1024**3)
    assert operations(recorder.writes(mark)) == [
        "ec2:CreateLaunchTemplateVersion",
        "batch:UpdateComputeEnvironment",
    ]


@pytest.mark.parametrize(
    ("refused", "action"),
    [
        ("CreateServiceLinkedRole", "iam:CreateServiceLinkedRole"),
        ("AttachRolePolicy", "iam:AttachRolePolicy"),
        ("CreateJobQueue", "batch:CreateJobQueue"),
    ],
)
def test_a_refused_batch_permission_is_plain_words_and_the_next_set_up_finishes(
    account, recorder: RecordingProxy, tmp_path: Path, refused: str, action: str
) -> None:
    account.quotas.set_quota(G_ON_DEMAND, 8)
    settings = recorder.route(account.settings)
    recorder.refuse = {refused}
    report = account_setup.run_setup(settings, tmp_path, region="us-east-1")

    step = report.step(account_setup.BATCH)
    assert step is not None
    assert (step.status, step.button) == ("failed", account_setup.BUTTON_RETRY)
    assert (
        step.message
        == f"Your AWS user is not allowed to use {action} while preparing AWS Batch for many machines."
    )
    assert step.action.startswith("This is Set Up's work: attach the CloudRenderSetUp policy")
    assert step.action.endswith("Rendering on one machine does not need this.")
    statuses = _statuses(report)
    assert [statuses[n] for n in (account_setup.BUCKET, account_setup.FIREWALL, account_setup.QUOTA)] == [
        "done",
        "done",
        "done",
    ]
    assert report.summary().splitlines()[1:] == [f"- {account_setup.BATCH}: {step.message} {step.action}"]

    # Once the permission is there, the next Set Up finishes what the first left: one of each.
    recorder.refuse = set()
    again = account_setup.run_setup(settings, tmp_path, region="us-east-1")
    assert again.summary().splitlines()[0] == "Ready to render"
    b = client(account.moto_settings, "batch")
    _env, queue_name = batch.names("g4dn.xlarge", False)
    assert len(b.describe_compute_environments()["computeEnvironments"]) == 1
    assert [q["jobQueueName"] for q in b.describe_job_queues()["jobQueues"]] == [queue_name]
    iam = client(account.moto_settings, "iam")
    attached = iam.list_attached_role_policies(RoleName=batch.INSTANCE_ROLE)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [batch.ECS_FOR_EC2_POLICY]
    assert len(iam.list_roles(PathPrefix=batch.SERVICE_LINKED_PATH)["Roles"]) == 1
    assert len(client(account.moto_settings, "ec2").describe_launch_templates()["LaunchTemplates"]) == 1
