"""The IAM policy the artist attaches allows exactly what cloud/ calls, scoped to our resources."""

from __future__ import annotations

import ast
import json
from dataclasses import replace
from functools import cache
from pathlib import Path

import botocore.session
import pytest
import requests
from botocore import xform_name

from cloud.aws import iam_policy, storage
from cloud.aws.iam_policy import MANAGED_S3_CALLS, iam_actions_for, load_policy, policy_actions, policy_text
from cloud.aws.session import client
from cloud.errors import CloudError

ROOT = Path(__file__).resolve().parents[2]
CLOUD = ROOT / "cloud"


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
    # Needed without a call of their own: tags given at launch (TagSpecifications), images given
    # as resolve:ssm:<parameter>, and the instance profile handed to RunInstances.
    implied = {"ec2:CreateTags", "ssm:GetParameters", "iam:PassRole"}
    unused = policy_actions() - set(code_actions()) - implied
    assert unused == set()


def test_statements_are_scoped():
    statements = load_policy()["Statement"]
    assert load_policy()["Version"] == "2012-10-17"
    assert len({s["Sid"] for s in statements}) == len(statements)
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        assert all("*" not in action for action in actions), statement["Sid"]
        resources = (
            [statement["Resource"]] if isinstance(statement["Resource"], str) else statement["Resource"]
        )
        if any(a.startswith("s3:") for a in actions):
            assert all(r.startswith("arn:aws:s3:::cloud-render-") for r in resources)
        if any(a.startswith("iam:") for a in actions):
            assert all(
                ":role/cloud-render-" in r or ":instance-profile/cloud-render-" in r for r in resources
            )
    by_sid = {s["Sid"]: s for s in statements}
    terminate = by_sid["TerminateOnlyOurInstances"]
    assert terminate["Action"] == ["ec2:TerminateInstances"]
    assert terminate["Condition"] == {"Null": {"ec2:ResourceTag/cloud-render:job": "false"}}
    assert by_sid["LaunchOnlyTaggedInstances"]["Condition"] == {
        "Null": {"aws:RequestTag/cloud-render:job": "false"}
    }
    assert by_sid["PassOurRoleToEc2Only"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}
    }
    assert json.loads(policy_text()) == load_policy()


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
    assert storage.get_json(policy_user, bucket, "jobs/j1/job.json") == {"state": "new"}
    storage.download(policy_user, bucket, f"cas/{sha}", tmp_path / "back.blend")
    # delete_job_data is left out: moto authorises DeleteObjects against the bucket's ARN, where
    # AWS checks s3:DeleteObject on each object's ARN (which this policy grants).

    # A bucket that is not ours is out of reach.
    with pytest.raises(CloudError) as caught:
        storage.get_json(policy_user, "someone-elses-bucket", "secret.json")
    assert caught.value.code == "access_denied"
    assert "s3:GetObject" in caught.value.message


def test_instance_profile_is_created_once_and_scoped_to_the_bucket(aws):
    bucket = "cloud-render-0123456789abcdef0123456789abcdef"
    arn = iam_policy.ensure_instance_profile(aws.settings, bucket)
    assert arn == iam_policy.ensure_instance_profile(aws.settings, bucket)  # idempotent
    name = iam_policy.instance_role_name(bucket)
    assert name.startswith("cloud-render-") and len(name) <= 64
    admin = client(aws.settings, "iam")
    profile = admin.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    assert profile["Arn"] == arn and [r["RoleName"] for r in profile["Roles"]] == [name]
    trust = admin.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    document = admin.get_role_policy(RoleName=name, PolicyName="cloud-render-bucket")["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    resources = [r for s in document["Statement"] for r in s["Resource"]]
    assert all(r.startswith(f"arn:aws:s3:::{bucket}") for r in resources)
    assert f"arn:aws:s3:::{bucket}/jobs/*/out/*" in resources
