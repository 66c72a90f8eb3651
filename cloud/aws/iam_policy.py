"""The least-privilege IAM policy Cloud Render needs.

The policy lives in `iam_policy.json` next to this file so the preferences panel can show it
and copy it verbatim. Its `ec2:InstanceType` list is generated from the machine catalog
(`python -m cloud.aws.iam_policy` rewrites the file; a test keeps the two equal).

`IAM_ACTIONS` says which IAM action each API call needs where the name differs from the call
(AWS's Service Authorization Reference); the policy test uses it to check that every call in
cloud/ is allowed, and error translation uses it to name the missing permission when AWS says
"access denied". This module imports nothing else of cloud/aws, so error translation may
import it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..cost.catalog import load_catalog

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
    # Tags given at creation (TagSpecifications) need ec2:CreateTags as well.
    ("ec2", "RunInstances"): ("ec2:RunInstances", "ec2:CreateTags"),
    ("ec2", "CreateSecurityGroup"): ("ec2:CreateSecurityGroup", "ec2:CreateTags"),
    ("ec2", "CreateLaunchTemplate"): ("ec2:CreateLaunchTemplate", "ec2:CreateTags"),
    # IAM tags given at creation need the Tag* action too; Batch passes the instance role.
    ("iam", "CreateRole"): ("iam:CreateRole", "iam:TagRole"),
    ("iam", "CreateInstanceProfile"): ("iam:CreateInstanceProfile", "iam:TagInstanceProfile"),
    ("batch", "CreateComputeEnvironment"): ("batch:CreateComputeEnvironment", "iam:PassRole"),
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


def catalog_instance_types() -> list[str]:
    """The instance types the add-on may launch: the catalog's, sorted."""
    return sorted(load_catalog().types)


def generated_policy() -> dict[str, Any]:
    """The policy file with every `ec2:InstanceType` condition set to the catalog's types."""
    policy = dict(json.loads(POLICY_PATH.read_text(encoding="utf-8")))
    for statement in policy["Statement"]:
        for operator in statement.get("Condition", {}).values():
            if "ec2:InstanceType" in operator:
                operator["ec2:InstanceType"] = catalog_instance_types()
    return policy


def write_policy() -> None:
    """Regenerate iam_policy.json after the catalog changed."""
    POLICY_PATH.write_text(json.dumps(generated_policy(), indent=2) + "\n", encoding="utf-8")
    load_policy.cache_clear()


if __name__ == "__main__":
    write_policy()
