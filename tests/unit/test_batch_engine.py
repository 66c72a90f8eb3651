"""The many-machines engine's parts: what AWS Batch is set up with (moto over HTTP), frame claims
by conditional writes (moto honours If-None-Match on PutObject: 200 first, 412 after), and how
many machines fit a vCPU quota."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from cloud.aws import batch
from cloud.aws.fleet import machines_that_fit
from cloud.aws.quotas import CapacityReport
from cloud.aws.session import client
from cloud.machine import contract
from cloud.machine.batch_worker import Claims
from dev.batch_simulator import BatchSimulator


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchSimulator]:
    # Its own moto (managed policies known, Batch on the Docker stand-in); nothing is submitted.
    with BatchSimulator(tmp_path_factory.mktemp("batch-engine")) as simulator:
        yield simulator


def test_the_engine_is_made_once_scaled_to_zero_and_closed(sim):
    settings = sim.settings
    first = batch.ensure_engine(settings, "g4dn.xlarge", True, 16, 2.0, pack_bytes=3 * 1024**3)
    again = batch.ensure_engine(settings, "g4dn.xlarge", True, 16, 2.0, pack_bytes=3 * 1024**3)
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
    assert definition["timeout"]["attemptDurationSeconds"] == 7200
    rules = definition["retryStrategy"]["evaluateOnExit"]  # moto answers the actions in lower case
    assert (rules[0]["onStatusReason"], rules[0]["action"].upper()) == ("Host EC2*", "RETRY")
    assert rules[-1]["action"].upper() == "EXIT"

    ec2 = client(settings, "ec2")
    [template] = ec2.describe_launch_templates(LaunchTemplateNames=[batch.LAUNCH_TEMPLATE])["LaunchTemplates"]
    data = ec2.describe_launch_template_versions(LaunchTemplateId=template["LaunchTemplateId"])[
        "LaunchTemplateVersions"
    ][-1]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1  # containers cannot reach IMDS
    volume = data["BlockDeviceMappings"][0]["Ebs"]
    assert volume["Encrypted"] is True and volume["VolumeSize"] >= 46  # a 3 GB pack, twice, + 40

    iam = client(settings, "iam")
    attached = iam.list_attached_role_policies(RoleName=batch.INSTANCE_ROLE)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [batch.ECS_FOR_EC2_POLICY]
    assert iam.list_role_policies(RoleName=batch.INSTANCE_ROLE)["PolicyNames"] == []  # no inline policy


def test_a_frame_is_claimed_by_one_machine_only(sim):
    settings = sim.settings
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
