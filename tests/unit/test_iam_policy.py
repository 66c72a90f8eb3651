"""The IAM policy the artist attaches allows exactly what cloud/ calls, scoped to our resources."""

from __future__ import annotations

import ast
import json
from dataclasses import replace
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import requests
from botocore import xform_name

from cloud.aws import compute, storage
from cloud.aws.iam_policy import (
    IAM_ACTIONS,
    IAM_PREFIX,
    catalog_instance_types,
    generated_policy,
    load_policy,
    policy_actions,
    policy_text,
)
from cloud.aws.session import client
from cloud.cost.catalog import load_catalog
from cloud.errors import CloudError

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
    # presign.py takes the client as an argument; storage.py hands it an S3 client.
    for op in (
        MANAGED_S3_CALLS["presign_get"] + MANAGED_S3_CALLS["presign_list"] + MANAGED_S3_CALLS["presign_post"]
    ):
        for action in iam_actions_for("s3", op):
            needed.setdefault(action, set()).add("presign.py")
    return needed


def test_scanner_finds_calls_in_a_known_module():
    found = calls_in(CLOUD / "aws" / "storage.py")
    assert {
        ("s3", "CreateBucket"),
        ("s3", "HeadObject"),
        ("s3", "ListObjectsV2"),
        ("s3", "UploadPart"),
    } <= found
    assert ("s3", "PutBucketLifecycleConfiguration") in found


def test_every_call_in_cloud_is_allowed():
    needed = code_actions()
    missing = {action: sorted(mods) for action, mods in needed.items() if action not in policy_actions()}
    assert missing == {}


def test_the_policy_allows_nothing_the_code_does_not_call():
    unused = policy_actions() - set(code_actions())
    assert unused == set()


# --- A small IAM evaluator: enough of AWS's rules to check what the policy lets a key do. -----

# The condition operators the policy may use, each as (context value, policy values) -> bool.
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


def condition_holds(condition: dict[str, dict[str, Any]], context: dict[str, str]) -> bool:
    """Every operator and every key must hold (AND); any of a key's values may match (OR).
    A key the request does not carry fails every operator but Null."""
    for operator, block in condition.items():
        for key, expected in block.items():
            values = as_list(expected)
            if operator == "Null":
                if (values == ["true"]) != (key not in context):
                    return False
            elif key not in context or not OPERATORS[operator](context[key], values):
                return False
    return True


def statement_allows(statement: dict[str, Any], action: str, resource: str, context: dict[str, str]) -> bool:
    return (
        any(action_matches(p, action) for p in as_list(statement["Action"]))
        and any(fnmatchcase(resource, p) for p in as_list(statement["Resource"]))
        and condition_holds(statement.get("Condition", {}), context)
    )


def allows(action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    """Whether the policy lets a key do `action` on `resource` in a request with `context`."""
    statements = load_policy()["Statement"]
    context = context or {}
    if any(s["Effect"] == "Deny" and statement_allows(s, action, resource, context) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and statement_allows(s, action, resource, context) for s in statements)


def statements_for(action: str) -> list[dict[str, Any]]:
    return [
        s for s in load_policy()["Statement"] if any(action_matches(p, action) for p in as_list(s["Action"]))
    ]


INSTANCE = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"
IMAGE = "arn:aws:ec2:us-east-1::image/ami-0123456789abcdef0"
VOLUME = "arn:aws:ec2:us-east-1:123456789012:volume/vol-0123456789abcdef0"
GROUP = "arn:aws:ec2:us-east-1:123456789012:security-group/sg-0123456789abcdef0"
OURS = {f"aws:ResourceTag/{TAG}": "true"}


def test_statements_are_valid_and_scoped():
    policy = load_policy()
    statements = policy["Statement"]
    assert policy["Version"] == "2012-10-17"
    assert set(policy) == {"Version", "Statement"}
    assert len({s["Sid"] for s in statements}) == len(statements)
    for statement in statements:
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, statement["Sid"]
        assert statement["Sid"].isalnum() and statement["Effect"] == "Allow"
        actions = as_list(statement["Action"])
        resources = as_list(statement["Resource"])
        assert all("*" not in action for action in actions), statement["Sid"]
        assert all(r == "*" or r.startswith("arn:aws:") for r in resources), statement["Sid"]
        for operator in statement.get("Condition", {}):
            assert operator in OPERATORS or operator == "Null", statement["Sid"]
        if any(a.startswith("s3:") for a in actions):
            assert all(r.startswith("arn:aws:s3:::cloud-render-") for r in resources)
        if resources == ["*"]:  # on every resource only reads are allowed
            reads = ("Describe", "Get", "List", "View")
            assert all(a.split(":", 1)[1].startswith(reads) for a in actions), statement["Sid"]
    assert json.loads(policy_text()) == policy


def test_no_ec2_write_on_a_machine_image_volume_or_firewall_without_a_condition():
    """With an empty request context (no tags, owner, type or creating call) nothing on these
    resources may be created, changed or deleted."""
    writes = sorted(a for a in policy_actions() if a.startswith("ec2:") and not a.startswith("ec2:Describe"))
    assert writes
    for action in writes:
        for resource in (INSTANCE, IMAGE, VOLUME, GROUP):
            assert not allows(action, resource), (action, resource)


ECS_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
OUR_ROLE = "arn:aws:iam::123456789012:role/cloud-render-ecs-instance"
OUR_PROFILE = "arn:aws:iam::123456789012:instance-profile/cloud-render-ecs-instance"
BATCH_ROLE = "arn:aws:iam::123456789012:role/aws-service-role/batch.amazonaws.com/AWSServiceRoleForBatch"
OTHER_ROLE = "arn:aws:iam::123456789012:role/Admin"
TAGGED = {f"aws:RequestTag/{TAG}": "true"}


def test_iam_powers_reach_only_our_roles_and_never_inline_policies():
    """A stolen key must not write role policies, attach any other policy, or touch other roles."""
    for never in ("iam:PutRolePolicy", "iam:PutUserPolicy", "iam:CreateUser", "iam:CreateAccessKey"):
        assert statements_for(never) == [], never
    for action in ("iam:CreateRole", "iam:TagRole", "iam:AttachRolePolicy", "iam:PassRole", "iam:GetRole"):
        assert not allows(action, OTHER_ROLE, {**TAGGED, "iam:PolicyARN": ECS_POLICY}), action
    # Roles and profiles are made only with our tag on them.
    assert allows("iam:CreateRole", OUR_ROLE, TAGGED)
    assert not allows("iam:CreateRole", OUR_ROLE)
    assert allows("iam:CreateInstanceProfile", OUR_PROFILE, TAGGED)
    assert not allows("iam:CreateInstanceProfile", OUR_PROFILE)


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
        assert not allows("iam:PassRole", role)
    assert not allows("iam:PassRole", OTHER_ROLE, {"iam:PassedToService": "ec2.amazonaws.com"})


def test_service_linked_role_only_for_batch():
    assert allows("iam:CreateServiceLinkedRole", BATCH_ROLE, {"iam:AWSServiceName": "batch.amazonaws.com"})
    assert not allows("iam:CreateServiceLinkedRole", BATCH_ROLE, {"iam:AWSServiceName": "ec2.amazonaws.com"})
    spot_role = "arn:aws:iam::123456789012:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot"
    assert not allows("iam:CreateServiceLinkedRole", spot_role, {"iam:AWSServiceName": "batch.amazonaws.com"})


def test_batch_writes_only_tagged_and_only_ours():
    queue = "arn:aws:batch:us-east-1:123456789012:job-queue/cloud-render-c5-2xlarge-spot"
    env = "arn:aws:batch:us-east-1:123456789012:compute-environment/cloud-render-c5-2xlarge-spot"
    job = "arn:aws:batch:us-east-1:123456789012:job/0f0e0d0c-0000-4000-8000-000000000000"
    assert allows("batch:SubmitJob", queue, TAGGED)
    assert not allows("batch:SubmitJob", queue)
    assert not allows("batch:SubmitJob", queue.replace("cloud-render-", "team-"), TAGGED)
    assert allows("batch:CreateComputeEnvironment", env, TAGGED)
    assert not allows("batch:CreateComputeEnvironment", env)
    assert allows("batch:TerminateJob", job, OURS)
    assert not allows("batch:TerminateJob", job)  # someone else's job
    assert allows("batch:UpdateComputeEnvironment", env, OURS)
    assert not allows("batch:UpdateComputeEnvironment", env.replace("cloud-render-", "team-"), OURS)
    template = "arn:aws:ec2:us-east-1:123456789012:launch-template/lt-0123456789abcdef0"
    assert allows("ec2:CreateLaunchTemplate", template, TAGGED)
    assert not allows("ec2:CreateLaunchTemplate", template)
    assert allows("ec2:CreateLaunchTemplateVersion", template, OURS)
    assert not allows("ec2:CreateLaunchTemplateVersion", template)


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
    assert load_policy() == generated_policy()  # the file is what `python -m cloud.aws.iam_policy` writes
    tagged = {f"aws:RequestTag/{TAG}": "true"}
    for instance_type in catalog:
        assert allows("ec2:RunInstances", INSTANCE, {**tagged, "ec2:InstanceType": instance_type})
        assert not allows("ec2:RunInstances", INSTANCE, {"ec2:InstanceType": instance_type})
    for expensive in ("u-24tb1.112xlarge", "x2iedn.32xlarge", "m7i.48xlarge", "t3.nano"):
        assert expensive not in catalog
        assert not allows("ec2:RunInstances", INSTANCE, {**tagged, "ec2:InstanceType": expensive})
    assert allows("ec2:RunInstances", VOLUME, tagged) and not allows("ec2:RunInstances", VOLUME)


def test_terminate_only_instances_carrying_our_tag():
    (statement,) = statements_for("ec2:TerminateInstances")
    assert statement["Condition"] == {"StringEquals": {f"aws:ResourceTag/{TAG}": "true"}}
    assert allows("ec2:TerminateInstances", INSTANCE, OURS)
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
    assert allows("ec2:CreateSecurityGroup", GROUP, {f"aws:RequestTag/{TAG}": "true"})
    assert not allows("ec2:CreateSecurityGroup", GROUP)
    assert allows("ec2:RunInstances", GROUP, OURS) and not allows("ec2:RunInstances", GROUP)


def test_tags_only_while_creating():
    for resource, creation in (
        (INSTANCE, "RunInstances"),
        (VOLUME, "RunInstances"),
        (GROUP, "CreateSecurityGroup"),
    ):
        assert allows("ec2:CreateTags", resource, {"ec2:CreateAction": creation})
        assert not allows("ec2:CreateTags", resource)  # re-tagging someone else's machine as ours
        assert not allows("ec2:CreateTags", resource, {"ec2:CreateAction": "CreateVolume"})
    for kind in (
        "vpc/vpc-0123456789abcdef0",
        "subnet/subnet-0123456789abcdef0",
        "snapshot/snap-0123456789abcdef0",
    ):
        resource = f"arn:aws:ec2:us-east-1:123456789012:{kind}"
        assert not allows("ec2:CreateTags", resource, {"ec2:CreateAction": "RunInstances"}), kind
    for statement in statements_for("ec2:CreateTags"):
        assert statement["Condition"] == {
            "StringEquals": {
                "ec2:CreateAction": ["RunInstances", "CreateSecurityGroup", "CreateLaunchTemplate"]
            }
        }
    assert statements_for("ec2:DeleteTags") == []


@pytest.fixture
def policy_user(aws):
    """An IAM user holding only our policy, with moto's request authentication switched on."""
    admin = client(aws.settings, "iam")
    admin.create_user(UserName="artist")
    admin.put_user_policy(UserName="artist", PolicyName="cloud-render", PolicyDocument=policy_text())
    key = admin.create_access_key(UserName="artist")["AccessKey"]
    requests.post(f"{aws.url}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
    try:
        yield replace(
            aws.settings, access_key_id=key["AccessKeyId"], secret_access_key=key["SecretAccessKey"]
        )
    finally:
        requests.post(f"{aws.url}/moto-api/reset-auth", data=b"inf", timeout=10).raise_for_status()


def test_the_policy_is_enough_for_storage_and_nothing_else(policy_user, tmp_path):
    bucket = storage.ensure_bucket(policy_user, tmp_path / "buckets.json")
    scene = tmp_path / "scene.blend"
    scene.write_bytes(b"scene" * 1000)
    sha = storage.hash_file(scene)
    assert storage.upload_files(policy_user, bucket, [(scene, sha, 5000)]).uploaded == [sha]
    storage.put_json(policy_user, bucket, "jobs/j1/job.json", {"state": "new"})
    assert json.loads(storage.get_bytes(policy_user, bucket, "jobs/j1/job.json", 1024) or b"") == {
        "state": "new"
    }
    storage.download(policy_user, bucket, f"cas/{sha}", tmp_path / "back.blend")
    # delete_job_data is left out: moto authorises DeleteObjects against the bucket's ARN, where
    # AWS checks s3:DeleteObject on each object's ARN (which this policy grants).

    # A bucket that is not ours is out of reach.
    with pytest.raises(CloudError) as caught:
        storage.get_bytes(policy_user, "someone-elses-bucket", "secret.json", 1024)
    assert caught.value.code == "access_denied"
    assert "s3:GetObject" in caught.value.message


def arn(region: str, kind: str, resource_id: str) -> str:
    return f"arn:aws:ec2:{region}:123456789012:{kind}/{resource_id}"


def test_the_add_on_tags_what_it_later_changes(aws):
    """Launch through the product, then read back from EC2 what AWS would put in each request's
    context: every later change (revoke, terminate) is allowed by the tags the add-on set."""
    ec2 = client(aws.settings, "ec2")
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
