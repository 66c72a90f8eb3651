"""The least-privilege IAM policy Cloud Render needs, and the optional instance role.

The policy lives in `iam_policy.json` next to this file so the preferences panel can show
it and copy it verbatim. `IAM_ACTIONS` says which IAM action each API call needs where the
name differs from the call (AWS's Service Authorization Reference); the policy test uses it
to check that every call in cloud/ is allowed, and error translation uses it to name the
missing permission when AWS says "access denied".
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from .session import AwsSettings, client

POLICY_PATH = Path(__file__).with_name("iam_policy.json")

# IAM action prefix per boto3 service name, where they differ.
IAM_PREFIX = {"service-quotas": "servicequotas"}

# (service, API operation) -> IAM actions it needs, where that is not simply prefix:Operation.
IAM_ACTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("s3", "HeadBucket"): ("s3:ListBucket",),
    ("s3", "ListObjectsV2"): ("s3:ListBucket",),
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
    ("budgets", "CreateBudget"): ("budgets:ModifyBudget",),
    ("budgets", "DescribeBudget"): ("budgets:ViewBudget",),
    ("budgets", "DescribeBudgets"): ("budgets:ViewBudget",),
    # resolve:ssm:<param> image ids make RunInstances read the parameter on our behalf.
    ("ec2", "RunInstances"): ("ec2:RunInstances", "ec2:CreateTags", "ssm:GetParameters"),
}

# s3transfer and presigned requests call these operations for us.
MANAGED_S3_CALLS: dict[str, tuple[str, ...]] = {
    "upload": (
        "PutObject",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
    ),
    "download": ("GetObject", "HeadObject"),
    "copy": (
        "HeadObject",
        "CopyObject",
        "CreateMultipartUpload",
        "UploadPartCopy",
        "CompleteMultipartUpload",
    ),
    "presign_get": ("GetObject",),
    "presign_list": ("ListObjectsV2",),
    "presign_post": ("PutObject",),
}


def iam_actions_for(service: str, operation: str) -> tuple[str, ...]:
    """The IAM actions one API call needs."""
    return IAM_ACTIONS.get((service, operation), (f"{IAM_PREFIX.get(service, service)}:{operation}",))


def action_for_operation(operation: str) -> str | None:
    """The main IAM action behind an API operation name, whatever the service (for messages)."""
    for (_service, op), actions in IAM_ACTIONS.items():
        if op == operation:
            return actions[0]
    for action in policy_actions():
        if action.split(":", 1)[1] == operation:
            return action
    return None


@lru_cache(maxsize=1)
def load_policy() -> dict[str, Any]:
    return dict(json.loads(POLICY_PATH.read_text(encoding="utf-8")))


def policy_text() -> str:
    """The policy as the artist pastes it into the AWS console."""
    return POLICY_PATH.read_text(encoding="utf-8")


def policy_actions() -> set[str]:
    actions: set[str] = set()
    for statement in load_policy()["Statement"]:
        value = statement["Action"]
        actions.update([value] if isinstance(value, str) else value)
    return actions


# --- Instance role: lets a long job read its inputs without presigned URLs that expire. ---

ROLE_PREFIX = "cloud-render-"

EC2_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


def instance_role_name(bucket: str) -> str:
    """One role per bucket (so per region); IAM names are at most 64 characters."""
    return (ROLE_PREFIX + "instance-" + bucket.removeprefix(ROLE_PREFIX))[:64]


def instance_role_policy(bucket: str) -> dict[str, Any]:
    """Read inputs (cas/, jobs/) and write outputs (jobs/*/out/) of one bucket, nothing else."""
    arn = f"arn:aws:s3:::{bucket}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"{arn}/cas/*", f"{arn}/jobs/*"]},
            {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [f"{arn}/jobs/*/out/*"]},
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [arn],
                "Condition": {"StringLike": {"s3:prefix": ["jobs/*"]}},
            },
        ],
    }


def ensure_instance_profile(settings: AwsSettings, bucket: str) -> str:
    """Create (once) the role and instance profile a long job's machine uses; returns the profile ARN."""
    from .error_rules import is_code, translating

    iam = client(settings, "iam")
    name = instance_role_name(bucket)
    with translating("setting up the render machine's role"):
        try:
            profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        except Exception as exc:
            if not is_code(exc, "NoSuchEntity"):
                raise
            profile = None
        if profile and profile.get("Roles"):
            return str(profile["Arn"])
        try:
            iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(EC2_TRUST),
                Description="Cloud Render: lets render machines read and write their bucket",
            )
        except Exception as exc:
            if not is_code(exc, "EntityAlreadyExists"):
                raise
        iam.put_role_policy(
            RoleName=name,
            PolicyName="cloud-render-bucket",
            PolicyDocument=json.dumps(instance_role_policy(bucket)),
        )
        if profile is None:
            try:
                profile = iam.create_instance_profile(InstanceProfileName=name)["InstanceProfile"]
            except Exception as exc:
                if not is_code(exc, "EntityAlreadyExists"):
                    raise
                profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        try:
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
        except Exception as exc:
            if not is_code(exc, "LimitExceeded"):
                raise
        return str(profile["Arn"])
