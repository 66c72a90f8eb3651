"""The two IAM policies Cloud Render asks the artist to attach, and the calls behind them.

- The **Set Up** policy (`setup_policy.json`) makes what lasts: the bucket's configuration,
  the firewall, the launch template, AWS Batch's roles, compute environments, queues and job
  definition, the budget, a quota request. It is attached for Set Up and may be detached after.
- The **Render** policy (`render_policy.json`) is what daily rendering needs: objects in the
  artist's own `cloud-render-*` buckets (bound to the caller's account), one-machine launches
  of catalog types from Amazon images with our tags, jobs submitted to our Batch queues and
  job definition, and reads. A stolen daily key can render into the artist's bucket and
  nothing more: no IAM write, no PassRole, no bucket configuration, no budget write, no Batch
  create/update/register, no launch template write.

Both files are generated from `STATEMENTS` below and the machine catalog (`python -m
cloud.aws.iam_policy` rewrites them; a test keeps them equal) and each stays within AWS's
6,144 non-whitespace characters for a managed policy (IAM User Guide, "IAM and AWS STS quotas").

`IAM_ACTIONS` says which IAM actions each API call needs where the name differs from the call
(AWS's Service Authorization Reference); the policy test uses it to check that every call in
cloud/ is allowed, and error translation uses it to name the missing permission when AWS says
"access denied". This module imports nothing else of cloud/aws, so error translation may
import it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from ..cost.catalog import load_catalog

PolicyName = Literal["setup", "render"]
POLICY_NAMES: tuple[PolicyName, ...] = ("render", "setup")
POLICY_PATHS: dict[PolicyName, Path] = {
    name: Path(__file__).with_name(f"{name}_policy.json") for name in POLICY_NAMES
}
# What the artist names each managed policy in the console (the preferences say so).
POLICY_TITLES: dict[PolicyName, str] = {"render": "CloudRenderRender", "setup": "CloudRenderSetUp"}
# AWS's limit for one managed policy, whitespace not counted (IAM and AWS STS quotas).
MANAGED_POLICY_LIMIT = 6144

TAG = "cloud-render:managed"
ACCOUNT = "${aws:PrincipalAccount}"
OWN_ACCOUNT = {"StringEquals": {"s3:ResourceAccount": ACCOUNT}}
TAGGED_REQUEST = {"StringEquals": {f"aws:RequestTag/{TAG}": "true"}}
TAGGED_RESOURCE = {"StringEquals": {f"aws:ResourceTag/{TAG}": "true"}}
INSTANCE_TYPES = "<catalog instance types>"  # replaced by the catalog's types when generated
BATCH_IMAGE = "public.ecr.aws/amazonlinux/amazonlinux:2023"  # batch.IMAGE (a test keeps them equal)
ECS_FOR_EC2 = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
BATCH_SERVICE_ROLE = "arn:aws:iam::*:role/aws-service-role/batch.amazonaws.com/*"


def _statement(
    sid: str, actions: list[str], resources: str | list[str], condition: Any = None
) -> dict[str, Any]:
    statement: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


RENDER_STATEMENTS: list[dict[str, Any]] = [
    _statement(
        "Reads",
        [
            "ec2:DescribeImages",
            "ec2:DescribeInstanceTypeOfferings",
            "ec2:DescribeInstanceTypes",
            "ec2:DescribeInstances",
            "ec2:DescribeLaunchTemplateVersions",
            "ec2:DescribeLaunchTemplates",
            "ec2:DescribeSecurityGroups",
            "ec2:DescribeSpotPriceHistory",
            "batch:DescribeComputeEnvironments",
            "batch:DescribeJobDefinitions",
            "batch:DescribeJobQueues",
            "batch:DescribeJobs",
            "batch:ListJobs",
            "pricing:GetProducts",
            "servicequotas:ListRequestedServiceQuotaChangeHistoryByQuota",
        ],
        "*",
    ),
    # The account's bucket names (a read; AWS takes no resource for it): another computer with
    # the same keys finds the buckets the first one made, named at random, to list their jobs
    # (cloud/aws/bucket_listing.py); it reads inside them only what OwnBucketsList allows.
    _statement("AccountBucketNames", ["s3:ListAllMyBuckets"], "*"),
    _statement(
        "OwnBucketsList",
        ["s3:GetBucketLocation", "s3:ListBucket"],
        "arn:aws:s3:::cloud-render-*",
        OWN_ACCOUNT,
    ),
    _statement(
        "OwnObjects",
        ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
        "arn:aws:s3:::cloud-render-*/*",
        OWN_ACCOUNT,
    ),
    _statement(
        "LaunchCatalogTypesTagged",
        ["ec2:RunInstances"],
        "arn:aws:ec2:*:*:instance/*",
        {"StringEquals": {f"aws:RequestTag/{TAG}": "true", "ec2:InstanceType": INSTANCE_TYPES}},
    ),
    _statement(
        "LaunchAmazonImages",
        ["ec2:RunInstances"],
        "arn:aws:ec2:*::image/*",
        {"StringEquals": {"ec2:Owner": "amazon"}},
    ),
    _statement("LaunchTaggedVolumes", ["ec2:RunInstances"], "arn:aws:ec2:*:*:volume/*", TAGGED_REQUEST),
    _statement("LaunchInOurGroup", ["ec2:RunInstances"], "arn:aws:ec2:*:*:security-group/*", TAGGED_RESOURCE),
    _statement(
        "LaunchDefaultNetwork",
        ["ec2:RunInstances"],
        [
            "arn:aws:ec2:*:*:network-interface/*",
            "arn:aws:ec2:*:*:spot-instances-request/*",
            "arn:aws:ec2:*:*:subnet/*",
        ],
    ),
    _statement(
        "TagOnLaunch",
        ["ec2:CreateTags"],
        ["arn:aws:ec2:*:*:instance/*", "arn:aws:ec2:*:*:volume/*"],
        {"StringEquals": {"ec2:CreateAction": "RunInstances"}},
    ),
    _statement("TerminateOurs", ["ec2:TerminateInstances"], "arn:aws:ec2:*:*:instance/*", TAGGED_RESOURCE),
    _statement("AmiParameters", ["ssm:GetParameter"], "arn:aws:ssm:*::parameter/aws/service/*"),
    _statement("Ec2Quotas", ["servicequotas:GetServiceQuota"], "arn:aws:servicequotas:*:*:ec2/*"),
    _statement(
        "SubmitToOurQueues",
        ["batch:SubmitJob"],
        [
            "arn:aws:batch:*:*:job-queue/cloud-render-*",
            "arn:aws:batch:*:*:job-definition/cloud-render-*",
            "arn:aws:batch:*:*:job/*",
        ],
        TAGGED_REQUEST,
    ),
    # Tags given at submission need batch:TagResource too; AWS has no key that tells tagging a new
    # job from tagging an old one, so a stolen key could mark and end any Batch job of the
    # account (it can end array children anyway): an ending, never a launch or a read.
    _statement("TagOnSubmit", ["batch:TagResource"], "arn:aws:batch:*:*:job/*", TAGGED_REQUEST),
    _statement("EndOurJobs", ["batch:TerminateJob"], "arn:aws:batch:*:*:job/*", TAGGED_RESOURCE),
    # An array job's children carry no tags: only child ids ("<parent>:<index>") match here.
    _statement("EndArrayChildren", ["batch:TerminateJob"], f"arn:aws:batch:*:{ACCOUNT}:job/*:*"),
]

SETUP_STATEMENTS: list[dict[str, Any]] = [
    _statement(
        "Reads",
        ["ec2:DescribeSubnets", "iam:ListRoles"],
        "*",
    ),
    _statement(
        "OwnBucketsConfigure",
        [
            "s3:CreateBucket",
            "s3:PutBucketPolicy",
            "s3:PutBucketPublicAccessBlock",
            "s3:PutEncryptionConfiguration",
            "s3:PutLifecycleConfiguration",
            # The e-mail when a job ends (job_mail.py): the bucket's events go to EventBridge.
            "s3:GetBucketNotification",
            "s3:PutBucketNotification",
        ],
        "arn:aws:s3:::cloud-render-*",
        OWN_ACCOUNT,
    ),
    _statement(
        "CreateTaggedGroupAndTemplate",
        ["ec2:CreateSecurityGroup", "ec2:CreateLaunchTemplate"],
        ["arn:aws:ec2:*:*:security-group/*", "arn:aws:ec2:*:*:launch-template/*"],
        TAGGED_REQUEST,
    ),
    _statement("GroupInDefaultVpc", ["ec2:CreateSecurityGroup"], "arn:aws:ec2:*:*:vpc/*"),
    _statement(
        "TagOnCreate",
        ["ec2:CreateTags"],
        ["arn:aws:ec2:*:*:security-group/*", "arn:aws:ec2:*:*:launch-template/*"],
        {"StringEquals": {"ec2:CreateAction": ["CreateSecurityGroup", "CreateLaunchTemplate"]}},
    ),
    _statement(
        "ChangeOurGroupAndTemplate",
        ["ec2:RevokeSecurityGroupIngress", "ec2:CreateLaunchTemplateVersion"],
        ["arn:aws:ec2:*:*:security-group/*", "arn:aws:ec2:*:*:launch-template/*"],
        TAGGED_RESOURCE,
    ),
    _statement(
        "BatchCreateTagged",
        [
            "batch:CreateComputeEnvironment",
            "batch:CreateJobQueue",
            "batch:SetCapacityTags",
            "batch:TagResource",
        ],
        [
            "arn:aws:batch:*:*:compute-environment/cloud-render-*",
            "arn:aws:batch:*:*:job-queue/cloud-render-*",
            "arn:aws:batch:*:*:job-definition/cloud-render-*:*",
        ],
        TAGGED_REQUEST,
    ),
    # Our public image, never privileged: a job definition is what every Batch machine runs.
    _statement(
        "BatchJobDefinition",
        ["batch:RegisterJobDefinition"],
        "arn:aws:batch:*:*:job-definition/cloud-render-*",
        {
            "StringEquals": {f"aws:RequestTag/{TAG}": "true", "batch:Image": BATCH_IMAGE},
            "BoolIfExists": {"batch:Privileged": "false"},
        },
    ),
    _statement(
        "BatchUpdateOurs",
        ["batch:UpdateComputeEnvironment"],
        "arn:aws:batch:*:*:compute-environment/cloud-render-*",
        TAGGED_RESOURCE,
    ),
    _statement(
        "ReadOurRoles",
        ["iam:GetInstanceProfile", "iam:GetRole", "iam:ListAttachedRolePolicies"],
        ["arn:aws:iam::*:role/cloud-render-*", "arn:aws:iam::*:instance-profile/cloud-render-*"],
    ),
    _statement(
        "BatchServiceLinkedRole",
        ["iam:CreateServiceLinkedRole"],
        BATCH_SERVICE_ROLE,
        {"StringEquals": {"iam:AWSServiceName": "batch.amazonaws.com"}},
    ),
    _statement(
        "MachineRoleTagged",
        ["iam:CreateInstanceProfile", "iam:CreateRole", "iam:TagInstanceProfile", "iam:TagRole"],
        ["arn:aws:iam::*:role/cloud-render-*", "arn:aws:iam::*:instance-profile/cloud-render-*"],
        TAGGED_REQUEST,
    ),
    _statement(
        "MachineRoleInProfile",
        ["iam:AddRoleToInstanceProfile"],
        "arn:aws:iam::*:instance-profile/cloud-render-*",
    ),
    _statement(
        "OnlyTheEcsPolicy",
        ["iam:AttachRolePolicy"],
        "arn:aws:iam::*:role/cloud-render-*",
        {"ArnEquals": {"iam:PolicyARN": ECS_FOR_EC2}},
    ),
    _statement(
        "PassOurRolesToBatch",
        ["iam:PassRole"],
        ["arn:aws:iam::*:role/cloud-render-*", BATCH_SERVICE_ROLE],
        # IfExists: putting our role in our instance profile passes it too, to no named service.
        {"StringEqualsIfExists": {"iam:PassedToService": ["batch.amazonaws.com", "ec2.amazonaws.com"]}},
    ),
    _statement(
        "OwnBudget",
        ["budgets:ModifyBudget", "budgets:ViewBudget"],
        f"arn:aws:budgets::{ACCOUNT}:budget/cloud-render-*",
    ),
    _statement(
        "QuotaRequest", ["servicequotas:RequestServiceQuotaIncrease"], "arn:aws:servicequotas:*:*:ec2/*"
    ),
    # The e-mail when a job ends (job_mail.py): our topic, our rules, and only our topic as their
    # target, so this key cannot send the bucket's events anywhere else.
    _statement(
        "JobMailTopic",
        ["sns:CreateTopic", "sns:ListSubscriptionsByTopic", "sns:SetTopicAttributes", "sns:Subscribe"],
        f"arn:aws:sns:*:{ACCOUNT}:cloud-render-*",
    ),
    _statement("JobMailRules", ["events:PutRule"], f"arn:aws:events:*:{ACCOUNT}:rule/cloud-render-*"),
    _statement(
        "JobMailTargets",
        ["events:PutTargets"],
        f"arn:aws:events:*:{ACCOUNT}:rule/cloud-render-*",
        # events:TargetArn holds every target's ARN (SAR: ArrayOfARN): all must be our topic.
        {"ForAllValues:ArnLike": {"events:TargetArn": f"arn:aws:sns:*:{ACCOUNT}:cloud-render-*"}},
    ),
]

STATEMENTS: dict[PolicyName, list[dict[str, Any]]] = {"render": RENDER_STATEMENTS, "setup": SETUP_STATEMENTS}

# Calls AWS answers for any signed request, whatever the caller's policies (STS API Reference,
# GetCallerIdentity: "No permissions are required to perform this operation").
NO_PERMISSION_NEEDED = frozenset({"sts:GetCallerIdentity"})

# IAM action prefix per boto3 service name, where they differ.
IAM_PREFIX = {"service-quotas": "servicequotas"}

# (service, API operation) -> IAM actions it needs, where that is not simply prefix:Operation.
IAM_ACTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("s3", "HeadBucket"): ("s3:ListBucket",),
    ("s3", "ListObjectsV2"): ("s3:ListBucket",),
    ("s3", "ListBuckets"): ("s3:ListAllMyBuckets",),
    ("s3", "HeadObject"): ("s3:GetObject",),
    ("s3", "CopyObject"): ("s3:GetObject", "s3:PutObject"),
    ("s3", "CreateMultipartUpload"): ("s3:PutObject",),
    ("s3", "UploadPart"): ("s3:PutObject",),
    ("s3", "UploadPartCopy"): ("s3:GetObject", "s3:PutObject"),
    ("s3", "CompleteMultipartUpload"): ("s3:PutObject",),
    ("s3", "DeleteObjects"): ("s3:DeleteObject",),
    ("s3", "PutPublicAccessBlock"): ("s3:PutBucketPublicAccessBlock",),
    ("s3", "PutBucketEncryption"): ("s3:PutEncryptionConfiguration",),
    ("s3", "PutBucketLifecycleConfiguration"): ("s3:PutLifecycleConfiguration",),
    ("s3", "GetBucketNotificationConfiguration"): ("s3:GetBucketNotification",),
    ("s3", "PutBucketNotificationConfiguration"): ("s3:PutBucketNotification",),
    ("budgets", "CreateBudget"): ("budgets:ModifyBudget",),
    ("budgets", "DescribeBudget"): ("budgets:ViewBudget",),
    ("budgets", "DescribeBudgets"): ("budgets:ViewBudget",),
    # Tags given at creation (TagSpecifications) need ec2:CreateTags as well.
    ("ec2", "RunInstances"): ("ec2:RunInstances", "ec2:CreateTags"),
    ("ec2", "CreateSecurityGroup"): ("ec2:CreateSecurityGroup", "ec2:CreateTags"),
    ("ec2", "CreateLaunchTemplate"): ("ec2:CreateLaunchTemplate", "ec2:CreateTags"),
    # IAM tags given at creation need the Tag* action too; Batch passes the instance role.
    ("iam", "CreateRole"): ("iam:CreateRole", "iam:TagRole"),
    ("iam", "CreateInstanceProfile"): ("iam:CreateInstanceProfile", "iam:TagInstanceProfile"),
    # Batch: tags at creation need batch:TagResource; computeResources.tags batch:SetCapacityTags.
    ("batch", "CreateComputeEnvironment"): (
        "batch:CreateComputeEnvironment",
        "iam:PassRole",
        "batch:TagResource",
        "batch:SetCapacityTags",
    ),
    ("batch", "CreateJobQueue"): ("batch:CreateJobQueue", "batch:TagResource"),
    ("batch", "RegisterJobDefinition"): ("batch:RegisterJobDefinition", "batch:TagResource"),
    ("batch", "SubmitJob"): ("batch:SubmitJob", "batch:TagResource"),
}


def action_for_operation(operation: str) -> str | None:
    """The main IAM action behind an API operation name, whatever the service (for messages)."""
    for (_service, op), actions in IAM_ACTIONS.items():
        if op == operation:
            return actions[0]
    for action in policy_actions():
        if action.split(":", 1)[1] == operation:
            return action
    return None


@lru_cache(maxsize=2)
def load_policy(name: PolicyName = "render") -> dict[str, Any]:
    return dict(json.loads(POLICY_PATHS[name].read_text(encoding="utf-8")))


def policy_text(name: PolicyName = "render") -> str:
    """A policy as the artist pastes it into the AWS console (Create policy > JSON)."""
    return POLICY_PATHS[name].read_text(encoding="utf-8")


def statement_actions(statements: list[dict[str, Any]]) -> set[str]:
    actions: set[str] = set()
    for statement in statements:
        value = statement["Action"]
        actions.update([value] if isinstance(value, str) else value)
    return actions


def policy_actions(name: PolicyName | None = None) -> set[str]:
    """The actions one policy grants, or both together (`None`)."""
    names = POLICY_NAMES if name is None else (name,)
    return set().union(*(statement_actions(load_policy(n)["Statement"]) for n in names))


def setup_only_actions() -> set[str]:
    """What only the Set Up policy grants: a refusal of one of these means "attach Set Up"."""
    return policy_actions("setup") - policy_actions("render")


def catalog_instance_types() -> list[str]:
    """The instance types the add-on may launch: the catalog's, sorted."""
    return sorted(load_catalog().types)


def generated_policy(name: PolicyName) -> dict[str, Any]:
    """One policy from its statements, every instance-type condition the catalog's types."""
    statements = json.loads(json.dumps(STATEMENTS[name]))
    for statement in statements:
        for operator in statement.get("Condition", {}).values():
            if operator.get("ec2:InstanceType") == INSTANCE_TYPES:
                operator["ec2:InstanceType"] = catalog_instance_types()
    return {"Version": "2012-10-17", "Statement": statements}


def policy_size(text: str) -> int:
    """The length AWS counts against a policy's quota: every character but whitespace."""
    return sum(1 for ch in text if not ch.isspace())


def write_policies() -> None:
    """Regenerate both policy files after the statements or the catalog changed."""
    for name, path in POLICY_PATHS.items():
        path.write_text(json.dumps(generated_policy(name), indent=1) + "\n", encoding="utf-8")
    load_policy.cache_clear()


if __name__ == "__main__":
    write_policies()
    for policy in POLICY_NAMES:
        print(f"{policy}: {policy_size(policy_text(policy))} of {MANAGED_POLICY_LIMIT} characters")
