"""cloud.compute against moto over HTTP: image lookup, firewall, launch parameters, spot fallback,
terminate and orphans. What moto lacks (public DLAMI parameters, spot shortages, Amazon-owned
images) comes from the local servers in dev/quota_server.py and dev/ssm_seed.py."""

from __future__ import annotations

import base64
import gzip
import secrets
import time

import pytest

from cloud.aws import compute
from cloud.aws.session import client
from cloud.cost.caps import STOP_MARGIN_S
from cloud.errors import CloudError, ErrorCode
from cloud.job.cloud_steps import CloudSteps
from cloud.job.events import EventQueue, LogLines
from cloud.job.job_thread import JobRunner
from cloud.job.records import RecordStore, Stage, new_job_id
from dev.quota_server import AmazonImage
from dev.ssm_seed import DLAMI_PARAMETERS, seed_deep_learning_amis
from tests import quota_fixtures
from tests.factories import job_record

# A user-data script the size of the worker's bootstrap: over 14 KB plain, well under after gzip.
BIG_SCRIPT = "#!/bin/bash\nset -euo pipefail\n" + "".join(
    f"echo 'step {i}: fetching part {i} of the render worker' >> /var/log/cloud-render.log\n"
    for i in range(260)
)

# The fixtures these tests use (moto plus the quota, SSM and EC2 servers for what moto lacks).
account = quota_fixtures.account
quotas = quota_fixtures.quotas
public_params = quota_fixtures.public_params


def _instance(acct, instance_id):
    ec2 = client(acct.moto_settings, "ec2")
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


# --- the image ----------------------------------------------------------------------------------


def test_find_ami_reads_the_public_parameter(account):
    ami = compute.find_ami(account.settings)
    assert ami.image_id == account.images["al2023"]
    assert ami.source_param == DLAMI_PARAMETERS["al2023"]
    assert ami.name.startswith("Deep Learning Base OSS Nvidia Driver GPU AMI (Amazon Linux 2023)")

    ubuntu = compute.find_ami(account.settings, flavour="ubuntu-22.04")
    assert ubuntu.image_id == account.images["ubuntu-22.04"]
    assert ubuntu.source_param == DLAMI_PARAMETERS["ubuntu-22.04"]


def test_find_ami_falls_back_to_another_parameter(account):
    # eu-west-1 publishes only the Ubuntu 22.04 parameter here.
    ids = seed_deep_learning_amis(account.params, account.moto_settings, "eu-west-1", ("ubuntu-22.04",))
    ami = compute.find_ami(account.settings.in_region("eu-west-1"))
    assert ami.image_id == ids["ubuntu-22.04"]
    assert ami.source_param == DLAMI_PARAMETERS["ubuntu-22.04"]
    asked = [r.body["Name"] for r in account.params.seen if r.region == "eu-west-1"]
    assert asked[0] == DLAMI_PARAMETERS["al2023"]
    assert asked[-1] == DLAMI_PARAMETERS["ubuntu-22.04"]


def test_find_ami_falls_back_to_describe_images(account):
    proxy = account.ec2_proxy(
        amazon_images=(
            AmazonImage(
                "ami-0old0000000000001",
                "Deep Learning Base OSS Nvidia Driver GPU AMI (Amazon Linux 2023) 20250101",
                "2025-01-02T00:00:00.000Z",
            ),
            AmazonImage(
                "ami-0new0000000000002",
                "Deep Learning Base OSS Nvidia Driver GPU AMI (Amazon Linux 2023) 20251001",
                "2025-10-02T00:00:00.000Z",
            ),
            AmazonImage(
                "ami-0other00000000003",
                "Deep Learning OSS Nvidia Driver AMI GPU PyTorch 2.7 (Amazon Linux 2023) 20251101",
                "2025-11-02T00:00:00.000Z",
            ),
        )
    )
    ami = compute.find_ami(account.with_ec2(proxy).in_region("us-west-2"))
    assert ami.image_id == "ami-0new0000000000002"
    assert ami.source_param == "describe-images:" + compute.DLAMI_NAME_PATTERNS["al2023"]
    assert "DescribeImages" in proxy.actions()


def test_find_ami_without_any_image_names_the_region(account):
    with pytest.raises(CloudError) as caught:
        compute.find_ami(account.settings.in_region("eu-central-1"))
    err = caught.value
    assert err.message == (
        "AWS offers no GPU render machine image (Deep Learning AMI with NVIDIA drivers) in eu-central-1."
    )
    assert err.action.startswith("Choose another region in the Cloud Render panel")
    assert err.code == ErrorCode.AMI_NOT_FOUND


# --- the firewall -------------------------------------------------------------------------------


def test_security_group_is_created_once_with_no_inbound_rule(account):
    first = compute.ensure_security_group(account.settings)
    second = compute.ensure_security_group(account.settings)
    assert first == second

    ec2 = client(account.moto_settings, "ec2")
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [compute.SECURITY_GROUP_NAME]}]
    )["SecurityGroups"]
    assert [g["GroupId"] for g in groups] == [first]
    group = groups[0]
    assert group["IpPermissions"] == []
    assert any(p["IpProtocol"] == "-1" for p in group["IpPermissionsEgress"])
    assert {"Key": compute.TAG_MANAGED, "Value": "true"} in group["Tags"]

    # Someone opens SSH by hand: the next launch closes it again.
    ec2.authorize_security_group_ingress(
        GroupId=first,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    )
    assert compute.ensure_security_group(account.settings) == first
    assert ec2.describe_security_groups(GroupIds=[first])["SecurityGroups"][0]["IpPermissions"] == []


def test_security_group_per_region(account):
    east = compute.ensure_security_group(account.settings)
    west = compute.ensure_security_group(account.settings.in_region("us-west-2"))
    assert east != west


# --- launch -------------------------------------------------------------------------------------


def test_launch_sets_every_safety_parameter(account):
    assert len(BIG_SCRIPT.encode()) > compute.USER_DATA_GZIP_OVER
    proxy = account.ec2_proxy()  # forwards everything to moto and records the request
    result = compute.launch(
        account.with_ec2(proxy), job_id="job-123", instance_type="g4dn.xlarge", user_data=BIG_SCRIPT, spot=True,
        max_spot_price=0.25,
    )  # fmt: skip
    assert result.spot is True
    assert result.fell_back_to_on_demand is False

    ec2 = client(account.moto_settings, "ec2")
    inst = _instance(account, result.instance_id)
    assert inst["ImageId"] == account.images["al2023"]
    assert inst["InstanceType"] == "g4dn.xlarge"
    assert inst["InstanceLifecycle"] == "spot"
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    assert inst["MetadataOptions"]["HttpEndpoint"] == "enabled"
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert tags == {
        "cloud-render:job": "job-123",
        "Name": "cloud-render job-123",
        "cloud-render:managed": "true",
    }
    assert [g["GroupId"] for g in inst["SecurityGroups"]] == [compute.ensure_security_group(account.settings)]

    sent = base64.b64decode(
        ec2.describe_instance_attribute(InstanceId=result.instance_id, Attribute="userData")["UserData"][
            "Value"
        ]
    )
    assert sent[:2] == b"\x1f\x8b"  # gzip'd
    assert len(sent) <= compute.USER_DATA_LIMIT
    assert gzip.decompress(sent).decode() == BIG_SCRIPT
    shutdown = ec2.describe_instance_attribute(
        InstanceId=result.instance_id, Attribute="instanceInitiatedShutdownBehavior"
    )
    assert shutdown["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"

    mapping = inst["BlockDeviceMappings"][0]
    assert mapping["Ebs"]["DeleteOnTermination"] is True
    volume = ec2.describe_volumes(VolumeIds=[mapping["Ebs"]["VolumeId"]])["Volumes"][0]
    assert volume["Encrypted"] is True
    assert volume["VolumeType"] == "gp3"
    assert volume["Size"] == compute.ROOT_VOLUME_GIB
    assert {"Key": "cloud-render:job", "Value": "job-123"} in volume["Tags"]

    # moto does not echo the spot options back; the request as EC2 received it has them.
    run = next(r.body for r in proxy.seen if r.target == "RunInstances")
    assert run["InstanceMarketOptions.MarketType"] == "spot"
    assert run["InstanceMarketOptions.SpotOptions.SpotInstanceType"] == "one-time"
    assert run["InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior"] == "terminate"
    assert run["InstanceMarketOptions.SpotOptions.MaxPrice"] == "0.2500"
    assert run["BlockDeviceMapping.1.DeviceName"] == "/dev/sda1"  # moto's root device for registered images


def test_small_user_data_is_sent_plain_on_demand_on_a_given_image(account):
    script = "#!/bin/bash\necho hello\n"
    image = account.images["ubuntu-22.04"]
    result = compute.launch(
        account.settings,
        job_id="job-od",
        instance_type="c7i.2xlarge",
        user_data=script,
        spot=False,
        ami_id=image,
    )
    assert (result.spot, result.fell_back_to_on_demand) == (False, False)
    ec2 = client(account.moto_settings, "ec2")
    sent = ec2.describe_instance_attribute(InstanceId=result.instance_id, Attribute="userData")["UserData"][
        "Value"
    ]
    assert base64.b64decode(sent).decode() == script
    inst = _instance(account, result.instance_id)
    assert inst["ImageId"] == image
    assert "InstanceLifecycle" not in inst


def test_launch_on_an_image_that_is_gone(account):
    with pytest.raises(CloudError) as caught:
        compute.launch(
            account.settings, job_id="job-g", instance_type="g4dn.xlarge", user_data="#!/bin/bash\n", spot=False,
            ami_id="ami-0123456789abcdef0",
        )  # fmt: skip
    assert (
        caught.value.message == "The render machine image ami-0123456789abcdef0 does not exist in us-east-1."
    )
    assert caught.value.action == "Press Render again: Cloud Render will look up the newest image."


def test_user_data_over_16_kb_after_gzip_is_refused(account):
    noise = secrets.token_hex(20000)  # 40 KB of hex: gzip keeps about half, still over 16 KB
    with pytest.raises(CloudError) as caught:
        compute.launch(
            account.settings, job_id="job-big", instance_type="g4dn.xlarge", user_data=noise, spot=False
        )
    assert caught.value.code == ErrorCode.USER_DATA_TOO_LARGE
    assert caught.value.message.startswith("The start-up script for the render machine is too large")
    assert caught.value.action == "This is a Cloud Render bug: please send the job log to the developers."
    ec2 = client(account.moto_settings, "ec2")
    assert ec2.describe_instances()["Reservations"] == []


@pytest.mark.parametrize("spot_error", ["InsufficientInstanceCapacity", "SpotMaxPriceTooLow"])
def test_spot_shortage_falls_back_to_on_demand(account, spot_error):
    proxy = account.ec2_proxy(spot_error=spot_error)
    result = compute.launch(
        account.with_ec2(proxy),
        job_id="job-fb",
        instance_type="g5.xlarge",
        user_data="#!/bin/bash\n",
        spot=True,
    )
    assert result.spot is False
    assert result.fell_back_to_on_demand is True
    runs = [r.body for r in proxy.seen if r.target == "RunInstances"]
    assert "InstanceMarketOptions.MarketType" in runs[0]
    assert "InstanceMarketOptions.MarketType" not in runs[-1]
    inst = _instance(account, result.instance_id)
    assert "InstanceLifecycle" not in inst
    assert inst["State"]["Name"] in ("pending", "running")
    assert compute.find_job_instances(account.settings, "job-fb") == [result.instance_id]


def test_spot_refused_for_another_reason_does_not_fall_back(account):
    proxy = account.ec2_proxy(spot_error="UnauthorizedOperation")
    with pytest.raises(CloudError) as caught:
        compute.launch(
            account.with_ec2(proxy),
            job_id="job-x",
            instance_type="g5.xlarge",
            user_data="#!/bin/bash\n",
            spot=True,
        )
    assert caught.value.message.startswith("Your AWS user is not allowed to use ec2:RunInstances")
    assert caught.value.action.startswith(
        "Attach the CloudRenderRender policy (Preferences > Copy Render Policy)"
    )
    assert [r.target for r in proxy.seen].count("RunInstances") == 1
    assert compute.find_job_instances(account.settings, "job-x") == []


@pytest.mark.parametrize(
    ("spot_error", "on_demand_error", "message", "action"),
    [
        (
            "InsufficientInstanceCapacity",
            "InsufficientInstanceCapacity",
            "AWS has no free g5.xlarge machines in us-east-1 right now.",
            "Try another region or instance type, or try again in a few minutes.",
        ),
        (
            "SpotMaxPriceTooLow",
            "VcpuLimitExceeded",
            "Your AWS account is not allowed to start more g5.xlarge machines in us-east-1 yet (its quota is too low).",
            "Press 'Request quota increase' in the Cloud Render panel; AWS usually answers within a day.",
        ),
    ],
)
def test_when_on_demand_fails_too_the_artist_is_told_why(
    account, spot_error, on_demand_error, message, action
):
    proxy = account.ec2_proxy(spot_error=spot_error, on_demand_error=on_demand_error)
    with pytest.raises(CloudError) as caught:
        compute.launch(
            account.with_ec2(proxy),
            job_id="job-n",
            instance_type="g5.xlarge",
            user_data="#!/bin/bash\n",
            spot=True,
        )
    assert caught.value.message == message
    assert caught.value.action == action
    assert on_demand_error in caught.value.detail
    assert compute.find_job_instances(account.settings, "job-n") == []


# --- watch, stop, clean up ----------------------------------------------------------------------


def test_describe_and_terminate_twice(account):
    launched = compute.launch(
        account.settings, job_id="job-t", instance_type="g4dn.xlarge", user_data="#!/bin/bash\n", spot=True
    )
    state = compute.describe(account.settings, launched.instance_id)
    assert state.state in ("pending", "running")
    assert state.instance_type == "g4dn.xlarge"
    assert state.spot is True
    assert state.launch_time is not None

    compute.terminate(account.settings, launched.instance_id)
    compute.terminate(account.settings, launched.instance_id)  # already terminated: fine
    compute.terminate(account.settings, "i-0123456789abcdef0")  # never existed: fine
    assert compute.describe(account.settings, launched.instance_id).state in ("shutting-down", "terminated")
    assert compute.find_job_instances(account.settings, "job-t") == []
    assert compute.describe(account.settings, "i-0123456789abcdef0").state == "not-found"


def test_find_orphans_lists_our_machines_whose_job_is_over(account):
    settings = account.settings
    live = compute.launch(
        settings, job_id="job-live", instance_type="g4dn.xlarge", user_data="#!/bin/bash\n", spot=False
    )
    done = compute.launch(
        settings, job_id="job-done", instance_type="g4dn.xlarge", user_data="#!/bin/bash\n", spot=False
    )
    gone = compute.launch(
        settings, job_id="job-gone", instance_type="g4dn.xlarge", user_data="#!/bin/bash\n", spot=False
    )
    compute.terminate(settings, gone.instance_id)

    ec2 = client(account.moto_settings, "ec2")
    image = account.images["al2023"]
    # A machine of ours that lost its job tag, and somebody else's machine without our tags.
    untagged = ec2.run_instances(
        ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "cloud-render:managed", "Value": "true"}]}],
    )["Instances"][0]["InstanceId"]  # fmt: skip
    ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1)

    asked: list[str] = []

    def is_job_live(job_id: str) -> bool:
        asked.append(job_id)
        return job_id == "job-live"

    orphans = compute.find_orphans(settings, is_job_live)
    assert {o.instance_id for o in orphans} == {done.instance_id, untagged}
    by_id = {o.instance_id: o for o in orphans}
    assert by_id[done.instance_id].job_id == "job-done"
    assert by_id[done.instance_id].region == "us-east-1"
    assert by_id[done.instance_id].launch_time is not None
    assert by_id[untagged].job_id == ""
    assert sorted(asked) == ["job-done", "job-live"]
    assert live.instance_id not in by_id

    # Across regions: a forgotten machine in us-west-2 shows up with its region.
    seed_deep_learning_amis(account.params, account.moto_settings, "us-west-2", ("al2023",))
    west = compute.launch(
        settings.in_region("us-west-2"), job_id="job-west", instance_type="g4dn.xlarge",
        user_data="#!/bin/bash\n", spot=False,
    )  # fmt: skip
    everywhere = compute.find_orphans_in(settings, ["us-east-1", "us-west-2"], is_job_live)
    assert {(o.instance_id, o.region) for o in everywhere} == {
        (done.instance_id, "us-east-1"), (untagged, "us-east-1"), (west.instance_id, "us-west-2"),
    }  # fmt: skip


def test_a_launch_whose_reply_is_lost_still_follows_its_machine_and_leaves_no_other(account):
    # EC2 starts the machine but the answer never arrives; botocore tries again (a second
    # machine). The job's tag finds both: one is followed, the other terminated.
    proxy = account.ec2_proxy(lose_run_replies=True)
    result = compute.launch(
        account.with_ec2(proxy), job_id="job-lost", instance_type="c5.2xlarge", user_data="#!/bin/sh\n",
        spot=False,
    )  # fmt: skip
    assert proxy.actions().count("RunInstances") >= 1
    ec2 = client(account.moto_settings, "ec2")
    reservations = ec2.describe_instances(Filters=[{"Name": "tag:cloud-render:job", "Values": ["job-lost"]}])
    states = {
        i["InstanceId"]: i["State"]["Name"] for r in reservations["Reservations"] for i in r["Instances"]
    }
    assert states[result.instance_id] in {"pending", "running"}
    others = [state for iid, state in states.items() if iid != result.instance_id]
    assert all(state in {"shutting-down", "terminated"} for state in others)
    assert compute.find_job_instances(account.settings, "job-lost") == [result.instance_id]


def test_a_machine_of_the_job_still_running_when_it_ends_is_stopped_and_said(account, tmp_path):
    """As any job ends, the machines with its tag are looked up: one still running (a second
    machine from a launch whose reply was lost, say) is terminated and the log says so."""
    settings = account.settings
    job_id = new_job_id()
    followed = compute.launch(
        settings, job_id=job_id, instance_type="g4dn.xlarge", user_data="#!/bin/bash\n", spot=False
    )
    extra = compute.launch(
        settings, job_id=job_id, instance_type="g4dn.xlarge", user_data="#!/bin/bash\n", spot=False
    )
    record = job_record(
        tmp_path / "out",
        job_id=job_id,
        instance_type="g4dn.xlarge",
        launch_id=followed.instance_id,
        launched_at=time.time(),
        stage=Stage.RENDERING.value,
    )
    events = EventQueue()
    runner = JobRunner(record, settings, events, RecordStore(tmp_path / "jobs"), CloudSteps(tmp_path))
    runner.left_running_grace_s = 1.0
    compute.terminate(settings, followed.instance_id)  # the followed one ended, as on any ending
    runner.end(Stage.DONE, "1 frame rendered.", "")

    log = [
        line for e in events.drain(budget_s=1.0, limit=1000) if isinstance(e, LogLines) for line in e.lines
    ]
    assert f"[cloud-render] Still running after the job ended: {extra.instance_id}. Stopping them." in log
    assert "[cloud-render] Checked: no machine of this job is still running." in log
    assert compute.find_job_instances(settings, job_id) == []
    assert record.stage == Stage.DONE.value

    # A job that ends with nothing left says so, and nothing more.
    again = JobRunner(record, settings, events, RecordStore(tmp_path / "jobs"), CloudSteps(tmp_path))
    again.end(Stage.DONE, "1 frame rendered.", "")
    log = [
        line for e in events.drain(budget_s=1.0, limit=1000) if isinstance(e, LogLines) for line in e.lines
    ]
    assert log == ["[cloud-render] Checked: no machine of this job is still running."]


def test_one_machine_is_stopped_before_the_stop_could_take_it_past_its_cap(account, tmp_path):
    """The job thread stops its machine by the one cap rule (`caps.cap_reached`): half a stop
    before Max Cost is already too close, since terminating bills up to a minute more. Before,
    one machine was stopped only once its cost had reached the cap, and overran it by the
    time the stop took."""
    settings = account.settings
    job_id = new_job_id()
    launched = compute.launch(
        settings, job_id=job_id, instance_type="g4dn.xlarge", user_data="#!/bin/bash\n", spot=False
    )
    bucket = "cloud-render-cap-test"
    client(settings, "s3").create_bucket(Bucket=bucket)
    price, cap = 3.6, 2.0  # $0.001 a second: the cap is 2,000 s of machine
    running = 2000 - STOP_MARGIN_S / 2
    record = job_record(
        tmp_path / "out",
        job_id=job_id,
        instance_type="g4dn.xlarge",
        launch_id=launched.instance_id,
        bucket=bucket,
        launched_at=time.time() - running,
        price_per_hour=price,
        max_cost=cap,
        max_hours=10.0,
        stage=Stage.RENDERING.value,
    )
    runner = JobRunner(record, settings, EventQueue(), RecordStore(tmp_path / "jobs"), CloudSteps(tmp_path))
    runner.left_running_grace_s = 5.0
    runner.start()
    runner.join(120)
    assert not runner.is_alive()
    assert record.stage == Stage.CAPPED.value, record.message
    assert record.cost_so_far < cap  # stopped before the cap was passed...
    assert record.cost_so_far + STOP_MARGIN_S * price / 3600 > cap  # ...because the stop would pass it
    assert compute.describe(settings, launched.instance_id).state in ("shutting-down", "terminated")
