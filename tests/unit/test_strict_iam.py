"""The strict layer in front of moto authenticates and authorises as AWS does for an IAM user."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests
from botocore.exceptions import ClientError

from cloud.aws.session import AwsSettings, client

ACCOUNT = "123456789012"


def make_user(aws: Any, name: str, statements: list[dict[str, Any]]) -> AwsSettings:
    """An IAM user (created by the administrator) holding one managed policy; its settings."""
    admin = client(aws.admin, "iam")
    admin.create_user(UserName=name)
    document = {"Version": "2012-10-17", "Statement": statements}
    arn = admin.create_policy(PolicyName=f"{name}-policy", PolicyDocument=json.dumps(document))["Policy"][
        "Arn"
    ]
    admin.attach_user_policy(UserName=name, PolicyArn=arn)
    key = admin.create_access_key(UserName=name)["AccessKey"]
    return replace(aws.admin, access_key_id=key["AccessKeyId"], secret_access_key=key["SecretAccessKey"])


def refused(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    return dict(caught.value.response)


def test_s3_allowed_call_succeeds_and_missing_permission_is_refused(aws):
    client(aws.admin, "s3").create_bucket(Bucket="cloud-render-a")
    user = make_user(
        aws,
        "putter",
        [
            {
                "Sid": "Objects",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": "arn:aws:s3:::cloud-render-a/*",
            },
        ],
    )
    s3 = client(user, "s3")
    s3.put_object(Bucket="cloud-render-a", Key="jobs/x.json", Body=b"{}")
    error = refused(s3.get_object, Bucket="cloud-render-a", Key="jobs/x.json")
    assert error["Error"]["Code"] == "AccessDenied"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "s3:GetObject" in error["Error"]["Message"]
    assert f"arn:aws:iam::{ACCOUNT}:user/putter" in error["Error"]["Message"]
    decisions = requests.get(f"{aws.url}/strict-api/decisions", timeout=10).json()
    assert {"action": "s3:PutObject", "allowed": True, "sid": "Objects"}.items() <= decisions[0].items()


def amazon_image(aws: Any) -> str:
    """An image to launch (registered by the administrator: listing Amazon's is slow in moto)."""
    image = client(aws.admin, "ec2").register_image(Name="render", RootDeviceName="/dev/xvda")
    return str(image["ImageId"])


def run_instance(aws: Any, tags: dict[str, str]) -> str:
    spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    reply = client(aws.admin, "ec2").run_instances(
        ImageId=amazon_image(aws),
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        **({"TagSpecifications": spec} if tags else {}),
    )
    return str(reply["Instances"][0]["InstanceId"])


def test_ec2_refusal_is_unauthorized_operation_and_tag_conditions_decide(aws):
    tagged = run_instance(aws, {"cloud-render:managed": "true"})
    untagged = run_instance(aws, {})
    user = make_user(
        aws,
        "terminator",
        [
            {
                "Sid": "OnlyOurs",
                "Effect": "Allow",
                "Action": "ec2:TerminateInstances",
                "Resource": "arn:aws:ec2:*:*:instance/*",
                "Condition": {"StringEquals": {"aws:ResourceTag/cloud-render:managed": "true"}},
            }
        ],
    )
    ec2 = client(user, "ec2")
    error = refused(ec2.terminate_instances, InstanceIds=[untagged])
    assert error["Error"]["Code"] == "UnauthorizedOperation"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert f"instance/{untagged}" in error["Error"]["Message"]
    ec2.terminate_instances(InstanceIds=[tagged])
    # Describe is not granted: refused too, on "*".
    assert refused(ec2.describe_instances)["Error"]["Code"] == "UnauthorizedOperation"


def test_action_without_resource_types_needs_star(aws):
    on_roles = make_user(
        aws,
        "lister",
        [{"Effect": "Allow", "Action": "iam:ListRoles", "Resource": f"arn:aws:iam::{ACCOUNT}:role/*"}],
    )
    error = refused(client(on_roles, "iam").list_roles)
    assert error["Error"]["Code"] == "AccessDenied"
    assert error["Error"]["Type"] == "Sender"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "iam:ListRoles on resource: *" in error["Error"]["Message"]
    on_star = make_user(aws, "lister2", [{"Effect": "Allow", "Action": "iam:List*", "Resource": "*"}])
    client(on_star, "iam").list_roles()
    assert (
        refused(client(on_star, "iam").create_role, RoleName="r", AssumeRolePolicyDocument="{}")["Error"][
            "Code"
        ]
        == "AccessDenied"
    )


def test_explicit_deny_wins_and_not_action(aws):
    client(aws.admin, "s3").create_bucket(Bucket="cloud-render-b")
    user = make_user(
        aws,
        "denied",
        [
            {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:delete*", "Resource": "arn:aws:s3:::cloud-render-b/keep/*"},
        ],
    )
    s3 = client(user, "s3")
    s3.put_object(Bucket="cloud-render-b", Key="keep/a", Body=b"a")
    s3.put_object(Bucket="cloud-render-b", Key="tmp/a", Body=b"a")
    s3.delete_object(Bucket="cloud-render-b", Key="tmp/a")
    error = refused(s3.delete_object, Bucket="cloud-render-b", Key="keep/a")
    assert "explicit deny" in error["Error"]["Message"]
    # DeleteObjects is authorised per key: one protected key refuses the whole request.
    error = refused(
        s3.delete_objects, Bucket="cloud-render-b", Delete={"Objects": [{"Key": "tmp/b"}, {"Key": "keep/a"}]}
    )
    assert "cloud-render-b/keep/a" in error["Error"]["Message"]
    assert refused(client(user, "iam").list_users)["Error"]["Code"] == "AccessDenied"


def test_s3_resource_account_bound_to_principal_account(aws):
    client(aws.admin, "s3").create_bucket(Bucket="cloud-render-c")
    client(aws.admin, "s3").put_object(Bucket="cloud-render-c", Key="k", Body=b"v")
    user = make_user(
        aws,
        "reader",
        [
            {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::cloud-render-*/*",
                "Condition": {"StringEquals": {"s3:ResourceAccount": "${aws:PrincipalAccount}"}},
            }
        ],
    )
    assert client(user, "s3").get_object(Bucket="cloud-render-c", Key="k")["Body"].read() == b"v"


def make_batch(aws: Any) -> tuple[str, str]:
    batch = client(aws.admin, "batch")
    trust = {"Version": "2012-10-17", "Statement": []}
    iam = client(aws.admin, "iam")
    role = iam.create_role(RoleName="batch-service", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    env = batch.create_compute_environment(
        computeEnvironmentName="render-ce", type="UNMANAGED", state="ENABLED", serviceRole=role["Arn"]
    )
    queue = batch.create_job_queue(
        jobQueueName="render-q",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env["computeEnvironmentArn"]}],
    )
    definition = batch.register_job_definition(
        jobDefinitionName="render",
        type="container",
        containerProperties={"image": "busybox", "vcpus": 1, "memory": 128, "command": ["true"]},
    )
    return queue["jobQueueArn"], definition["jobDefinitionArn"]


def test_batch_refusal_shape_and_array_children_carry_no_tags(aws):
    queue, definition = make_batch(aws)
    job = client(aws.admin, "batch").submit_job(
        jobName="render-array",
        jobQueue=queue,
        jobDefinition=definition,
        arrayProperties={"size": 2},
        tags={"cloud-render:managed": "true"},
    )["jobId"]
    user = make_user(
        aws,
        "stopper",
        [
            {
                "Effect": "Allow",
                "Action": "batch:TerminateJob",
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:ResourceTag/cloud-render:managed": "true"}},
            }
        ],
    )
    batch = client(user, "batch")
    error = refused(batch.terminate_job, jobId=f"{job}:0", reason="stop")
    assert error["Error"]["Code"] == "AccessDeniedException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert f"job/{job}:0" in error["Error"]["Message"]
    batch.terminate_job(jobId=job, reason="stop")
    assert refused(batch.describe_job_queues)["Error"]["Code"] == "AccessDeniedException"


def test_batch_submit_checks_queue_definition_and_tagging(aws):
    queue, definition = make_batch(aws)
    base = {"Effect": "Allow", "Action": "batch:SubmitJob"}
    user = make_user(aws, "submitter", [{**base, "Resource": [queue, "arn:aws:batch:*:*:job/*", definition]}])
    batch = client(user, "batch")
    batch.submit_job(jobName="render-ok", jobQueue="render-q", jobDefinition="render")
    error = refused(
        batch.submit_job,
        jobName="render-tagged",
        jobQueue="render-q",
        jobDefinition="render",
        tags={"a": "b"},
    )
    assert "batch:TagResource" in error["Error"]["Message"]


def test_presigned_get_by_the_user(aws, monkeypatch):
    admin = client(aws.admin, "s3")
    admin.create_bucket(Bucket="cloud-render-d")
    admin.put_object(Bucket="cloud-render-d", Key="frames/1.png", Body=b"png")
    user = make_user(
        aws,
        "viewer",
        [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::cloud-render-d/frames/*"}],
    )
    s3 = client(user, "s3")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "cloud-render-d", "Key": "frames/1.png"})
    assert requests.get(url, timeout=10).content == b"png"

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    query["X-Amz-Signature"] = ["0" * 64]
    tampered = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
    reply = requests.get(tampered, timeout=10)
    assert (reply.status_code, b"<Code>SignatureDoesNotMatch</Code>" in reply.content) == (403, True)

    other = s3.generate_presigned_url("get_object", Params={"Bucket": "cloud-render-d", "Key": "secret.txt"})
    assert b"<Code>AccessDenied</Code>" in requests.get(other, timeout=10).content

    week = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "cloud-render-d", "Key": "frames/1.png"}, ExpiresIn=604801
    )
    reply = requests.get(week, timeout=10)
    assert reply.status_code == 400
    assert b"<Code>AuthorizationQueryParametersError</Code>" in reply.content

    import botocore.auth

    past = botocore.auth.get_current_datetime() - __import__("datetime").timedelta(hours=2)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: past)
    expired = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "cloud-render-d", "Key": "frames/1.png"}, ExpiresIn=3600
    )
    reply = requests.get(expired, timeout=10)
    assert reply.status_code == 403
    assert b"Request has expired" in reply.content


def test_presigned_post_by_the_user(aws):
    client(aws.admin, "s3").create_bucket(Bucket="cloud-render-e")
    user = make_user(
        aws,
        "poster",
        [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::cloud-render-e/in/*"}],
    )
    s3 = client(user, "s3")
    post = s3.generate_presigned_post("cloud-render-e", "in/a.blend", ExpiresIn=600)
    reply = requests.post(post["url"], data=post["fields"], files={"file": b"scene"}, timeout=10)
    assert reply.status_code in (200, 204), reply.text
    stored = client(aws.admin, "s3").get_object(Bucket="cloud-render-e", Key="in/a.blend")
    assert stored["Body"].read() == b"scene"

    outside = s3.generate_presigned_post("cloud-render-e", "out/a.blend", ExpiresIn=600)
    reply = requests.post(outside["url"], data=outside["fields"], files={"file": b"x"}, timeout=10)
    assert reply.status_code == 403
    assert b"<Code>AccessDenied</Code>" in reply.content

    fields = dict(post["fields"])
    import base64

    policy = json.loads(base64.b64decode(fields["policy"]))
    policy["conditions"].append({"x-extra": "y"})
    fields["policy"] = base64.b64encode(json.dumps(policy).encode()).decode()
    reply = requests.post(post["url"], data=fields, files={"file": b"x"}, timeout=10)
    assert reply.status_code == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in reply.content


def test_header_signature_with_wrong_secret_is_refused(aws):
    user = make_user(aws, "forger", [{"Effect": "Allow", "Action": "iam:*", "Resource": "*"}])
    forged = replace(user, secret_access_key="x" * 40)
    error = refused(client(forged, "iam").list_roles)
    assert error["Error"]["Code"] == "SignatureDoesNotMatch"
    client(user, "iam").list_roles()


def test_quota_server_asks_the_strict_layer(aws):
    from dev.quota_server import QuotaServer

    user = make_user(
        aws,
        "quotas",
        [{"Effect": "Allow", "Action": "servicequotas:GetServiceQuota", "Resource": "*"}],
    )
    with QuotaServer(authorizer=aws.url) as server:
        settings = replace(user, service_endpoints=(("service-quotas", server.url),))
        quotas = client(settings, "service-quotas")
        assert quotas.get_service_quota(ServiceCode="ec2", QuotaCode="L-1216C47A")["Quota"]["Value"] == 32.0
        error = refused(
            quotas.request_service_quota_increase,
            ServiceCode="ec2",
            QuotaCode="L-1216C47A",
            DesiredValue=64.0,
        )
        assert error["Error"]["Code"] == "AccessDeniedException"
        assert server.requests == []
