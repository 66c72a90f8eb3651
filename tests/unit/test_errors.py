"""Every AWS failure an artist can hit becomes a CloudError with plain words.

Provoked for real against moto where moto can (bad keys with its IAM auth switched on,
access denied, a bucket name another account owns, a missing profile, a closed port), and
through dev/error_server.py where it cannot (throttling, clock skew, capacity, quotas).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from botocore.exceptions import ClientError

from cloud.aws.error_rules import RULES, translate, translating
from cloud.aws.session import AwsSettings, client
from cloud.errors import CloudError
from dev.aws_emulator import SERVICES
from dev.error_server import (
    AwsReplyServer,
    SilentServer,
    closed_port_url,
    ec2_error,
    json_error,
    query_error,
    s3_error,
)


def provoke(settings: AwsSettings, service: str, call, **where) -> CloudError:
    with pytest.raises(CloudError) as caught, translating("testing", **where):
        call(client(settings, service))
    return caught.value


def assert_plain(err: CloudError) -> None:
    """One sentence each, no bare AWS code in what the artist reads."""
    assert err.message.endswith(".") and err.action.endswith(".")
    for word in ("Exception", "Error:", "botocore", "Traceback"):
        assert word not in err.message and word not in err.action


@pytest.fixture
def moto_auth(aws):
    """A user with only sts:GetCallerIdentity; the emulator's strict layer authorises as AWS."""
    iam = client(aws.admin, "iam")
    iam.create_user(UserName="whoami")
    key = iam.create_access_key(UserName="whoami")["AccessKey"]
    iam.put_user_policy(
        UserName="whoami",
        PolicyName="whoami-only",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}],
            }
        ),
    )
    return replace(
        aws.settings,
        access_key_id=key["AccessKeyId"],
        secret_access_key=key["SecretAccessKey"],
        max_attempts=1,
    )


def test_wrong_secret_is_bad_keys(moto_auth):
    wrong = replace(moto_auth, secret_access_key="A" * 40)
    err = provoke(wrong, "sts", lambda c: c.get_caller_identity())
    assert err.code == "bad_credentials"
    assert err.message == "AWS did not accept your access keys while testing."
    assert "paste" in err.action
    assert "SignatureDoesNotMatch" in err.detail


def test_unknown_key_id_is_bad_keys(moto_auth):
    unknown = replace(moto_auth, access_key_id="AKIAUNKNOWNKEY000000")
    err = provoke(unknown, "s3", lambda c: c.list_objects_v2(Bucket="cloud-render-x"))
    assert err.code == "bad_credentials"
    assert "InvalidAccessKeyId" in err.detail


def test_access_denied_names_the_missing_action(moto_auth):
    err = provoke(moto_auth, "ec2", lambda c: c.describe_instances())
    assert err.code == "access_denied"
    assert err.message == "Your AWS user is not allowed to use ec2:DescribeInstances while testing."
    assert "CloudRenderRender policy" in err.action


def test_s3_access_denied_names_the_action_from_the_operation(moto_auth):
    # S3 says only "Access Denied"; the action comes from the operation and our IAM table.
    err = provoke(moto_auth, "s3", lambda c: c.head_object(Bucket="cloud-render-x", Key="cas/abc"))
    assert err.code == "access_denied"
    assert "s3:GetObject" in err.message


def test_bucket_name_owned_by_another_account(aws):
    sts = client(aws.admin, "sts")  # another account's artist, made by the harness
    creds = sts.assume_role(RoleArn="arn:aws:iam::111111111111:role/other", RoleSessionName="other-artist")[
        "Credentials"
    ]
    other = replace(
        aws.settings,
        access_key_id=creds["AccessKeyId"],
        secret_access_key=creds["SecretAccessKey"],
        session_token=creds["SessionToken"],
    )
    client(other, "s3").create_bucket(Bucket="cloud-render-taken")
    err = provoke(aws.settings, "s3", lambda c: c.create_bucket(Bucket="cloud-render-taken"))
    assert err.code == "bucket_name_taken"
    assert (
        err.message == "The storage bucket name Cloud Render picked is already taken by another AWS account."
    )
    assert "new random name" in err.action


def test_missing_profile_is_no_credentials():
    err = provoke(AwsSettings(profile="no-such-profile"), "sts", lambda c: c.get_caller_identity())
    assert err.code == "no_credentials"
    assert "AWS profile" in err.action


def test_invalid_region_name():
    err = provoke(
        AwsSettings(region="not a region"), "sts", lambda c: c.get_caller_identity(), region="not a region"
    )
    assert err.code == "bad_region"
    assert "Pick a region" in err.action


def test_no_network(aws):
    with closed_port_url() as url:
        settings = replace(aws.settings, endpoint_url=url, max_attempts=1, connect_timeout=1)
        err = provoke(settings, "s3", lambda c: c.list_buckets())
    assert err.code == "no_network"
    assert err.message == "Cloud Render could not reach AWS while testing."
    assert "internet connection" in err.action
    assert_plain(err)


def test_server_that_never_answers_is_no_network(aws):
    with SilentServer() as silent:
        settings = replace(
            aws.settings, service_endpoints=(("sts", silent.url),), max_attempts=1, read_timeout=0.5
        )
        err = provoke(settings, "sts", lambda c: c.get_caller_identity())
    assert err.code == "no_network"


@pytest.fixture
def reply_server():
    with AwsReplyServer() as server:
        yield server


def at(server: AwsReplyServer, attempts: int = 1) -> AwsSettings:
    """Settings that send S3 (the artist's endpoint) and every other service to `server`."""
    return AwsSettings(
        access_key_id="AKIAEXAMPLETESTKEY00",
        secret_access_key="test-secret-not-real",
        endpoint_url=server.url,
        service_endpoints=tuple((service, server.url) for service in SERVICES),
        max_attempts=attempts,
    )


def test_throttling_is_reported_after_botocore_retried(reply_server):
    reply_server.reply = ec2_error("RequestLimitExceeded", "Request limit exceeded.", 503)
    err = provoke(at(reply_server, attempts=2), "ec2", lambda c: c.describe_instances())
    # AwsSettings.max_attempts counts every request, the first try included: 1 + 1 retry.
    assert len(reply_server.requests) == 2
    assert err.code == "throttled"
    assert err.action == "Wait a minute, then try again."
    assert_plain(err)


def test_clock_skew(reply_server):
    reply_server.reply = s3_error(
        "RequestTimeTooSkewed",
        "The difference between the request time and the current time is too large.",
        403,
    )
    err = provoke(at(reply_server), "s3", lambda c: c.list_objects_v2(Bucket="cloud-render-x"))
    assert err.code == "clock_skew"
    assert "clock" in err.message
    assert "automatic date and time" in err.action


def test_expired_session_token(reply_server):
    reply_server.reply = query_error(
        "ExpiredToken", "The security token included in the request is expired", 403
    )
    err = provoke(at(reply_server), "sts", lambda c: c.get_caller_identity())
    assert err.code == "expired_credentials"
    assert err.message == "Your AWS sign-in has expired while testing."
    assert "aws sso login" in err.action


def run_g5(c):
    c.run_instances(ImageId="ami-12345678", InstanceType="g5.xlarge", MinCount=1, MaxCount=1)


def test_insufficient_capacity_suggests_another_region_or_type(reply_server):
    reply_server.reply = ec2_error(
        "InsufficientInstanceCapacity", "We currently do not have sufficient g5.xlarge capacity."
    )
    err = provoke(at(reply_server), "ec2", run_g5, region="eu-west-1", instance_type="g5.xlarge")
    assert err.code == "no_capacity"
    assert err.message == "AWS has no free g5.xlarge machines in eu-west-1 right now."
    assert "another region or instance type" in err.action


def test_spot_capacity_suggests_on_demand(reply_server):
    reply_server.reply = ec2_error("InsufficientInstanceCapacity", "There is no Spot capacity available.")
    err = provoke(at(reply_server), "ec2", run_g5, region="us-east-1", instance_type="g5.xlarge", spot=True)
    assert err.code == "spot_capacity"
    assert "Spot" in err.action


def test_no_quota(reply_server):
    reply_server.reply = ec2_error(
        "VcpuLimitExceeded", "You have requested more vCPU capacity than your limit."
    )
    err = provoke(at(reply_server), "ec2", run_g5, region="us-east-1", instance_type="g5.xlarge")
    assert err.code == "no_quota"
    assert "quota" in err.message
    assert "Request quota increase" in err.action


def test_region_not_enabled(reply_server):
    reply_server.reply = ec2_error("OptInRequired", "You are not subscribed to this service.", 401)
    err = provoke(at(reply_server), "ec2", lambda c: c.describe_instances(), region="af-south-1")
    assert err.code == "region_unavailable"
    assert err.message == "The region in af-south-1 is not enabled for your AWS account."
    assert "AWS Regions" in err.action


def test_json_protocol_access_denied(reply_server):
    reply_server.reply = json_error(
        "AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/artist is not authorized to perform: servicequotas:GetServiceQuota",
    )
    err = provoke(
        at(reply_server),
        "service-quotas",
        lambda c: c.get_service_quota(ServiceCode="ec2", QuotaCode="L-DB2E81BA"),
    )
    assert err.code == "access_denied"
    assert "servicequotas:GetServiceQuota" in err.message


def test_unknown_aws_error_keeps_the_detail_for_the_log(reply_server):
    reply_server.reply = ec2_error("SomethingNew", "A brand new failure.")
    err = provoke(at(reply_server), "ec2", lambda c: c.describe_instances())
    assert err.code == "aws_error"
    assert err.message == "AWS refused a request while testing."
    assert "SomethingNew: A brand new failure." in err.detail
    assert "SomethingNew" not in err.message + err.action


def test_cloud_errors_and_foreign_exceptions_pass_through():
    original = CloudError("Already plain.", "Nothing to do.")
    assert translate(original) is original
    with pytest.raises(KeyError), translating("testing"):
        raise KeyError("not an AWS problem")


def test_each_rule_is_reached_by_its_codes_and_none_is_shadowed():
    """The table is read top-down: every code a rule lists leads to that rule's kind."""
    kinds = [rule.kind for rule in RULES]
    assert len(set(kinds)) == len(kinds) and kinds[-1] == "aws_error"
    for rule in RULES:
        for code in rule.codes:
            exc = ClientError({"Error": {"Code": code, "Message": "m"}}, "DescribeInstances")
            err = translate(exc, "testing", region="eu-west-1", instance_type="g5.xlarge")
            assert err.code == rule.kind, code
            assert "{" not in err.message + err.action and err.detail.startswith(f"{code}: m")
            assert_plain(err)
