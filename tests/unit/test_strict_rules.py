"""The strict layer's rules (dev/strict_aws/rules*.py): each refuses what AWS documents it refuses
and moto lets through, and lets the valid request pass; what moto already refuses is shown here
too, against moto itself, so no rule repeats it.

Requests are the real thing. A rule that needs no state is called directly: botocore serialises
each call (stopped before it is sent) and the strict layer's own parser (`dev/strict_aws/parse.py`)
turns it into an `AwsRequest`; presigned POSTs are the product's own (`cloud/aws/presign.py`) as
`requests` encodes the form. A rule that reads moto's state (what a user, role or job queue
already has) is tested through the `aws` fixture's server, the strict layer in front of moto in
its own process: the test arranges the state with real requests signed by the account's root
(`aws.admin`) and asserts the status, code and message the server answers, and that the valid
request is stored. The `test_moto_itself_*` tests send real requests to a plain `moto.server`
(no strict layer, `plain_moto`) to show what moto alone accepts or refuses. The end-to-end tests
at the bottom send the product's kind of calls through the strict server. Nothing here patches
boto3 or runs moto in this process.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from cloud.aws import session
from cloud.aws.presign import presign_post
from dev.aws_emulator import moto_server, reset
from dev.strict_aws import rules
from dev.strict_aws.model import AwsRequest, Refusal
from dev.strict_aws.parse import parse
from dev.strict_aws.rules_batch import ArraySize, AttemptTimeout
from dev.strict_aws.rules_common import members, non_whitespace_length
from dev.strict_aws.rules_ec2 import ClientTokenIdempotency, Ec2Tags, UserDataSize
from dev.strict_aws.rules_iam import ManagedPolicySize
from dev.strict_aws.rules_post import PostPolicy
from dev.strict_aws.rules_s3 import (
    Checksums,
    ConditionalConflicts,
    KeyLength,
    ListPage,
    MetadataSize,
    SinglePutSize,
    decode_aws_chunked,
)

NOWHERE = "http://127.0.0.1:9"  # never contacted: the request is stopped before it is sent
BUCKET = "strict-bucket"
REGION = "us-east-1"
MOTO_AMI = "ami-12c6146b"  # one of the images moto knows (describing them all takes seconds)


class _Stopped(Exception):
    def __init__(self, request: Any) -> None:
        self.request = request


@cache
def _client(service: str) -> Any:
    """A client as the product makes them (SigV4, path-style S3) for an endpoint never reached."""
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=NOWHERE,
        aws_access_key_id="AKIAEXAMPLETESTKEY00",
        aws_secret_access_key="test-secret-not-real",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}) if service == "s3" else None,
    )


def _stop(request: Any, **_: Any) -> None:
    raise _Stopped(request)


@cache
def _stopping(service: str) -> Any:
    """A client whose requests stop just before they would be sent: first of all `before-send`
    handlers, so that no other handler can answer them in a server's place."""
    client = _client(service)
    client.meta.events.register_first("before-send", _stop)
    return client


def captured(service: str, method: str, **kwargs: Any) -> AwsRequest:
    """The AwsRequest the strict layer would see for this boto3 call."""
    try:
        getattr(_stopping(service), method)(**kwargs)
    except _Stopped as stopped:
        sent = stopped.request
    else:  # pragma: no cover - the hook always stops it
        raise AssertionError("the request was sent")
    body = sent.body
    if hasattr(body, "read"):
        body = body.read()
    if isinstance(body, str):
        body = body.encode()
    url = urlsplit(sent.url)
    headers = {k.lower(): v.decode() if isinstance(v, bytes) else str(v) for k, v in sent.headers.items()}
    return parse(sent.method, url.path, url.query, headers, body or b"").request


def posted(post: dict[str, Any], file_name: str, content: bytes, **changes: str | None) -> AwsRequest:
    """A browser-style POST of a presigned POST's form, with fields changed (None: left out)."""
    fields = {**post["fields"], **{k: v for k, v in changes.items() if v is not None}}
    fields = {k: v for k, v in fields.items() if changes.get(k, "") is not None}
    prepared = requests.Request(
        "POST", post["url"], data=fields, files={"file": (file_name, content)}
    ).prepare()
    url = urlsplit(prepared.url)
    headers = {k.lower(): str(v) for k, v in prepared.headers.items()}
    body = prepared.body if isinstance(prepared.body, bytes) else str(prepared.body).encode()
    return parse("POST", url.path, url.query, headers, body).request


def refused(refusal: Refusal | None, status: int, code: str, text: str = "") -> None:
    assert refusal is not None, "the rule let it through"
    assert (refusal.status, refusal.code) == (status, code), refusal
    assert text in refusal.message, refusal.message


# --- through the strict server: rules that read moto's state -------------------------------------


@pytest.fixture
def strict(aws: Any) -> Any:
    """The `aws` fixture's emulated account, when its server is the strict layer."""
    answer = requests.get(f"{aws.url}/strict-api/", timeout=10)
    assert answer.status_code == 200 and answer.json().get("strict"), "the emulator must be the strict layer"
    return aws


def _admin(strict: Any, service: str) -> Any:
    """A client of the strict server signed with the account's root key (no IAM policy in the
    way: what answers is the rules, then moto)."""
    return session.client(strict.admin, service)


def server_refuses(call: Callable[..., Any], status: int, code: str, text: str = "", **kwargs: Any) -> str:
    """`call(**kwargs)` is answered with this HTTP status, error code and (part of a) message; the
    message."""
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    response = caught.value.response
    answered = (response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"])
    assert answered == (status, code), response["Error"]
    message = str(response["Error"].get("Message", ""))
    assert text in message, message
    return message


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    """The HTTP status and error code of a refusal."""
    return exc.value.response["ResponseMetadata"]["HTTPStatusCode"], exc.value.response["Error"]["Code"]


# --- plain moto: what moto accepts or refuses without the strict layer -------------------------


@pytest.fixture(scope="session")
def plain_moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_server(tmp_path_factory.mktemp("plain-moto") / "moto.log", strict=False) as url:
        yield url


@pytest.fixture
def plain_moto(plain_moto_url: str) -> str:
    """The plain moto server, emptied for this test; its URL."""
    reset(plain_moto_url)
    return plain_moto_url


def _plain(url: str, service: str, **config: Any) -> Any:
    """A client of the plain moto server at `url` (path-style S3, dummy keys)."""
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="AKIAEXAMPLETESTKEY00",
        aws_secret_access_key="test-secret-not-real",
        config=Config(s3={"addressing_style": "path"}, **config),
    )


# --- the rule list itself ----------------------------------------------------------------------


def test_every_rule_has_a_name_and_the_aws_page_it_comes_from() -> None:
    names = [rule.name for rule in rules.RULES]
    assert len(names) == len(set(names))
    for rule in rules.RULES:
        assert "https://docs.aws.amazon.com/" in rule.doc, rule.name
        assert rule.__doc__, rule.name  # what AWS refuses, in words


def test_members_reads_query_protocol_lists_in_index_order() -> None:
    params = {"Tag.2.Key": "b", "Tag.10.Key": "c", "Tag.1.Key": "a", "Tag.1.Value": "x", "Other": "y"}
    assert members(params, "Tag") == [{"Key": "a", "Value": "x"}, {"Key": "b"}, {"Key": "c"}]
    assert non_whitespace_length('{ "a" :\n\t"b c" }') == 10


# --- 1. IAM policy sizes -----------------------------------------------------------------------


def _policy(size: int) -> str:
    """A policy document of `size` characters, white space not counted, plus white space."""
    base = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": ""}],
    }
    compact = json.dumps(base, separators=(",", ":"))
    base["Statement"][0]["Resource"] = "arn:aws:s3:::" + "x" * (size - len(compact) - len("arn:aws:s3:::"))
    text = json.dumps(base, indent=4)  # white space that must not count
    assert non_whitespace_length(text) == size
    return text


def test_managed_policy_over_6144_characters_is_refused_white_space_not_counted() -> None:
    rule = ManagedPolicySize()
    too_big = captured("iam", "create_policy", PolicyName="p", PolicyDocument=_policy(6145))
    refused(rule.check(too_big), 409, "LimitExceeded", "Cannot exceed quota for PolicySize: 6144")
    assert rule.check(captured("iam", "create_policy", PolicyName="p", PolicyDocument=_policy(6144))) is None
    version = captured(
        "iam",
        "create_policy_version",
        PolicyArn="arn:aws:iam::123456789012:policy/p",
        PolicyDocument=_policy(6145),
    )
    refused(rule.check(version), 409, "LimitExceeded", "PolicySize")


def _inline_names(iam: Any, kind: str, name: str) -> list[str]:
    listed = getattr(iam, f"list_{kind}_policies")(**{f"{kind.title()}Name": name})
    return sorted(listed["PolicyNames"])


def _inline_size(iam: Any, kind: str, name: str, policy: str) -> int:
    """The size, white space not counted, of the inline policy moto stored."""
    stored = getattr(iam, f"get_{kind}_policy")(**{f"{kind.title()}Name": name, "PolicyName": policy})
    document = stored["PolicyDocument"]  # botocore decodes it into a dict
    return non_whitespace_length(json.dumps(document) if isinstance(document, dict) else str(document))


def test_user_inline_policies_together_over_2048_are_refused(strict: Any) -> None:
    iam = _admin(strict, "iam")
    iam.create_user(UserName="render")
    iam.put_user_policy(UserName="render", PolicyName="first", PolicyDocument=_policy(1500))
    server_refuses(
        iam.put_user_policy,
        409,
        "LimitExceeded",
        "Cannot exceed quota for UserPolicySize: 2048",
        UserName="render",
        PolicyName="second",
        PolicyDocument=_policy(600),
    )
    assert _inline_names(iam, "user", "render") == ["first"]  # the refused one was not stored
    # A policy of the same name replaces the old one: only the new document counts (1,500 + 2,000
    # would not fit).
    iam.put_user_policy(UserName="render", PolicyName="first", PolicyDocument=_policy(2000))
    assert _inline_size(iam, "user", "render", "first") == 2000
    iam.put_user_policy(UserName="render", PolicyName="first", PolicyDocument=_policy(1500))
    iam.put_user_policy(UserName="render", PolicyName="second", PolicyDocument=_policy(500))  # fits
    assert _inline_names(iam, "user", "render") == ["first", "second"]
    assert _inline_size(iam, "user", "render", "second") == 500
    # Replacing one of two: the other still counts, the replaced one does not (500 + 1,548 fit).
    server_refuses(
        iam.put_user_policy,
        409,
        "LimitExceeded",
        "UserPolicySize: 2048",
        UserName="render",
        PolicyName="first",
        PolicyDocument=_policy(1549),
    )
    iam.put_user_policy(UserName="render", PolicyName="first", PolicyDocument=_policy(1548))
    assert _inline_size(iam, "user", "render", "first") == 1548


def test_role_inline_policies_together_over_10240_are_refused(strict: Any) -> None:
    iam = _admin(strict, "iam")
    iam.create_role(RoleName="machine", AssumeRolePolicyDocument=_policy(200))
    iam.put_role_policy(RoleName="machine", PolicyName="a", PolicyDocument=_policy(6000))
    server_refuses(
        iam.put_role_policy,
        409,
        "LimitExceeded",
        "RolePolicySize: 10240",
        RoleName="machine",
        PolicyName="b",
        PolicyDocument=_policy(4300),
    )
    assert _inline_names(iam, "role", "machine") == ["a"]
    iam.put_role_policy(RoleName="machine", PolicyName="b", PolicyDocument=_policy(4200))  # fits
    assert _inline_names(iam, "role", "machine") == ["a", "b"]
    assert _inline_size(iam, "role", "machine", "b") == 4200


def test_moto_itself_accepts_oversized_policies(plain_moto: str) -> None:
    """Why the size rules exist: moto keeps none of these quotas."""
    iam = _plain(plain_moto, "iam")
    iam.create_policy(PolicyName="big", PolicyDocument=_policy(7000))
    iam.create_user(UserName="u")
    iam.put_user_policy(UserName="u", PolicyName="big", PolicyDocument=_policy(3000))
    assert _inline_size(iam, "user", "u", "big") == 3000


@pytest.mark.parametrize(("kind", "quota"), [("user", "PoliciesPerUser"), ("role", "PoliciesPerRole")])
def test_an_eleventh_managed_policy_is_refused(strict: Any, kind: str, quota: str) -> None:
    iam = _admin(strict, "iam")
    if kind == "user":
        iam.create_user(UserName="who")
    else:
        iam.create_role(RoleName="who", AssumeRolePolicyDocument=_policy(200))
    arns = [
        iam.create_policy(PolicyName=f"p{i}", PolicyDocument=_policy(200))["Policy"]["Arn"] for i in range(11)
    ]
    attach = getattr(iam, f"attach_{kind}_policy")
    who = {f"{kind.title()}Name": "who"}
    for arn in arns[:10]:
        attach(**who, PolicyArn=arn)

    def attached() -> list[str]:
        listed = getattr(iam, f"list_attached_{kind}_policies")(**who)["AttachedPolicies"]
        return sorted(policy["PolicyArn"] for policy in listed)

    server_refuses(
        attach, 409, "LimitExceeded", f"Cannot exceed quota for {quota}: 10", **who, PolicyArn=arns[10]
    )
    assert attached() == sorted(arns[:10])
    attach(**who, PolicyArn=arns[3])  # already attached: nothing changes
    assert attached() == sorted(arns[:10])


# --- 2. Presigned POST -------------------------------------------------------------------------


@pytest.fixture
def post() -> dict[str, Any]:
    """The product's own presigned POST: keys under `jobs/j1/frames/`, at most 1,000 bytes."""
    return presign_post(_client("s3"), BUCKET, "jobs/j1/frames/", 600, 1000)


def test_the_products_presigned_post_passes(post: dict[str, Any]) -> None:
    request = posted(post, "0001.png", b"x" * 1000)
    assert request.operation == "PostObject"
    assert PostPolicy().check(request) is None
    assert KeyLength().check(request) is None


def test_the_machines_own_post_body_passes_and_a_key_outside_its_prefix_does_not(
    post: dict[str, Any],
) -> None:
    """The render machine's multipart encoder (cloud/machine/transport.py), not requests'."""
    from cloud.machine.transport import multipart

    def machine_post(key: str) -> AwsRequest:
        body, content_type = multipart({**post["fields"], "key": key}, key.rsplit("/", 1)[-1], b"png")
        path = urlsplit(post["url"]).path
        return parse(
            "POST", path, "", {"content-type": content_type, "content-length": str(len(body))}, body
        ).request

    assert PostPolicy().check(machine_post("jobs/j1/frames/cam/0001.png")) is None
    refused(PostPolicy().check(machine_post("jobs/other/0001.png")), 403, "AccessDenied")


def test_a_post_key_outside_the_starts_with_prefix_is_refused(post: dict[str, Any]) -> None:
    request = posted(post, "0001.png", b"x", key="jobs/j2/frames/${filename}")
    refused(
        PostPolicy().check(request),
        403,
        "AccessDenied",
        'Invalid according to Policy: Policy Condition failed: ["starts-with", "$key", "jobs/j1/frames/"]',
    )


def test_filename_is_replaced_in_the_key_before_the_conditions(post: dict[str, Any]) -> None:
    from dev.strict_aws.rules_post import file_name, post_upload

    request = posted(post, "../0001.png", b"x")
    assert file_name(request) == "0001.png"
    upload = post_upload(request)
    assert upload is not None and upload.key == "jobs/j1/frames/0001.png"


@pytest.mark.parametrize(
    ("size", "code", "text"),
    [(1001, "EntityTooLarge", "exceeds the maximum"), (0, "EntityTooSmall", "smaller than the minimum")],
)
def test_a_post_file_outside_content_length_range_is_refused(size: int, code: str, text: str) -> None:
    s3 = _client("s3")
    post = s3.generate_presigned_post(
        BUCKET,
        "in/${filename}",
        Conditions=[["starts-with", "$key", "in/"], ["content-length-range", 1, 1000]],
    )
    refused(PostPolicy().check(posted(post, "f", b"x" * size)), 400, code, text)
    assert PostPolicy().check(posted(post, "f", b"x" * 1000)) is None
    assert PostPolicy().check(posted(post, "f", b"x")) is None


def test_a_post_to_another_bucket_is_refused(post: dict[str, Any]) -> None:
    other = dict(post, url=post["url"].replace(BUCKET, "someone-elses-bucket"))
    refused(
        PostPolicy().check(posted(other, "f", b"x")),
        403,
        "AccessDenied",
        f'Policy Condition failed: ["eq", "$bucket", "{BUCKET}"]',
    )


def test_a_post_whose_eq_condition_fails_is_refused() -> None:
    s3 = _client("s3")
    post = s3.generate_presigned_post(
        BUCKET, "k", Fields={"Content-Type": "image/png"}, Conditions=[{"Content-Type": "image/png"}]
    )
    assert PostPolicy().check(posted(post, "f", b"x")) is None
    refused(
        PostPolicy().check(posted(post, "f", b"x", **{"Content-Type": "text/html"})),
        403,
        "AccessDenied",
        'Policy Condition failed: ["eq", "$Content-Type", "image/png"]',
    )
    refused(PostPolicy().check(posted(post, "f", b"x", key="other")), 403, "AccessDenied", '"$key", "k"')


def test_a_post_field_no_condition_names_is_refused_ignored_fields_pass(post: dict[str, Any]) -> None:
    request = posted(post, "f", b"x", **{"x-amz-meta-note": "hi", "acl": "public-read"})
    refused(PostPolicy().check(request), 403, "AccessDenied", "Extra input fields: acl, x-amz-meta-note")
    assert PostPolicy().check(posted(post, "f", b"x", **{"x-ignore-tracker": "1"})) is None


def test_moto_itself_stores_a_post_outside_its_policy(plain_moto: str) -> None:
    """Why the POST rule exists: moto never reads the policy's conditions."""
    s3 = _plain(plain_moto, "s3")
    s3.create_bucket(Bucket=BUCKET)
    post = presign_post(s3, BUCKET, "jobs/j1/frames/", 600, 10)
    fields = {**post["fields"], "key": "elsewhere/${filename}"}
    # A real HTTP POST to the plain server, as a browser (or the render machine) sends it.
    answer = requests.post(post["url"], data=fields, files={"file": ("f", b"x" * 100)}, timeout=10)
    assert answer.status_code in (200, 201, 204), answer.text
    assert s3.get_object(Bucket=BUCKET, Key="elsewhere/f")["Body"].read() == b"x" * 100


# --- 3. EC2 user data --------------------------------------------------------------------------


def test_user_data_over_16384_bytes_before_base64_is_refused() -> None:
    rule = UserDataSize()
    run = captured("ec2", "run_instances", ImageId="ami-1", MinCount=1, MaxCount=1, UserData="x" * 16385)
    refused(rule.check(run), 400, "InvalidParameterValue", "User data is limited to 16384 bytes")
    # 16,384 raw bytes are 21,848 after base64: the raw size is what counts.
    fits = captured("ec2", "run_instances", ImageId="ami-1", MinCount=1, MaxCount=1, UserData="x" * 16384)
    assert rule.check(fits) is None
    template = captured(
        "ec2",
        "create_launch_template",
        LaunchTemplateName="tpl",
        LaunchTemplateData={"UserData": base64.b64encode(b"y" * 20000).decode()},
    )
    refused(rule.check(template), 400, "InvalidParameterValue")
    version = captured(
        "ec2",
        "create_launch_template_version",
        LaunchTemplateName="tpl",
        LaunchTemplateData={"UserData": base64.b64encode(b"y" * 100).decode()},
    )
    assert rule.check(version) is None


# --- 4. Tags -----------------------------------------------------------------------------------


def _tags(count: int, key: str = "k", value: str = "v") -> list[dict[str, str]]:
    return [{"Key": f"{key}{i}" if count > 1 else key, "Value": value} for i in range(count)]


@pytest.mark.parametrize(
    ("tags", "code", "text"),
    [
        (_tags(1, key="k" * 129), "InvalidParameterValue", "128"),
        (_tags(1, value="v" * 257), "InvalidParameterValue", "256"),
        (_tags(1, key="aws:cloudformation:stack"), "InvalidParameterValue", "reserved"),
    ],
)
def test_ec2_tag_specifications_beyond_the_limits_are_refused(
    tags: list[dict[str, str]], code: str, text: str
) -> None:
    rule = Ec2Tags()
    spec = [{"ResourceType": "instance", "Tags": tags}]
    run = captured("ec2", "run_instances", ImageId="ami-1", MinCount=1, MaxCount=1, TagSpecifications=spec)
    refused(rule.check(run), 400, code, text)
    group = captured(
        "ec2",
        "create_security_group",
        GroupName="g",
        Description="d",
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
    )
    refused(rule.check(group), 400, code, text)
    refused(rule.check(captured("ec2", "create_tags", Resources=["i-1"], Tags=tags)), 400, code, text)


def test_ec2_launch_template_instance_tags_over_50_are_refused_valid_tags_pass() -> None:
    rule = Ec2Tags()
    data = {"TagSpecifications": [{"ResourceType": "instance", "Tags": _tags(51)}]}
    template = captured("ec2", "create_launch_template", LaunchTemplateName="tpl", LaunchTemplateData=data)
    refused(rule.check(template), 400, "TagLimitExceeded")
    fine = captured(
        "ec2",
        "run_instances",
        ImageId="ami-1",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": _tags(50, key="k" * 120, value="v" * 256)}],
    )
    assert rule.check(fine) is None


def test_moto_itself_counts_ec2_tags_but_not_their_length_or_prefix(plain_moto: str) -> None:
    ec2 = _plain(plain_moto, "ec2")
    image = MOTO_AMI
    with pytest.raises(ClientError) as error:
        ec2.run_instances(
            ImageId=image,
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": _tags(51)}],
        )
    assert error.value.response["Error"]["Code"] == "TagLimitExceeded"
    launched = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": _tags(1, "aws:x")}],
    )
    assert launched["Instances"][0]["Tags"] == _tags(1, "aws:x")


def test_iam_tags_beyond_the_limits_are_refused_where_moto_does_not(strict: Any) -> None:
    iam = _admin(strict, "iam")
    server_refuses(iam.create_user, 400, "ValidationError", "50", UserName="u", Tags=_tags(51))
    server_refuses(
        iam.create_instance_profile,
        400,
        "ValidationError",
        "128",
        InstanceProfileName="p",
        Tags=_tags(1, "k" * 129),
    )
    server_refuses(
        iam.create_role,
        400,
        "InvalidInput",
        "aws:",
        RoleName="r",
        AssumeRolePolicyDocument="{}",
        Tags=_tags(1, "aws:x"),
    )
    # None of the refused ones was made.
    assert "u" not in [user["UserName"] for user in iam.list_users()["Users"]]
    assert "p" not in [
        profile["InstanceProfileName"] for profile in iam.list_instance_profiles()["InstanceProfiles"]
    ]
    assert "r" not in [role["RoleName"] for role in iam.list_roles()["Roles"]]
    iam.create_user(UserName="u", Tags=_tags(50))
    assert len(iam.list_user_tags(UserName="u")["Tags"]) == 50
    # Across calls: a role with 40 tags cannot take 20 more.
    iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}", Tags=_tags(40, key="a"))
    server_refuses(
        iam.tag_role, 409, "LimitExceeded", "TagsPerRole: 50", RoleName="r", Tags=_tags(20, key="b")
    )
    assert len(iam.list_role_tags(RoleName="r")["Tags"]) == 40
    iam.tag_role(RoleName="r", Tags=_tags(10, key="b"))
    assert len(iam.list_role_tags(RoleName="r")["Tags"]) == 50
    iam.create_user(UserName="v", Tags=_tags(45, key="a"))
    server_refuses(iam.tag_user, 409, "LimitExceeded", UserName="v", Tags=_tags(6, key="b"))
    # Retagging keys it has already does not add to the count.
    iam.tag_user(UserName="v", Tags=_tags(6, key="a"))
    assert len(iam.list_user_tags(UserName="v")["Tags"]) == 45


def test_moto_itself_refuses_too_many_role_tags_and_object_tags(plain_moto: str) -> None:
    iam = _plain(plain_moto, "iam")
    with pytest.raises(ClientError) as error:
        iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}", Tags=_tags(51))
    assert error.value.response["Error"]["Code"] == "ValidationError"
    s3 = _plain(plain_moto, "s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    for tags in (_tags(11), _tags(1, "aws:x")):
        with pytest.raises(ClientError):
            s3.put_object_tagging(Bucket=BUCKET, Key="k", Tagging={"TagSet": tags})


def test_batch_tags_beyond_the_limits_are_refused(strict: Any) -> None:
    ec2, iam, batch = _admin(strict, "ec2"), _admin(strict, "iam"), _admin(strict, "batch")
    made = _make_gpu_queue(ec2, iam, batch)  # each refused call below is otherwise valid
    many = {f"k{i}": "v" for i in range(51)}
    server_refuses(
        batch.create_job_queue,
        400,
        "ClientException",
        "at most 50",
        jobQueueName="q2",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "gpu"}],
        tags=many,
    )
    server_refuses(
        batch.create_compute_environment,
        400,
        "ClientException",
        "aws:",
        computeEnvironmentName="e",
        type="MANAGED",
        serviceRole=made["service_role"],
        computeResources={**made["compute_resources"], "tags": {"aws:owner": "me"}},
        tags={"a": "b"},
    )
    server_refuses(
        batch.register_job_definition,
        400,
        "ClientException",
        jobDefinitionName="d2",
        type="container",
        containerProperties={"image": "i"},
        tags=many,
    )
    assert [q["jobQueueName"] for q in batch.describe_job_queues()["jobQueues"]] == ["q"]
    environments = batch.describe_compute_environments()["computeEnvironments"]
    assert [e["computeEnvironmentName"] for e in environments] == ["gpu"]
    assert batch.describe_job_definitions(jobDefinitionName="d2")["jobDefinitions"] == []
    arn = made["queue_arn"]
    server_refuses(batch.tag_resource, 400, "ClientException", resourceArn=arn, tags={"k": "v" * 257})
    assert batch.list_tags_for_resource(resourceArn=arn)["tags"] == {}
    batch.tag_resource(resourceArn=arn, tags={"k": "v" * 256})
    assert batch.list_tags_for_resource(resourceArn=arn)["tags"] == {"k": "v" * 256}
    # SubmitJob: moto refuses 51 tags too, but only after queueing the job, which then lists as
    # SUBMITTED for ever; the layer refuses it before moto, so no such job exists.
    server_refuses(
        batch.submit_job,
        400,
        "ClientException",
        "at most 50",
        jobName="render",
        jobQueue="q",
        jobDefinition="d",
        tags=many,
    )
    assert batch.list_jobs(jobQueue="q", jobStatus="SUBMITTED")["jobSummaryList"] == []
    batch.submit_job(jobName="render", jobQueue="q", jobDefinition="d", tags={"k": "v"})


def test_group_inline_policies_together_over_5120_are_refused(strict: Any) -> None:
    iam = _admin(strict, "iam")
    iam.create_group(GroupName="artists")
    iam.put_group_policy(GroupName="artists", PolicyName="a", PolicyDocument=_policy(3000))
    server_refuses(
        iam.put_group_policy,
        409,
        "LimitExceeded",
        "GroupPolicySize: 5120",
        GroupName="artists",
        PolicyName="b",
        PolicyDocument=_policy(2200),
    )
    assert iam.list_group_policies(GroupName="artists")["PolicyNames"] == ["a"]
    iam.put_group_policy(GroupName="artists", PolicyName="b", PolicyDocument=_policy(2100))  # fits
    assert iam.list_group_policies(GroupName="artists")["PolicyNames"] == ["a", "b"]


def _profile_tags(iam: Any, name: str) -> list[dict[str, str]]:
    """An instance profile's tags (moto has no ListInstanceProfileTags; GetInstanceProfile has them)."""
    return list(iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"].get("Tags", []))


def test_instance_profile_and_policy_tags_count_what_they_have(strict: Any) -> None:
    """TagInstanceProfile and TagPolicy: the 50 count the tags already there, as for users and
    roles; `aws:` keys are refused on both (moto counts neither across calls nor the prefix)."""
    iam = _admin(strict, "iam")
    iam.create_instance_profile(InstanceProfileName="p", Tags=_tags(45, key="a"))
    server_refuses(
        iam.tag_instance_profile, 409, "LimitExceeded", "50", InstanceProfileName="p", Tags=_tags(6, key="b")
    )
    assert len(_profile_tags(iam, "p")) == 45
    iam.tag_instance_profile(InstanceProfileName="p", Tags=_tags(6, key="a"))  # the same keys again
    iam.tag_instance_profile(InstanceProfileName="p", Tags=_tags(5, key="b"))
    assert len(_profile_tags(iam, "p")) == 50
    arn = iam.create_policy(PolicyName="pol", PolicyDocument=_policy(200), Tags=_tags(45, key="a"))["Policy"][
        "Arn"
    ]
    server_refuses(iam.tag_policy, 409, "LimitExceeded", "50", PolicyArn=arn, Tags=_tags(6, key="b"))
    server_refuses(iam.tag_policy, 400, "InvalidInput", "aws:", PolicyArn=arn, Tags=_tags(1, "aws:x"))
    assert len(iam.list_policy_tags(PolicyArn=arn)["Tags"]) == 45
    iam.tag_policy(PolicyArn=arn, Tags=_tags(5, key="b"))
    assert len(iam.list_policy_tags(PolicyArn=arn)["Tags"]) == 50


# --- 5. ClientToken idempotency ----------------------------------------------------------------


def _launch(token: str, instance_type: str = "t3.micro") -> AwsRequest:
    return captured(
        "ec2",
        "run_instances",
        ImageId="ami-1",
        MinCount=1,
        MaxCount=1,
        InstanceType=instance_type,
        ClientToken=token,
    )


def test_a_repeated_client_token_gets_the_first_answer_again() -> None:
    rule = ClientTokenIdempotency()
    first = _launch("tok-1")
    assert rule.check(first) is None and rule.respond(first) is None  # the first goes to moto
    answer = (200, [("Content-Type", "text/xml")], b"<RunInstancesResponse>i-0abc</RunInstancesResponse>")
    rule.record(first, *answer)
    again = _launch("tok-1")
    assert rule.check(again) is None
    assert rule.respond(again) == answer
    assert rule.respond(_launch("tok-2")) is None  # another token: another launch


def test_a_client_token_with_other_parameters_is_refused() -> None:
    rule = ClientTokenIdempotency()
    first = _launch("tok-1")
    rule.respond(first)
    rule.record(first, 200, [], b"<ok/>")
    refused(rule.check(_launch("tok-1", "g5.xlarge")), 400, "IdempotentParameterMismatch")


def test_a_repeat_waits_for_the_first_answer_and_a_refused_launch_frees_its_token() -> None:
    rule = ClientTokenIdempotency()
    first = _launch("tok-1")
    assert rule.respond(first) is None
    replies: list[Any] = []
    waiter = threading.Thread(target=lambda: replies.append(rule.respond(_launch("tok-1"))))
    waiter.start()
    rule.record(first, 200, [], b"<first/>")
    waiter.join(timeout=30)
    assert replies == [(200, [], b"<first/>")]
    failed = _launch("tok-2")
    rule.respond(failed)
    rule.record(failed, 400, [], b"<Error/>")
    assert rule.respond(_launch("tok-2")) is None  # tried again for real


def test_reset_forgets_client_tokens() -> None:
    rule = next(r for r in rules.RULES if isinstance(r, ClientTokenIdempotency))
    first = _launch("tok-reset")
    rule.respond(first)
    rule.record(first, 200, [], b"<ok/>")
    rules.reset()
    assert rule.respond(_launch("tok-reset")) is None
    rules.reset()


def test_moto_itself_starts_a_new_machine_for_a_repeated_token(plain_moto: str) -> None:
    ec2 = _plain(plain_moto, "ec2")
    image = MOTO_AMI
    ids = {
        ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, ClientToken="same")["Instances"][0][
            "InstanceId"
        ]
        for _ in range(2)
    }
    assert len(ids) == 2


# --- 6. S3 key length --------------------------------------------------------------------------


def test_keys_over_1024_utf8_bytes_are_refused() -> None:
    rule = KeyLength()
    long_key = "é" * 513  # 1,026 bytes in 513 characters
    refused(
        rule.check(captured("s3", "put_object", Bucket=BUCKET, Key=long_key, Body=b"x")),
        400,
        "KeyTooLongError",
    )
    refused(
        rule.check(captured("s3", "create_multipart_upload", Bucket=BUCKET, Key=long_key)),
        400,
        "KeyTooLongError",
    )
    copy = captured(
        "s3", "copy_object", Bucket=BUCKET, Key=long_key, CopySource={"Bucket": BUCKET, "Key": "a"}
    )
    refused(rule.check(copy), 400, "KeyTooLongError")
    assert rule.check(captured("s3", "put_object", Bucket=BUCKET, Key="é" * 512, Body=b"x")) is None
    post = _client("s3").generate_presigned_post(
        BUCKET, "p/${filename}", Conditions=[["starts-with", "$key", "p/"]]
    )
    refused(rule.check(posted(post, "f" * 1023, b"x")), 400, "KeyTooLongError")
    assert rule.check(posted(post, "f" * 1022, b"x")) is None


def test_moto_itself_stores_a_key_over_1024_bytes(plain_moto: str) -> None:
    s3 = _plain(plain_moto, "s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="k" * 1100, Body=b"x")
    assert s3.get_object(Bucket=BUCKET, Key="k" * 1100)["Body"].read() == b"x"


# --- 7. List pages -----------------------------------------------------------------------------


def test_list_max_keys_over_1000_is_lowered_to_1000() -> None:
    rule = ListPage()
    request = captured("s3", "list_objects_v2", Bucket=BUCKET, Prefix="p/", MaxKeys=5000)
    assert rule.check(request) is None
    rules.adjust(request)
    assert request.query["max-keys"] == ["1000"] and request.params["max-keys"] == "1000"
    small = captured("s3", "list_objects_v2", Bucket=BUCKET, MaxKeys=10)
    rule.adjust(small)
    assert small.query["max-keys"] == ["10"]
    url = _client("s3").generate_presigned_url(
        "list_objects_v2", Params={"Bucket": BUCKET, "Prefix": "p/", "MaxKeys": 2000}
    )
    parts = urlsplit(url)
    presigned = parse("GET", parts.path, parts.query, {"host": "127.0.0.1:9"}, b"").request
    assert presigned.presigned and presigned.operation == "ListObjectsV2"
    rule.adjust(presigned)
    assert presigned.query["max-keys"] == ["1000"]


def test_moto_itself_answers_more_than_1000_keys_when_asked(plain_moto: str) -> None:
    s3 = _plain(plain_moto, "s3", max_pool_connections=4)
    s3.create_bucket(Bucket=BUCKET)
    keys = [f"p/{i:05}" for i in range(1001)]
    with ThreadPoolExecutor(max_workers=4) as pool:  # a thousand PutObjects, a few at a time
        list(pool.map(lambda key: s3.put_object(Bucket=BUCKET, Key=key, Body=b""), keys))
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="p/", MaxKeys=5000)["KeyCount"] == 1001
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="p/")["KeyCount"] == 1000  # moto's default is right


# --- 8. AWS Batch ------------------------------------------------------------------------------


def _submit(**extra: Any) -> AwsRequest:
    return captured("batch", "submit_job", **{"jobName": "j", "jobQueue": "q", "jobDefinition": "d", **extra})


def test_array_size_outside_2_to_10000_is_refused() -> None:
    rule = ArraySize()
    for size in (1, 10_001):
        refused(
            rule.check(_submit(arrayProperties={"size": size})), 400, "ClientException", "between 2 and 10000"
        )
    for size in (2, 10_000):
        assert rule.check(_submit(arrayProperties={"size": size})) is None
    assert rule.check(_submit()) is None


def test_attempt_timeout_under_60_seconds_is_refused() -> None:
    rule = AttemptTimeout()
    refused(
        rule.check(_submit(timeout={"attemptDurationSeconds": 59})), 400, "ClientException", "at least 60"
    )
    definition = captured(
        "batch",
        "register_job_definition",
        jobDefinitionName="d",
        type="container",
        containerProperties={"image": "i"},
        timeout={"attemptDurationSeconds": 10},
    )
    refused(rule.check(definition), 400, "ClientException")
    assert rule.check(_submit(timeout={"attemptDurationSeconds": 60})) is None


def _make_gpu_queue(ec2: Any, iam: Any, batch: Any) -> dict[str, Any]:
    """A job queue `q` whose only compute environment `gpu` launches g5.xlarge (4 vCPUs, 16 GiB,
    1 GPU), and a job definition `d` asking 1 vCPU, 2 GiB and 1 GPU, as Set Up makes them, made
    with these clients; the queue's ARN and what the environment was made of."""
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:1]
    group = ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    role = iam.create_role(RoleName="batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    profile = iam.create_instance_profile(InstanceProfileName="machines")["InstanceProfile"]["Arn"]
    resources = {
        "type": "EC2",
        "minvCpus": 0,
        "maxvCpus": 8,
        "instanceTypes": ["g5.xlarge"],
        "subnets": subnets,
        "securityGroupIds": [group],
        "instanceRole": profile,
    }
    batch.create_compute_environment(
        computeEnvironmentName="gpu",
        type="MANAGED",
        state="ENABLED",
        serviceRole=role,
        computeResources=resources,
    )
    queue = batch.create_job_queue(
        jobQueueName="q",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "gpu"}],
    )
    requirements = [
        {"type": "VCPU", "value": "1"},
        {"type": "MEMORY", "value": "2048"},
        {"type": "GPU", "value": "1"},
    ]
    batch.register_job_definition(
        jobDefinitionName="d",
        type="container",
        containerProperties={"image": "i", "resourceRequirements": requirements},
    )
    return {"queue_arn": queue["jobQueueArn"], "service_role": role, "compute_resources": resources}


def _jobs(batch: Any) -> list[str]:
    """The ids of every job of queue `q`, whatever its status (a filter lists every status)."""
    listed = batch.list_jobs(jobQueue="q", filters=[{"name": "JOB_NAME", "values": ["*"]}])
    return sorted(job["jobId"] for job in listed["jobSummaryList"])


def test_a_job_no_machine_of_its_queue_can_run_is_refused(strict: Any) -> None:
    batch = _admin(strict, "batch")
    _make_gpu_queue(_admin(strict, "ec2"), _admin(strict, "iam"), batch)
    # "render", not "j": moto refuses a one-character job name, which AWS allows (1 to 128).
    submit = {"jobName": "render", "jobQueue": "q", "jobDefinition": "d"}
    first = batch.submit_job(**submit)["jobId"]
    for need, what in (
        (("VCPU", "5"), "5 vCPU"),
        (("MEMORY", "16385"), "16385 MiB"),
        (("GPU", "2"), "2 GPU"),
    ):
        overrides = {"resourceRequirements": [{"type": need[0], "value": need[1]}]}
        message = server_refuses(
            batch.submit_job,
            400,
            "ClientException",
            "RUNNABLE forever",
            **submit,
            containerOverrides=overrides,
        )
        assert what in message
    assert _jobs(batch) == [first]  # none of the refused ones was submitted
    fits = {"resourceRequirements": [{"type": "VCPU", "value": "4"}, {"type": "MEMORY", "value": "16384"}]}
    second = batch.submit_job(**submit, containerOverrides=fits)["jobId"]
    assert _jobs(batch) == sorted([first, second])
    # An unknown queue: the rule lets it through and moto answers that itself.
    message = server_refuses(
        batch.submit_job, 400, "ClientException", "does not exist", **{**submit, "jobQueue": "no-such-queue"}
    )
    assert "RUNNABLE" not in message


def test_moto_itself_validates_submit_job_tags(plain_moto: str) -> None:
    batch = _plain(plain_moto, "batch")
    _make_gpu_queue(_plain(plain_moto, "ec2"), _plain(plain_moto, "iam"), batch)
    submit = {"jobName": "render", "jobQueue": "q", "jobDefinition": "d"}
    with pytest.raises(ClientError) as error:
        batch.submit_job(**submit, tags={f"k{i}": "v" for i in range(51)})
    assert _error(error) == (400, "ValidationError")
    assert "at 'tags' failed to satisfy constraint" in error.value.response["Error"]["Message"]


# --- 9. Conditional writes ---------------------------------------------------------------------


def test_moto_itself_answers_412_to_if_none_match_on_an_existing_key(plain_moto: str) -> None:
    s3 = _plain(plain_moto, "s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="job.json", Body=b"{}", IfNoneMatch="*")
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=BUCKET, Key="job.json", Body=b"{}", IfNoneMatch="*")
    assert error.value.response["Error"]["Code"] == "PreconditionFailed"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_every_nth_conditional_write_is_answered_409_when_switched_on() -> None:
    rule = ConditionalConflicts()
    conditional = captured("s3", "put_object", Bucket=BUCKET, Key="job.json", Body=b"{}", IfNoneMatch="*")
    plain = captured("s3", "put_object", Bucket=BUCKET, Key="job.json", Body=b"{}")
    assert [rule.check(conditional) for _ in range(4)] == [None] * 4  # off by default
    rule.set_conflicts(3)
    answers = [rule.check(conditional) for _ in range(6)]
    assert [a is not None for a in answers] == [False, False, True, False, False, True]
    refused(answers[2], 409, "ConditionalRequestConflict", "conflicting conditional")
    rule.set_conflicts(1)
    assert rule.check(plain) is None  # only conditional writes
    rule.reset()
    assert rule.check(conditional) is None
    assert rules.conflicts() in rules.RULES


# --- 10. Checksums -----------------------------------------------------------------------------


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def test_a_body_that_does_not_match_its_sha256_is_refused() -> None:
    rule = Checksums()
    body = b"frame bytes"
    wrong = captured(
        "s3",
        "put_object",
        Bucket=BUCKET,
        Key="k",
        Body=body,
        ChecksumSHA256=_b64(hashlib.sha256(b"x").digest()),
    )
    refused(rule.check(wrong), 400, "BadDigest", "SHA256")
    right = captured(
        "s3",
        "put_object",
        Bucket=BUCKET,
        Key="k",
        Body=body,
        ChecksumSHA256=_b64(hashlib.sha256(body).digest()),
    )
    assert rule.check(right) is None
    part = captured(
        "s3",
        "upload_part",
        Bucket=BUCKET,
        Key="k",
        UploadId="u",
        PartNumber=1,
        Body=body,
        ChecksumSHA256=_b64(b"\0" * 32),
    )
    refused(rule.check(part), 400, "BadDigest")
    crc = captured(
        "s3", "put_object", Bucket=BUCKET, Key="k", Body=body, ChecksumCRC32=_b64((1).to_bytes(4, "big"))
    )
    refused(rule.check(crc), 400, "BadDigest", "CRC32")
    # botocore's own checksum (CRC32 by default) is right, of course.
    assert rule.check(captured("s3", "put_object", Bucket=BUCKET, Key="k", Body=body)) is None


def test_content_md5_is_checked() -> None:
    rule = Checksums()
    body = b"frame bytes"
    wrong = captured(
        "s3", "put_object", Bucket=BUCKET, Key="k", Body=body, ContentMD5=_b64(hashlib.md5(b"x").digest())
    )
    refused(rule.check(wrong), 400, "BadDigest", "Content-MD5")
    invalid = captured("s3", "put_object", Bucket=BUCKET, Key="k", Body=body, ContentMD5="not-md5")
    refused(rule.check(invalid), 400, "InvalidDigest")
    right = captured(
        "s3", "put_object", Bucket=BUCKET, Key="k", Body=body, ContentMD5=_b64(hashlib.md5(body).digest())
    )
    assert rule.check(right) is None


def test_aws_chunked_bodies_are_checked_against_their_trailer() -> None:
    payload = b"hello world"
    crc = _b64(zlib.crc32(payload).to_bytes(4, "big"))
    body = b"b\r\nhello world\r\n0\r\nx-amz-checksum-crc32:" + crc.encode() + b"\r\n\r\n"
    assert decode_aws_chunked(body) == (payload, {"x-amz-checksum-crc32": crc})
    request = captured("s3", "put_object", Bucket=BUCKET, Key="k", Body=b"")
    request.headers.update(
        {"content-encoding": "aws-chunked", "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER"}
    )
    request.headers.pop("x-amz-checksum-crc32", None)
    request.body = body
    assert Checksums().check(request) is None
    request.body = body.replace(b"hello", b"HELLO")
    refused(Checksums().check(request), 400, "BadDigest")


def test_a_post_checksum_field_must_match_its_file() -> None:
    content = b"frame"
    digest = _b64(hashlib.sha256(content).digest())
    post = _client("s3").generate_presigned_post(
        BUCKET, "k", Fields={"x-amz-checksum-sha256": digest}, Conditions=[{"x-amz-checksum-sha256": digest}]
    )
    assert Checksums().check(posted(post, "f", content)) is None
    refused(Checksums().check(posted(post, "f", b"other")), 400, "BadDigest")


def test_moto_itself_stores_a_body_with_a_wrong_checksum(plain_moto: str) -> None:
    s3 = _plain(plain_moto, "s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"x", ChecksumSHA256=_b64(b"\0" * 32))
    assert s3.get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"x"


# --- 11. Found reading moto: metadata and single PUT size; what moto already refuses ----------


def test_user_metadata_over_2_kb_is_refused() -> None:
    rule = MetadataSize()
    big = captured("s3", "put_object", Bucket=BUCKET, Key="k", Body=b"x", Metadata={"note": "n" * 2045})
    refused(rule.check(big), 400, "MetadataTooLarge")
    product = captured("s3", "put_object", Bucket=BUCKET, Key="k", Body=b"x", Metadata={"sha256": "a" * 64})
    assert rule.check(product) is None


def test_a_single_put_over_5_gb_is_refused() -> None:
    rule = SinglePutSize()
    request = captured("s3", "put_object", Bucket=BUCKET, Key="k", Body=b"x")
    assert rule.check(request) is None
    request.headers["content-length"] = str(5 * 1024**3 + 1)
    refused(rule.check(request), 400, "EntityTooLarge")


def test_moto_itself_refuses_part_numbers_over_10000_and_parts_under_5_mib(plain_moto: str) -> None:
    s3 = _plain(plain_moto, "s3")
    s3.create_bucket(Bucket=BUCKET)
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="k")["UploadId"]
    with pytest.raises(ClientError):
        s3.upload_part(Bucket=BUCKET, Key="k", UploadId=upload, PartNumber=10001, Body=b"x")
    parts = [
        {
            "PartNumber": n,
            "ETag": s3.upload_part(Bucket=BUCKET, Key="k", UploadId=upload, PartNumber=n, Body=b"x")["ETag"],
        }
        for n in (1, 2)
    ]
    with pytest.raises(ClientError) as error:
        s3.complete_multipart_upload(
            Bucket=BUCKET, Key="k", UploadId=upload, MultipartUpload={"Parts": parts}
        )
    assert error.value.response["Error"]["Code"] == "EntityTooSmall"


# --- End to end: through the `aws` fixture's server (the strict layer in front of moto) ---------
# Signed with the account's root (`strict.admin`): these show the rules, not the add-on's IAM
# policies (tests/unit/test_strict_iam.py shows those).


def test_e2e_presigned_post_outside_its_prefix_or_size_is_refused(strict: Any) -> None:
    s3 = session.client(strict.admin, "s3")
    s3.create_bucket(Bucket=BUCKET)
    post = presign_post(s3, BUCKET, "jobs/j1/frames/", 600, 100)

    def send(content: bytes, **changes: str) -> requests.Response:
        fields = {**post["fields"], **changes}
        return requests.post(post["url"], data=fields, files={"file": ("0001.png", content)}, timeout=30)

    assert send(b"x" * 100).status_code == 204
    assert s3.get_object(Bucket=BUCKET, Key="jobs/j1/frames/0001.png")["Body"].read() == b"x" * 100
    outside = send(b"x", key="jobs/j2/frames/${filename}")
    assert outside.status_code == 403 and b"Policy Condition failed" in outside.content
    too_big = send(b"x" * 101)
    assert too_big.status_code == 400 and b"EntityTooLarge" in too_big.content
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert keys == ["jobs/j1/frames/0001.png"]


def test_e2e_user_data_and_tags_beyond_the_limits_are_refused(strict: Any) -> None:
    ec2 = session.client(strict.admin, "ec2")
    launch = {"ImageId": MOTO_AMI, "MinCount": 1, "MaxCount": 1}
    with pytest.raises(ClientError) as error:
        ec2.run_instances(**launch, UserData="x" * 16385)
    assert _error(error) == (400, "InvalidParameterValue")
    with pytest.raises(ClientError) as error:
        ec2.run_instances(
            **launch, TagSpecifications=[{"ResourceType": "instance", "Tags": _tags(1, "aws:x")}]
        )
    assert _error(error) == (400, "InvalidParameterValue")
    ec2.run_instances(
        **launch, UserData="x" * 16384, TagSpecifications=[{"ResourceType": "instance", "Tags": _tags(50)}]
    )
    iam = session.client(strict.admin, "iam")
    with pytest.raises(ClientError) as error:
        iam.create_user(UserName="u", Tags=_tags(51))
    assert _error(error)[0] == 400
    batch = session.client(strict.admin, "batch")
    with pytest.raises(ClientError) as error:
        batch.create_job_queue(
            jobQueueName="q",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "e"}],
            tags={"aws:x": "y"},
        )
    assert _error(error) == (400, "ClientException")


def test_e2e_a_repeated_client_token_launches_one_machine(strict: Any) -> None:
    ec2 = session.client(strict.admin, "ec2")
    launch = {"ImageId": MOTO_AMI, "MinCount": 1, "MaxCount": 1, "InstanceType": "t3.micro"}
    token = uuid.uuid4().hex  # the server forgets tokens on reset only once it calls rules.reset()
    first = ec2.run_instances(**launch, ClientToken=token)
    again = ec2.run_instances(**launch, ClientToken=token)
    assert [i["InstanceId"] for i in again["Instances"]] == [i["InstanceId"] for i in first["Instances"]]
    running = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    assert len(running) == 1
    with pytest.raises(ClientError) as error:
        ec2.run_instances(**{**launch, "InstanceType": "t3.small"}, ClientToken=token)
    assert _error(error) == (400, "IdempotentParameterMismatch")


def test_e2e_conditional_writes(strict: Any) -> None:
    s3 = session.client(strict.admin, "s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="job.json", Body=b"{}", IfNoneMatch="*")
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=BUCKET, Key="job.json", Body=b"{}", IfNoneMatch="*")
    assert _error(error) == (412, "PreconditionFailed")
    switched = requests.post(f"{strict.url}/strict-api/conflicts?every=2", timeout=10)
    assert switched.status_code == 200, switched.text
    try:
        quiet = session.client(replace(strict.admin, max_attempts=1), "s3")  # a 409 is not tried again
        quiet.put_object(Bucket=BUCKET, Key="a.json", Body=b"{}", IfNoneMatch="*")
        with pytest.raises(ClientError) as error:
            quiet.put_object(Bucket=BUCKET, Key="b.json", Body=b"{}", IfNoneMatch="*")
        assert _error(error) == (409, "ConditionalRequestConflict")
        with pytest.raises(ClientError):
            quiet.head_object(Bucket=BUCKET, Key="b.json")  # answered 409 without writing
    finally:
        requests.post(f"{strict.url}/strict-api/conflicts?every=0", timeout=10)


def test_e2e_a_checksum_that_does_not_match_is_refused(strict: Any) -> None:
    s3 = session.client(strict.admin, "s3")
    s3.create_bucket(Bucket=BUCKET)
    with pytest.raises(ClientError) as error:
        s3.put_object(
            Bucket=BUCKET, Key="k", Body=b"frame", ChecksumSHA256=_b64(hashlib.sha256(b"x").digest())
        )
    assert _error(error) == (400, "BadDigest")
    s3.put_object(
        Bucket=BUCKET, Key="k", Body=b"frame", ChecksumSHA256=_b64(hashlib.sha256(b"frame").digest())
    )


# --- S3 notification configuration: EventBridge shown ---------------------------------------------


def _with_eventbridge(s3: Any, topic: str) -> None:
    s3.create_bucket(Bucket=BUCKET)
    config = {
        "TopicConfigurations": [
            {
                "Id": "theirs",
                "TopicArn": topic,
                "Events": ["s3:ObjectRemoved:*"],
            }
        ],
        "EventBridgeConfiguration": {},
    }
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration=config)


def test_moto_itself_leaves_eventbridge_out_of_the_notification_configuration(plain_moto: str) -> None:
    """Why the rule exists: moto stores EventBridgeConfiguration but never answers it."""
    topic = _plain(plain_moto, "sns").create_topic(Name="t")["TopicArn"]
    s3 = _plain(plain_moto, "s3")
    _with_eventbridge(s3, topic)
    assert "EventBridgeConfiguration" not in s3.get_bucket_notification_configuration(Bucket=BUCKET)


def test_the_notification_configuration_names_eventbridge_once_on(strict: Any) -> None:
    s3 = _admin(strict, "s3")
    topic = _admin(strict, "sns").create_topic(Name="t")["TopicArn"]
    _with_eventbridge(s3, topic)
    got = s3.get_bucket_notification_configuration(Bucket=BUCKET)
    assert got["EventBridgeConfiguration"] == {}
    assert got["TopicConfigurations"] == [
        {
            "Id": "theirs",
            "TopicArn": topic,
            "Events": ["s3:ObjectRemoved:*"],
        }
    ]
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={})
    assert "EventBridgeConfiguration" not in s3.get_bucket_notification_configuration(Bucket=BUCKET)
