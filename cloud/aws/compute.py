"""EC2 for render machines: the GPU image, a closed firewall, launch, watch, terminate, orphans.

Every instance is started so that it cannot bill forever or be reached from outside: shutdown
behaviour `terminate`, IMDSv2 only, an encrypted root volume deleted with it, a security group
with no inbound rule, and tags (`cloud-render:job`, `cloud-render:managed`) that let
`find_orphans` find whatever a crash left running.
"""

from __future__ import annotations

import contextlib
import gzip
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import boto3
from botocore.exceptions import ClientError

from ..errors import CloudError, ErrorCode
from .error_rules import error_code, translate
from .session import AwsSettings, client, make_session

TAG_JOB = "cloud-render:job"
TAG_MANAGED = "cloud-render:managed"
SECURITY_GROUP_NAME = "cloud-render-no-inbound"
ROOT_VOLUME_GIB = 75  # what the Deep Learning Base AMI needs; larger if the image's own snapshot is

# AWS limits user-data to 16 KB before base64; cloud-init unpacks gzip'd user-data by itself.
USER_DATA_LIMIT = 16 * 1024
USER_DATA_GZIP_OVER = 14 * 1024

# Public SSM parameters AWS keeps pointing at the newest Deep Learning Base OSS NVIDIA Driver
# GPU AMI (x86_64), and the image names to search for when a parameter is missing.
DLAMI_PARAMETERS = {
    "al2023": "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id",
    "ubuntu-24.04": "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id",
    "ubuntu-22.04": "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
}
DLAMI_NAME_PATTERNS = {
    "al2023": "Deep Learning Base OSS Nvidia Driver GPU AMI (Amazon Linux 2023) *",
    "ubuntu-24.04": "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 24.04) *",
    "ubuntu-22.04": "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *",
}

# RunInstances errors that mean "no spot machine now", where an on-demand one may still start.
SPOT_SHORTAGE = {
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientSpotCapacity",
    "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded",
    "capacity-not-available",
}

LIVE_STATES = ("pending", "running")
NOT_DONE_STATES = ("pending", "running", "stopping", "stopped")


@dataclass(frozen=True)
class Ami:
    """The image a render machine boots: id, AWS's name for it, and where we found it."""

    image_id: str
    name: str
    source_param: str  # the SSM parameter, or "describe-images:<name pattern>"
    root_device_name: str = "/dev/xvda"
    root_snapshot_gib: int = 0  # size of the image's root snapshot, 0 when AWS does not say


def _ami(image: dict[str, Any], source: str) -> Ami:
    root = image.get("RootDeviceName") or "/dev/xvda"
    size = next(
        (
            int(m.get("Ebs", {}).get("VolumeSize") or 0)
            for m in image.get("BlockDeviceMappings", [])
            if m.get("DeviceName") == root
        ),
        0,
    )
    return Ami(str(image["ImageId"]), str(image.get("Name", "")), source, root, size)


@dataclass(frozen=True)
class LaunchResult:
    instance_id: str
    spot: bool
    fell_back_to_on_demand: bool


@dataclass(frozen=True)
class InstanceState:
    """What EC2 says about one machine; state 'not-found' means EC2 does not (or no longer) know it."""

    state: str
    launch_time: datetime | None
    instance_type: str
    spot: bool
    reason: str = ""  # e.g. "Server.SpotInstanceTermination" when AWS took a spot machine back


@dataclass(frozen=True)
class Orphan:
    """A machine of ours that still runs although its job is over (or unknown)."""

    instance_id: str
    job_id: str
    region: str
    launch_time: datetime | None


# --- the image ----------------------------------------------------------------------------------


def _flavour_order(flavour: str) -> list[str]:
    if flavour not in DLAMI_PARAMETERS:
        raise ValueError(f"unknown AMI flavour {flavour!r}; one of {sorted(DLAMI_PARAMETERS)}")
    return [flavour, *(f for f in DLAMI_PARAMETERS if f != flavour)]


def _image(ec2: Any, image_id: str) -> dict[str, Any] | None:
    try:
        images = ec2.describe_images(ImageIds=[image_id]).get("Images", [])
    except ClientError as exc:
        if error_code(exc).startswith("InvalidAMIID"):
            return None
        raise
    return images[0] if images else None


def find_ami(
    settings: AwsSettings, flavour: str = "al2023", *, session: boto3.session.Session | None = None
) -> Ami:
    """The newest Deep Learning Base OSS NVIDIA Driver GPU AMI (x86_64) in the settings' region.

    Tries the public SSM parameter for `flavour`, then those of the other flavours, then
    DescribeImages for Amazon-owned images by name, so a region that lacks one parameter
    still works; raises a CloudError naming the region when there is none at all.
    """
    region = settings.region
    order = _flavour_order(flavour)
    session = session or make_session(settings)
    ssm = client(settings, "ssm", session)
    ec2 = client(settings, "ec2", session)
    try:
        for name in order:
            param = DLAMI_PARAMETERS[name]
            try:
                image_id = ssm.get_parameter(Name=param)["Parameter"]["Value"]
            except ClientError as exc:
                if error_code(exc) in ("ParameterNotFound", "AccessDeniedException"):
                    continue
                raise
            image = _image(ec2, image_id)
            if image is not None:
                return _ami(image, param)
        for name in order:
            pattern = DLAMI_NAME_PATTERNS[name]
            images = ec2.describe_images(
                Owners=["amazon"],
                Filters=[
                    {"Name": "name", "Values": [pattern]},
                    {"Name": "architecture", "Values": ["x86_64"]},
                    {"Name": "state", "Values": ["available"]},
                ],
            ).get("Images", [])
            if images:
                newest = max(images, key=lambda i: i.get("CreationDate", ""))
                return _ami(newest, f"describe-images:{pattern}")
    except CloudError:
        raise
    except Exception as exc:
        raise translate(exc, "looking for the render machine image", region=region) from exc
    raise CloudError(
        f"AWS offers no GPU render machine image (Deep Learning AMI with NVIDIA drivers) in {region}.",
        "Choose another region in the Cloud Render panel, for example us-east-1, us-west-2 or eu-west-1.",
        code=ErrorCode.AMI_NOT_FOUND,
        detail=f"no SSM parameter of {order} and no image named like {DLAMI_NAME_PATTERNS[flavour]!r} in {region}",
    )


# --- the firewall -------------------------------------------------------------------------------


NO_DEFAULT_VPC = {"VPCIdNotSpecified", "InvalidVpcID.NotFound", "MissingInput"}


def _no_default_vpc(region: str, exc: Exception) -> CloudError:
    return CloudError(
        f"Your AWS account has no default network (VPC) in {region}, which render machines need.",
        "In the AWS console open VPC > Your VPCs > Actions > Create default VPC, or choose another region.",
        code=ErrorCode.NO_DEFAULT_VPC,
        detail=f"{error_code(exc)}: {exc}",
    )


def _our_group(ec2: Any) -> dict[str, Any] | None:
    groups = ec2.describe_security_groups(
        Filters=[
            {"Name": "group-name", "Values": [SECURITY_GROUP_NAME]},
            {"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]},
        ]
    ).get("SecurityGroups", [])
    return groups[0] if groups else None


def ensure_security_group(settings: AwsSettings, *, session: boto3.session.Session | None = None) -> str:
    """The id of our security group in the default VPC, made once per region and reused.

    It has no inbound rule (render machines accept no connection) and AWS's default outbound
    rule; an inbound rule someone added by hand is revoked here, before any machine uses it.
    """
    region = settings.region
    ec2 = client(settings, "ec2", session)
    try:
        group = _our_group(ec2)
        if group is None:
            try:
                # No VpcId: AWS puts it in the default VPC, where RunInstances without a subnet starts machines.
                ec2.create_security_group(
                    GroupName=SECURITY_GROUP_NAME,
                    Description="Cloud Render machines: no inbound connections, outbound only",
                    TagSpecifications=[
                        {
                            "ResourceType": "security-group",
                            "Tags": [
                                {"Key": TAG_MANAGED, "Value": "true"},
                                {"Key": "Name", "Value": "cloud-render"},
                            ],
                        }
                    ],
                )
            except ClientError as exc:
                if error_code(exc) in NO_DEFAULT_VPC:
                    raise _no_default_vpc(region, exc) from exc
                if error_code(exc) != "InvalidGroup.Duplicate":  # another thread made it first
                    raise
            group = _our_group(ec2)
            if group is None:
                raise CloudError(
                    f"Cloud Render could not create its firewall rules (security group) in {region}.",
                    "Try again in a minute.",
                    code=ErrorCode.SECURITY_GROUP_MISSING,
                )
        if group.get("IpPermissions"):
            ec2.revoke_security_group_ingress(GroupId=group["GroupId"], IpPermissions=group["IpPermissions"])
        return str(group["GroupId"])
    except CloudError:
        raise
    except Exception as exc:
        raise translate(exc, "preparing the render machine's firewall", region=region) from exc


# --- launch -------------------------------------------------------------------------------------


def encode_user_data(text: str) -> bytes:
    """The user-data bytes to send: gzip'd when large (cloud-init unpacks it), refused over 16 KB."""
    raw = text.encode("utf-8")
    data = gzip.compress(raw, compresslevel=9, mtime=0) if len(raw) > USER_DATA_GZIP_OVER else raw
    if len(data) > USER_DATA_LIMIT:
        raise CloudError(
            f"The start-up script for the render machine is too large ({len(data) // 1024} KB; AWS allows 16 KB).",
            "This is a Cloud Render bug: please send the job log to the developers.",
            code=ErrorCode.USER_DATA_TOO_LARGE,
            detail=f"{len(raw)} bytes plain, {len(data)} bytes sent",
        )
    return data


def _tags(job_id: str) -> list[dict[str, str]]:
    return [
        {"Key": TAG_JOB, "Value": job_id},
        {"Key": "Name", "Value": f"cloud-render {job_id}"},
        {"Key": TAG_MANAGED, "Value": "true"},
    ]


def _launch_error(exc: Exception, instance_type: str, region: str, spot: bool) -> CloudError:
    code = error_code(exc)
    detail = f"{code}: {exc}"
    if code == "PendingVerification":
        return CloudError(
            "AWS is still checking your new account and does not let it start machines yet.",
            "Wait for AWS's confirmation email (usually within a few hours), then press Render again.",
            code=ErrorCode.PENDING_VERIFICATION,
            detail=detail,
        )
    if code == "Unsupported" or (code == "InvalidParameterValue" and "instance type" in str(exc).lower()):
        return CloudError(
            f"AWS does not offer {instance_type} machines in {region}.",
            "Choose another machine type or region in the Cloud Render panel.",
            code=ErrorCode.TYPE_NOT_OFFERED,
            detail=detail,
        )
    if code in NO_DEFAULT_VPC:
        return _no_default_vpc(region, exc)
    if code.startswith("InvalidAMIID"):
        return CloudError(
            f"The render machine image is not available in {region} any more.",
            "Press Render again: Cloud Render will look up the newest image.",
            code=ErrorCode.AMI_GONE,
            detail=detail,
        )
    return translate(
        exc, "starting the render machine", region=region, instance_type=instance_type, spot=spot
    )


def launch(
    settings: AwsSettings,
    *,
    job_id: str,
    instance_type: str,
    user_data: str,
    spot: bool,
    ami_id: str | None = None,
    max_spot_price: float | None = None,
) -> LaunchResult:
    """Start one render machine for `job_id`; a spot request short of capacity falls back to on-demand."""
    region = settings.region
    data = encode_user_data(user_data)
    session = make_session(settings)
    try:
        ec2 = client(settings, "ec2", session)
        if ami_id is None:
            ami = find_ami(settings, session=session)
        else:
            image = _image(ec2, ami_id)
            if image is None:
                raise CloudError(
                    f"The render machine image {ami_id} does not exist in {region}.",
                    "Press Render again: Cloud Render will look up the newest image.",
                    code=ErrorCode.AMI_GONE,
                )
            ami = _ami(image, "given")
        group_id = ensure_security_group(settings, session=session)
    except CloudError:
        raise
    except Exception as exc:
        raise translate(exc, "preparing the render machine", region=region) from exc

    params: dict[str, Any] = {
        "ImageId": ami.image_id,
        "InstanceType": instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "UserData": data,
        "InstanceInitiatedShutdownBehavior": "terminate",
        "MetadataOptions": {
            "HttpTokens": "required",
            "HttpEndpoint": "enabled",
            "HttpPutResponseHopLimit": 1,
        },
        "BlockDeviceMappings": [
            {
                "DeviceName": ami.root_device_name,
                "Ebs": {
                    "VolumeSize": max(ROOT_VOLUME_GIB, ami.root_snapshot_gib),
                    "VolumeType": "gp3",
                    "Encrypted": True,
                    "DeleteOnTermination": True,
                },
            }
        ],
        "SecurityGroupIds": [group_id],
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": _tags(job_id)},
            {"ResourceType": "volume", "Tags": _tags(job_id)},
        ],
    }

    # A capacity error is not worth many retries; the ClientToken makes the one retry safe.
    ec2 = client(_few_retries(settings), "ec2", session)
    if spot:
        spot_options: dict[str, Any] = {
            "SpotInstanceType": "one-time",
            "InstanceInterruptionBehavior": "terminate",
        }
        if max_spot_price is not None:
            spot_options["MaxPrice"] = f"{max_spot_price:.4f}"
        try:
            return LaunchResult(
                _run(
                    ec2,
                    {**params, "InstanceMarketOptions": {"MarketType": "spot", "SpotOptions": spot_options}},
                ),
                spot=True,
                fell_back_to_on_demand=False,
            )
        except ClientError as exc:
            if error_code(exc) not in SPOT_SHORTAGE:
                raise _launch_error(exc, instance_type, region, spot=True) from exc
        except Exception as exc:
            adopted = _adopt_lost_launch(settings, job_id, session)
            if adopted:
                return LaunchResult(adopted, spot=True, fell_back_to_on_demand=False)
            raise _launch_error(exc, instance_type, region, spot=True) from exc
    try:
        return LaunchResult(_run(ec2, params), spot=False, fell_back_to_on_demand=spot)
    except Exception as exc:
        error = _launch_error(exc, instance_type, region, spot=False)
        adopted = _adopt_lost_launch(settings, job_id, session)
        if adopted:  # EC2 started it, but the answer never came back: follow it, never lose it
            return LaunchResult(adopted, spot=False, fell_back_to_on_demand=spot)
        raise error from exc


def _adopt_lost_launch(settings: AwsSettings, job_id: str, session: boto3.session.Session) -> str:
    """After a failed launch call: the job's machine if EC2 started one anyway ("" if none).

    A launch whose reply was lost may still have started a machine (several, when botocore
    retried). The job's tag finds them: the first is kept and followed, any other terminated,
    so nothing runs untracked.
    """
    try:
        found = sorted(find_job_instances(settings, job_id, session=session))
    except (CloudError, ClientError):
        return ""
    for extra in found[1:]:
        with contextlib.suppress(CloudError):
            terminate(settings, extra, session=session)
    return found[0] if found else ""


def _few_retries(settings: AwsSettings) -> AwsSettings:
    return replace(settings, max_attempts=min(settings.max_attempts, 2))


def _run(ec2: Any, params: dict[str, Any]) -> str:
    response = ec2.run_instances(**params, ClientToken=uuid.uuid4().hex)
    return str(response["Instances"][0]["InstanceId"])


# --- watch, stop, clean up ----------------------------------------------------------------------


def describe(
    settings: AwsSettings, instance_id: str, *, session: boto3.session.Session | None = None
) -> InstanceState:
    """The machine's state; 'not-found' right after launch can be EC2 catching up, later it means gone.

    Pollers should pass one `session` for all their calls: making a session costs ~0.1 s of CPU.
    """
    ec2 = client(settings, "ec2", session)
    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id]).get("Reservations", [])
    except ClientError as exc:
        if error_code(exc) == "InvalidInstanceID.NotFound":
            return InstanceState("not-found", None, "", False)
        raise translate(exc, "checking the render machine", region=settings.region) from exc
    except Exception as exc:
        raise translate(exc, "checking the render machine", region=settings.region) from exc
    for reservation in reservations:
        for inst in reservation.get("Instances", []):
            return InstanceState(
                state=inst["State"]["Name"],
                launch_time=inst.get("LaunchTime"),
                instance_type=inst.get("InstanceType", ""),
                spot=inst.get("InstanceLifecycle") == "spot",
                reason=(inst.get("StateReason") or {}).get("Code", ""),
            )
    return InstanceState("not-found", None, "", False)


def terminate(
    settings: AwsSettings, instance_id: str, *, session: boto3.session.Session | None = None
) -> None:
    """Terminate the machine; one that is already gone or terminated is fine.

    Under the Render policy, TerminateInstances is allowed only on instances carrying our tag, so
    for an id EC2 no longer knows (gone an hour after it ended) AWS answers UnauthorizedOperation,
    not NotFound: the tag condition has nothing to match. That is only an error while the
    instance still runs."""
    ec2 = client(settings, "ec2", session)
    try:
        ec2.terminate_instances(InstanceIds=[instance_id])
    except ClientError as exc:
        if error_code(exc) == "InvalidInstanceID.NotFound":
            return
        if error_code(exc) == "UnauthorizedOperation" and describe(
            settings, instance_id, session=session
        ).state in ("not-found", "terminated", "shutting-down"):
            return
        raise translate(exc, "stopping the render machine", region=settings.region) from exc
    except Exception as exc:
        raise translate(exc, "stopping the render machine", region=settings.region) from exc


def _our_instances(
    settings: AwsSettings, filters: list[dict[str, Any]], session: boto3.session.Session | None
) -> Iterator[dict[str, Any]]:
    ec2 = client(settings, "ec2", session)
    try:
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]}, *filters]
        )
        for page in pages:
            for reservation in page.get("Reservations", []):
                yield from reservation.get("Instances", [])
    except Exception as exc:
        raise translate(exc, "listing render machines", region=settings.region) from exc


def _tag(inst: dict[str, Any], key: str) -> str:
    return next((t["Value"] for t in inst.get("Tags", []) if t["Key"] == key), "")


def find_job_instances(
    settings: AwsSettings, job_id: str, *, session: boto3.session.Session | None = None
) -> list[str]:
    """Ids of the job's machines that are not terminated or shutting down (normally zero or one)."""
    found = _our_instances(
        settings,
        [
            {"Name": f"tag:{TAG_JOB}", "Values": [job_id]},
            {"Name": "instance-state-name", "Values": list(NOT_DONE_STATES)},
        ],
        session,
    )
    return [inst["InstanceId"] for inst in found]


def find_orphans(
    settings: AwsSettings, is_job_live: Callable[[str], bool], *, session: boto3.session.Session | None = None
) -> list[Orphan]:
    """Pending or running machines tagged by us whose job is finished, failed or unknown.

    `is_job_live(job_id)` answers from the local job records; an instance without a job tag
    counts as an orphan too.
    """
    orphans: list[Orphan] = []
    live_states = [{"Name": "instance-state-name", "Values": list(LIVE_STATES)}]
    for inst in _our_instances(settings, live_states, session):
        job_id = _tag(inst, TAG_JOB)
        if job_id and is_job_live(job_id):
            continue
        orphans.append(Orphan(inst["InstanceId"], job_id, settings.region, inst.get("LaunchTime")))
    return orphans


def find_orphans_in(
    settings: AwsSettings, regions: list[str], is_job_live: Callable[[str], bool]
) -> list[Orphan]:
    """`find_orphans` over several regions (the artist may have rendered in more than one)."""
    session = make_session(settings)
    found: list[Orphan] = []
    for region in regions:
        found.extend(find_orphans(settings.in_region(region), is_job_live, session=session))
    return found
