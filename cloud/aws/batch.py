"""AWS Batch for jobs that outgrow one machine: the engine in a region, array jobs, their children.

Everything is made by the add-on, idempotently, named and tagged `cloud-render-*`:

- the ECS instance role and its instance profile, carrying only AWS's managed ECS-for-EC2
  policy (attached, never an inline policy); Batch's own service-linked role;
- a launch template: IMDSv2 with hop limit 1 (containers cannot reach the instance role),
  an encrypted root volume sized for the pack, our security group with no inbound rule;
- per instance type and pricing, a managed EC2 compute environment (minvCpus 0: it scales to
  zero) and its job queue; one job definition (a public image whose command fetches the boot
  script by presigned URL, as the EC2 user-data does; GPU, timeout, spot-loss retries).

Batch adds no charge of its own: machines cost what EC2 charges for them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ..errors import CloudError, ErrorCode
from .compute import TAG_JOB, TAG_MANAGED, ensure_security_group
from .error_rules import error_code, translate
from .session import AwsSettings, client

PREFIX = "cloud-render"
INSTANCE_ROLE = f"{PREFIX}-ecs-instance"
SERVICE_LINKED_PATH = "/aws-service-role/batch.amazonaws.com/"
ECS_FOR_EC2_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
LAUNCH_TEMPLATE = f"{PREFIX}-batch"
JOB_DEFINITION = f"{PREFIX}-worker"
# A public image (the artist has no registry): Amazon Linux 2023 has curl, bash and Python 3.9.
IMAGE = "public.ecr.aws/amazonlinux/amazonlinux:2023"
BOOT_URL_VARIABLE = "CLOUD_RENDER_BOOT_URL"
COMMAND = [
    "/bin/sh",
    "-c",
    'curl -fsS --retry 5 -o "${TMPDIR:-/tmp}/boot.sh" "$CLOUD_RENDER_BOOT_URL" && exec bash "${TMPDIR:-/tmp}/boot.sh"',
]
# Retry a child only when AWS took its host (spot loss, host failure); any other end is final.
ATTEMPTS = 3  # a child's tries: what a claim's bytes may name (batch_siblings)
RETRY_STRATEGY = {
    "attempts": ATTEMPTS,
    "evaluateOnExit": [
        {"onStatusReason": "Host EC2*", "action": "RETRY"},
        {"onReason": "*", "action": "EXIT"},
    ],
}
# The NVIDIA container runtime injects OptiX's libnvoptix and the EGL driver only with "graphics".
NVIDIA_CAPABILITIES = "compute,utility,graphics"
ROLE_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
LIVE_STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
ROOT_GIB_MIN = 30
# Set Up makes the disk for packs up to this size, so most jobs find it large enough; a larger
# pack makes a new launch template version when it is submitted.
SETUP_PACK_BYTES = 10 * 1024**3
# The definition's own limit, only a backstop: every job is submitted with its own (see submit).
FALLBACK_TIMEOUT_S = 12 * 3600
# The definition's vCPUs and memory are placeholders, the same for every machine type, so that a
# larger or smaller type never registers it again: each job sizes its children when submitted.
DEFINITION_VCPUS = 1
DEFINITION_MEMORY_MIB = 2048
# Of an instance's nominal memory, the share a child does not ask for. In Batch, MEMORY is both
# what a child is placed by and its hard limit. The ECS agent registers the memory the OS reports,
# which is less than the nominal size (AWS Batch User Guide, "Compute resource memory
# management": an m4.large's 8 GiB registers as 7985 MiB, 2.5% less; on large types up to about
# 5% less, as reported for c5.18xlarge and trn1.32xlarge), less 32 MiB the Batch AMI keeps
# for the agent; AWS recommends keeping a further 5% for the agent and system processes ("Reserve
# system memory"). A child that asks for more than its instance registers is never placed (its
# compute environment has that one type): 5% + 5% keeps it placeable on every type.
HOST_MEMORY_SHARE = 0.10


@dataclass(frozen=True)
class Engine:
    """Where a job goes: the queue (and its compute environment) and the job definition."""

    queue_arn: str
    definition_arn: str
    compute_environment: str


@dataclass(frozen=True)
class ChildSize:
    """What each child of a job asks Batch for: one whole instance of the job's type, so Batch
    places one child per instance (the estimates count one frame stream per machine) and Blender
    may use the instance's memory, not a small default it would be killed above."""

    vcpus: int
    memory_mib: int
    gpus: int

    def requirements(self) -> list[dict[str, str]]:
        """As `containerOverrides.resourceRequirements` (AWS's spelling: values are strings)."""
        found = [
            {"type": "VCPU", "value": str(self.vcpus)},
            {"type": "MEMORY", "value": str(self.memory_mib)},
        ]
        if self.gpus:
            found.append({"type": "GPU", "value": str(self.gpus)})
        return found


def child_size(vcpus: int, memory_gib: float, gpus: int) -> ChildSize:
    """One instance's worth: every vCPU and GPU, and the memory the host leaves to jobs (nominal
    memory less HOST_MEMORY_SHARE, rounded down to whole MiB)."""
    nominal_mib = memory_gib * 1024
    return ChildSize(
        vcpus=max(1, int(vcpus)),
        memory_mib=int(nominal_mib * (1 - HOST_MEMORY_SHARE)),
        gpus=max(0, int(gpus)),
    )


@dataclass(frozen=True)
class Child:
    """One machine of an array job, as Batch describes it."""

    index: int
    job_id: str
    status: str
    started_at: float  # epoch seconds, 0 until it started
    stopped_at: float  # 0 while it runs
    attempts: int
    reason: str

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES


def _tags(**more: str) -> dict[str, str]:
    return {TAG_MANAGED: "true", **more}


def names(instance_type: str, spot: bool) -> tuple[str, str]:
    """(compute environment, job queue) names for one instance type and pricing."""
    base = f"{PREFIX}-{instance_type.replace('.', '-')}-{'spot' if spot else 'ondemand'}"
    return base, base


def root_volume_gib(pack_bytes: int) -> int:
    """Image, Blender, the pack twice (download and unpack) and frames, with room to spare."""
    return max(ROOT_GIB_MIN, int(pack_bytes * 2 / 1024**3) + 40)


def vcpus_for(instance_vcpus: int, machines: int) -> int:
    return max(1, instance_vcpus) * max(1, machines)


def ensure_roles(settings: AwsSettings, changes: list[str] | None = None) -> tuple[str, str]:
    """Batch's service-linked role and the ECS instance role + profile; returns their ARNs
    (the service-linked role's, the instance profile's).

    Each piece is read first and made only when missing, so a second run writes nothing and a
    run that stopped half-way (a permission missing) is finished by the next one. What was made
    is appended to `changes`, in words.
    """
    iam = client(settings, "iam")
    said = changes if changes is not None else []
    # Found by its path: AWS names it AWSServiceRoleForBatch (moto spells it otherwise).
    roles = iam.list_roles(PathPrefix=SERVICE_LINKED_PATH)["Roles"]
    if roles:
        service_role = str(roles[0]["Arn"])
    else:
        try:
            service_role = str(
                iam.create_service_linked_role(AWSServiceName="batch.amazonaws.com")["Role"]["Arn"]
            )
            said.append("AWS Batch's service-linked role")
        except ClientError as exc:
            if error_code(exc) not in ("InvalidInput", "EntityAlreadyExists"):  # made meanwhile
                raise
            roles = iam.list_roles(PathPrefix=SERVICE_LINKED_PATH)["Roles"]
            if not roles:
                raise
            service_role = str(roles[0]["Arn"])
    try:
        iam.get_role(RoleName=INSTANCE_ROLE)
    except ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        try:
            iam.create_role(
                RoleName=INSTANCE_ROLE,
                AssumeRolePolicyDocument=json.dumps(ROLE_TRUST),
                Description="Cloud Render: ECS agent on Batch render machines (AWS managed policy only)",
                Tags=[{"Key": k, "Value": v} for k, v in _tags().items()],
            )
            said.append(f"the machines' role {INSTANCE_ROLE}")
        except ClientError as again:
            if error_code(again) != "EntityAlreadyExists":
                raise
    attached = iam.list_attached_role_policies(RoleName=INSTANCE_ROLE)["AttachedPolicies"]
    if not any(p["PolicyArn"] == ECS_FOR_EC2_POLICY for p in attached):
        iam.attach_role_policy(RoleName=INSTANCE_ROLE, PolicyArn=ECS_FOR_EC2_POLICY)
        said.append("AWS's managed ECS policy on that role")
    try:
        profile = iam.get_instance_profile(InstanceProfileName=INSTANCE_ROLE)["InstanceProfile"]
    except ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        try:
            iam.create_instance_profile(
                InstanceProfileName=INSTANCE_ROLE, Tags=[{"Key": k, "Value": v} for k, v in _tags().items()]
            )
            said.append(f"the instance profile {INSTANCE_ROLE}")
        except ClientError as again:
            if error_code(again) != "EntityAlreadyExists":
                raise
        profile = iam.get_instance_profile(InstanceProfileName=INSTANCE_ROLE)["InstanceProfile"]
    if not any(r["RoleName"] == INSTANCE_ROLE for r in profile.get("Roles", [])):
        iam.add_role_to_instance_profile(InstanceProfileName=INSTANCE_ROLE, RoleName=INSTANCE_ROLE)
        said.append("the role in its instance profile")
    return service_role, str(profile["Arn"])


def _template_data(group_id: str, volume_gib: int) -> dict[str, Any]:
    return {
        "MetadataOptions": {
            "HttpTokens": "required",
            "HttpPutResponseHopLimit": 1,
            "HttpEndpoint": "enabled",
        },
        "BlockDeviceMappings": [
            {
                "DeviceName": "/dev/xvda",
                "Ebs": {
                    "VolumeSize": volume_gib,
                    "VolumeType": "gp3",
                    "Encrypted": True,
                    "DeleteOnTermination": True,
                },
            }
        ],
        "SecurityGroupIds": [group_id],
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": [{"Key": TAG_MANAGED, "Value": "true"}]},
            {"ResourceType": "volume", "Tags": [{"Key": TAG_MANAGED, "Value": "true"}]},
        ],
    }


def _template_fits(data: dict[str, Any], group_id: str, volume_gib: int) -> int:
    """The root volume size of a template version that is still right for us, else 0: IMDSv2
    with hop limit 1, our group, an encrypted root volume at least `volume_gib` large."""
    meta = data.get("MetadataOptions", {})
    if meta.get("HttpTokens") != "required" or int(meta.get("HttpPutResponseHopLimit", 0)) != 1:
        return 0
    if list(data.get("SecurityGroupIds", [])) != [group_id]:
        return 0
    disks = [
        d.get("Ebs", {}) for d in data.get("BlockDeviceMappings", []) if d.get("DeviceName") == "/dev/xvda"
    ]
    if not disks or not disks[0].get("Encrypted") or int(disks[0].get("VolumeSize", 0)) < volume_gib:
        return 0
    return int(disks[0]["VolumeSize"])


def ensure_launch_template(
    settings: AwsSettings, group_id: str, volume_gib: int, changes: list[str] | None = None
) -> str:
    """IMDSv2 only, hop limit 1, an encrypted root volume; a new version only when the latest
    one is not right (a larger pack needs a larger disk; a smaller one keeps the disk it has)."""
    ec2 = client(settings, "ec2")
    said = changes if changes is not None else []
    found = ec2.describe_launch_templates(
        Filters=[{"Name": "launch-template-name", "Values": [LAUNCH_TEMPLATE]}]
    ).get("LaunchTemplates", [])
    if not found:
        made = ec2.create_launch_template(
            LaunchTemplateName=LAUNCH_TEMPLATE,
            LaunchTemplateData=_template_data(group_id, volume_gib),
            TagSpecifications=[
                {"ResourceType": "launch-template", "Tags": [{"Key": TAG_MANAGED, "Value": "true"}]}
            ],
        )
        said.append(f"the launch template {LAUNCH_TEMPLATE}")
        return str(made["LaunchTemplate"]["LaunchTemplateId"])
    template_id = str(found[0]["LaunchTemplateId"])
    latest = ec2.describe_launch_template_versions(LaunchTemplateId=template_id, Versions=["$Latest"])[
        "LaunchTemplateVersions"
    ]
    if latest and _template_fits(latest[0].get("LaunchTemplateData", {}), group_id, volume_gib):
        return template_id
    ec2.create_launch_template_version(
        LaunchTemplateId=template_id, LaunchTemplateData=_template_data(group_id, volume_gib)
    )
    said.append(f"a new version of the launch template ({volume_gib} GiB root volume)")
    return template_id


def ensure_engine(
    settings: AwsSettings,
    instance_type: str,
    spot: bool,
    max_vcpus: int,
    *,
    pack_bytes: int = 0,
    gpu: bool = True,
    changes: list[str] | None = None,
    say: Callable[[str], None] | None = None,
    check_roles: bool = False,
) -> Engine:
    """The compute environment, queue and job definition for this type and pricing.

    `check_roles` (Set Up): read the roles and instance profile first, and mend them. A job
    leaves them alone unless an environment must be made or mended, so a job after Set Up
    makes no IAM call at all (the daily Render policy allows none).

    Made once (by Set Up, or by the first many-machine job in a region); afterwards every piece
    is described and compared, and only what differs is written: a submit after Set Up with
    the same type, pricing, a vCPU ceiling no higher and a pack that fits the disk writes
    nothing. What was made or changed is appended to `changes`; `say` hears each step.
    """
    try:
        return _ensure_engine(
            settings,
            instance_type,
            spot,
            max_vcpus,
            pack_bytes,
            gpu,
            changes if changes is not None else [],
            say,
            check_roles,
        )
    except CloudError:
        raise
    except Exception as exc:
        raise translate(exc, "preparing AWS Batch for many machines", region=settings.region) from exc


def _ensure_engine(
    settings: AwsSettings,
    instance_type: str,
    spot: bool,
    max_vcpus: int,
    pack_bytes: int,
    gpu: bool,
    changes: list[str],
    say: Callable[[str], None] | None,
    check_roles: bool,
) -> Engine:
    def step(text: str) -> None:
        if say is not None:
            say(text)

    batch = client(settings, "batch")
    roles: list[tuple[str, str]] = []

    def needed_roles() -> tuple[str, str]:
        """The roles, read (and made if missing) only when an environment is made or mended:
        a job after Set Up reads no IAM at all, and needs no IAM permission (the daily policy)."""
        if not roles:
            step("Preparing the roles AWS Batch needs…")
            roles.append(ensure_roles(settings, changes))
        return roles[0]

    if check_roles:
        needed_roles()
    group = ensure_security_group(settings)
    step("Preparing the launch template for many machines…")
    template = ensure_launch_template(settings, group, root_volume_gib(pack_bytes), changes)
    template_changed = any(c.startswith("a new version of the launch template") for c in changes)
    env_name, queue_name = names(instance_type, spot)
    step(f"Preparing the compute environment {env_name}…")
    envs = batch.describe_compute_environments(computeEnvironments=[env_name])["computeEnvironments"]
    if not envs:
        service_role, profile = needed_roles()
        _create_environment(
            settings,
            batch,
            env_name,
            instance_type,
            spot,
            max_vcpus,
            gpu,
            service_role,
            profile,
            group,
            template,
        )
        changes.append(f"the compute environment {env_name} (scales to zero when idle)")
        _wait_valid(batch, env_name)
    else:
        _update_environment(
            batch,
            envs[0],
            env_name,
            max_vcpus,
            lambda: needed_roles()[0],
            template,
            template_changed,
            changes,
        )
    step("Preparing the job queue and job definition…")
    queues = batch.describe_job_queues(jobQueues=[queue_name])["jobQueues"]
    if queues:
        queue_arn = str(queues[0]["jobQueueArn"])
    else:
        queue_arn = str(
            batch.create_job_queue(
                jobQueueName=queue_name,
                state="ENABLED",
                priority=1,
                computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env_name}],
                tags=_tags(),
            )["jobQueueArn"]
        )
        changes.append(f"the job queue {queue_name}")
    definition = register_definition(settings, gpu, changes)
    return Engine(queue_arn=queue_arn, definition_arn=definition, compute_environment=env_name)


def _create_environment(
    settings: AwsSettings,
    batch: Any,
    env_name: str,
    instance_type: str,
    spot: bool,
    max_vcpus: int,
    gpu: bool,
    service_role: str,
    profile: str,
    group: str,
    template: str,
) -> None:
    ec2 = client(settings, "ec2")
    subnets = [
        s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    ]
    if not subnets:
        subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]]
    resources: dict[str, Any] = {
        "type": "SPOT" if spot else "EC2",
        "allocationStrategy": "SPOT_PRICE_CAPACITY_OPTIMIZED" if spot else "BEST_FIT_PROGRESSIVE",
        "minvCpus": 0,
        "maxvCpus": max_vcpus,
        "desiredvCpus": 0,
        "instanceTypes": [instance_type],
        "subnets": subnets,
        "securityGroupIds": [group],
        "instanceRole": profile,
        "launchTemplate": {"launchTemplateId": template, "version": "$Latest"},
        # GPU types get Batch's ECS GPU AMI (Amazon Linux 2023 with the NVIDIA driver).
        "ec2Configuration": [{"imageType": "ECS_AL2023_NVIDIA" if gpu else "ECS_AL2023"}],
        "tags": _tags(Name=env_name),
    }
    batch.create_compute_environment(
        computeEnvironmentName=env_name,
        type="MANAGED",
        state="ENABLED",
        serviceRole=service_role,
        computeResources=resources,
        tags=_tags(),
    )


def _update_environment(
    batch: Any,
    env: dict[str, Any],
    env_name: str,
    max_vcpus: int,
    service_role: Callable[[], str],
    template: str,
    template_changed: bool,
    changes: list[str],
) -> None:
    """One UpdateComputeEnvironment with only what differs, or none at all.

    A ceiling too low for this job's machines grows (never shrinks: the quota bounds it anyway);
    a new launch template version is taken up (Batch resolves `$Latest` when the environment is
    created or updated); one left INVALID or DISABLED by an earlier try (the service-linked role
    not yet usable) is enabled again with the role, so that try's leftover never blocks this one.
    moto 5.2.5 accepts the update but applies none of `computeResources` (its TODO), so there the
    call is seen, not its effect.
    """
    if env.get("status") in ("CREATING", "UPDATING"):  # an earlier try's, still being made
        _wait_valid(batch, env_name)
    resources: dict[str, Any] = {}
    if int(env.get("computeResources", {}).get("maxvCpus", 0)) < max_vcpus:
        resources["maxvCpus"] = max_vcpus
    if template_changed:
        resources["launchTemplate"] = {"launchTemplateId": template, "version": "$Latest"}
    broken = env.get("status") == "INVALID" or env.get("state") == "DISABLED"
    if not resources and not broken:
        return
    update: dict[str, Any] = {"computeEnvironment": env_name}
    if resources:
        update["computeResources"] = resources
    if broken:
        update.update(state="ENABLED", serviceRole=service_role())
    batch.update_compute_environment(**update)
    changes.append(
        f"the compute environment {env_name} ("
        + ", ".join(
            [f"up to {max_vcpus} vCPUs"] * ("maxvCpus" in resources)
            + ["the new launch template"] * template_changed
            + ["enabled again"] * broken
        )
        + ")"
    )
    if broken:
        _wait_valid(batch, env_name)


def _wait_valid(batch: Any, env_name: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        env = batch.describe_compute_environments(computeEnvironments=[env_name])["computeEnvironments"]
        if env and env[0].get("status") == "VALID":
            return
        if env and env[0].get("status") == "INVALID":
            raise CloudError(
                f"AWS Batch could not set up machines of this type: {env[0].get('statusReason', 'no reason given')}.",
                "Run Set Up again in a few minutes (new roles take a moment to reach AWS Batch); "
                "meanwhile render on one machine.",
                code=ErrorCode.BATCH_INVALID,
            )
        time.sleep(1)
    raise CloudError(
        f"AWS Batch is still preparing the compute environment {env_name}.",
        "Run Set Up again in a few minutes; meanwhile render on one machine.",
        code=ErrorCode.BATCH_NOT_READY,
    )


def register_definition(settings: AwsSettings, gpu: bool, changes: list[str] | None = None) -> str:
    """The job definition (a new revision only when it differs from the active one).

    It holds nothing of one job: each job gives its own time limit and its children's size (one
    instance of its type) when it is submitted, so a job with other caps or another machine type
    reuses the definition Set Up registered. Its vCPU and memory are small placeholders.
    """
    batch = client(settings, "batch")
    requirements = [
        {"type": "VCPU", "value": str(DEFINITION_VCPUS)},
        {"type": "MEMORY", "value": str(DEFINITION_MEMORY_MIB)},
    ]
    if gpu:
        requirements.append({"type": "GPU", "value": "1"})
    environment = [{"name": "NVIDIA_DRIVER_CAPABILITIES", "value": NVIDIA_CAPABILITIES}]
    properties = {
        "image": IMAGE,
        "command": COMMAND,
        "resourceRequirements": requirements,
        "environment": environment,
    }
    timeout = {"attemptDurationSeconds": FALLBACK_TIMEOUT_S}
    active = batch.describe_job_definitions(jobDefinitionName=JOB_DEFINITION, status="ACTIVE")[
        "jobDefinitions"
    ]
    for found in sorted(active, key=lambda d: -int(d.get("revision", 0)))[:1]:
        container = found.get("containerProperties", {})
        same = all(container.get(k) == v for k, v in properties.items()) and found.get("timeout") == timeout
        if same:
            return str(found["jobDefinitionArn"])
    made = batch.register_job_definition(
        jobDefinitionName=JOB_DEFINITION,
        type="container",
        containerProperties=properties,
        retryStrategy=RETRY_STRATEGY,
        timeout=timeout,
        propagateTags=True,
        tags=_tags(),
    )
    if changes is not None:
        changes.append(f"the job definition {JOB_DEFINITION}")
    return str(made["jobDefinitionArn"])


def submit(
    settings: AwsSettings,
    engine: Engine,
    job_id: str,
    machines: int,
    boot_url: str,
    *,
    attempt_seconds: int,
    size: ChildSize,
) -> str:
    """One array job of `machines` children (a plain job for one); returns Batch's job id.

    `attempt_seconds` is each child's time limit (its share of the job's caps, boot included):
    Batch stops a child that outlives it, whether or not Blender still follows the job.
    `size` is each child's vCPUs, memory and GPUs (`child_size`: one instance of the job's type),
    given as overrides so that the job definition stays the same for every type.
    """
    batch = client(settings, "batch")
    params: dict[str, Any] = {
        "jobName": f"{PREFIX}-{job_id}",
        "jobQueue": engine.queue_arn,
        "jobDefinition": engine.definition_arn,
        "timeout": {"attemptDurationSeconds": max(60, int(attempt_seconds))},
        "containerOverrides": {
            "environment": [{"name": BOOT_URL_VARIABLE, "value": boot_url}],
            "resourceRequirements": size.requirements(),
        },
        "tags": _tags(**{TAG_JOB: job_id}),
        "propagateTags": True,
    }
    if machines > 1:
        params["arrayProperties"] = {"size": machines}
    try:
        return str(batch.submit_job(**params)["jobId"])
    except Exception as exc:
        raise translate(exc, "starting the render machines", region=settings.region) from exc


def children(settings: AwsSettings, batch_job_id: str, machines: int) -> list[Child]:
    """Every child of the array job (the job itself when it has one machine), index order."""
    batch = client(settings, "batch")
    ids = [f"{batch_job_id}:{i}" for i in range(machines)] if machines > 1 else [batch_job_id]
    found: list[Child] = []
    for start in range(0, len(ids), 100):  # DescribeJobs takes 100 ids at a time
        for job in batch.describe_jobs(jobs=ids[start : start + 100])["jobs"]:
            # A child's id is `<parent id>:<index>` (moto gives no arrayProperties.index).
            tail = str(job["jobId"]).rpartition(":")[2]
            index = int(tail) if ":" in str(job["jobId"]) and tail.isdigit() else 0
            found.append(
                Child(
                    index=index,
                    job_id=str(job["jobId"]),
                    status=str(job.get("status", "")),
                    started_at=float(job.get("startedAt") or 0) / 1000,
                    stopped_at=float(job.get("stoppedAt") or 0) / 1000,
                    attempts=len(job.get("attempts") or []),
                    reason=str(job.get("statusReason", "")),
                )
            )
    return sorted(found, key=lambda c: c.index)


def terminate_all(settings: AwsSettings, batch_job_id: str, machines: int, reason: str) -> int:
    """End the array job and every child still live; returns how many children were told
    (`machines` 0: as many as Batch says the array has).

    On AWS terminating the parent ends its children; each child is terminated as well, so the
    ending does not rest on that alone (and the emulator, where it does not, behaves the same).
    """
    batch = client(settings, "batch")
    if machines <= 0:  # unknown here (a forgotten job): ask Batch for the array's size
        [job] = batch.describe_jobs(jobs=[batch_job_id])["jobs"] or [{}]
        machines = int(job.get("arrayProperties", {}).get("size", 1))
    batch.terminate_job(jobId=batch_job_id, reason=reason)
    told = 0
    if machines > 1:
        for child in children(settings, batch_job_id, machines):
            if child.live:
                batch.terminate_job(jobId=child.job_id, reason=reason)
                told += 1
    return told


def live_jobs(settings: AwsSettings) -> list[tuple[str, str]]:
    """(Batch job id, our job id) of every live job in our queues: the forgotten-machine search.

    An array job counts as live while any child is (moto leaves a terminated array's parent
    PENDING; its children say the truth, on AWS as well)."""
    batch = client(settings, "batch")
    queues = [
        q["jobQueueName"]
        for q in batch.describe_job_queues()["jobQueues"]
        if q["jobQueueName"].startswith(PREFIX)
    ]
    found: list[tuple[str, str]] = []
    for queue in queues:
        for status in LIVE_STATUSES:
            for job in batch.list_jobs(jobQueue=queue, jobStatus=status)["jobSummaryList"]:
                name = str(job.get("jobName", ""))
                if ":" in str(job["jobId"]) or not name.startswith(f"{PREFIX}-"):
                    continue  # an array child (moto lists them here; AWS lists parents only), or not ours
                size = int((job.get("arrayProperties") or {}).get("size") or 0)
                if not size:  # moto's summaries leave it out
                    described = batch.describe_jobs(jobs=[job["jobId"]])["jobs"]
                    size = int(((described or [{}])[0].get("arrayProperties") or {}).get("size") or 0)
                if size > 1 and not any(c.live for c in children(settings, str(job["jobId"]), size)):
                    continue
                found.append((str(job["jobId"]), name[len(PREFIX) + 1 :]))
    return found
