"""The emulated AWS account that `make demo` and the end-to-end tests run against.

moto in server mode (S3, EC2, STS, ...) plus the two small AWS-shaped servers for what moto
lacks: the public Deep Learning AMI parameters (SSM) and EC2 vCPU quotas (Service Quotas).
The product reaches S3 through the endpoint URL an artist would type for an S3-compatible
service (it applies to S3 only), and every other service through botocore's standard
per-service endpoint variables (`AWS_ENDPOINT_URL_EC2`, ...): moto for most, the two small
servers for SSM and Service Quotas. They are set while the account is up.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from cloud.aws.iam_policy import POLICY_NAMES, POLICY_TITLES, PolicyName, policy_text
from cloud.aws.session import AwsSettings, client
from cloud.cost.catalog import load_catalog
from dev.aws_emulator import MOTO_SERVICES, SERVICES, endpoint_variables, moto_server, reset
from dev.pricing_server import pricing_server
from dev.quota_server import QuotaServer
from dev.ssm_seed import PublicParameterServer, seed_deep_learning_amis

# The vCPU quota the emulated account has: enough for a g4dn.xlarge and a c5.2xlarge.
GPU_QUOTA_VCPUS = 16
ACCOUNT_ID = "123456789012"  # moto's default account
QUOTA_CODES = ("L-1216C47A", "L-DB2E81BA", "L-417A185B", "L-34B43A08", "L-3819A6DF", "L-7212CCBC")


@dataclass
class EmulatedAccount:
    url: str  # the endpoint URL for the add-on's preferences
    settings: AwsSettings  # settings that reach moto directly (for checks and setup)
    quotas: QuotaServer
    params: PublicParameterServer

    def create_artist(
        self, policies: tuple[PolicyName, ...] = ("render", "setup"), name: str = "artist"
    ) -> tuple[str, str]:
        """An IAM user holding `policies` (see `create_artist`): (key id, secret)."""
        return create_artist(self.settings, policies, name)

    def detach(self, policy: PolicyName, name: str = "artist") -> None:
        """Take one policy off the artist (as after Set Up: the Set Up policy)."""
        detach(self.settings, policy, name)

    def attach(self, policy: PolicyName, name: str = "artist") -> None:
        """Put one policy on the artist again (Set Up's, for another Set Up)."""
        attach(self.settings, policy, name)

    def reset(self, region: str = "us-east-1") -> None:
        """An empty account again, with its AMI parameters and quotas."""
        reset(self.url)
        seed_deep_learning_amis(self.params, self.settings, region)
        for code in QUOTA_CODES:
            self.quotas.set_quota(code, GPU_QUOTA_VCPUS, region)


def create_artist(
    admin: AwsSettings, policies: tuple[PolicyName, ...] = ("render", "setup"), name: str = "artist"
) -> tuple[str, str]:
    """An IAM user as the README tells an artist to make one: Cloud Render's two managed
    policies created from the add-on's own files, `policies` attached, one access key.
    Returns (key id, secret); every request signed with it is authorised by the strict layer
    (dev/strict_aws/) against exactly these policies. `admin`: the account's own settings."""
    iam = client(admin, "iam")
    try:
        iam.create_user(UserName=name)
    except ClientError as exc:  # made earlier in this account: a second key, as in a rotation
        if exc.response.get("Error", {}).get("Code") != "EntityAlreadyExists":
            raise
        keys = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
        for old in sorted(keys, key=lambda k: k["CreateDate"])[: max(0, len(keys) - 1)]:
            iam.delete_access_key(UserName=name, AccessKeyId=old["AccessKeyId"])  # AWS allows two
    held = {p["PolicyArn"] for p in iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]}
    for policy in POLICY_NAMES:
        arn = _managed_policy(iam, policy)
        if policy in policies and arn not in held:
            iam.attach_user_policy(UserName=name, PolicyArn=arn)
        elif policy not in policies and arn in held:
            iam.detach_user_policy(UserName=name, PolicyArn=arn)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])


def attach(admin: AwsSettings, policy: PolicyName, name: str = "artist") -> None:
    """Put one of Cloud Render's policies on the user (as before Set Up: the Set Up policy)."""
    iam = client(admin, "iam")
    iam.attach_user_policy(UserName=name, PolicyArn=_managed_policy(iam, policy))


def detach(admin: AwsSettings, policy: PolicyName, name: str = "artist") -> None:
    """Take one of Cloud Render's policies off the user (as after Set Up: the Set Up policy)."""
    iam = client(admin, "iam")
    iam.detach_user_policy(UserName=name, PolicyArn=_managed_policy(iam, policy))


def _managed_policy(iam: Any, policy: PolicyName) -> str:
    """The account's managed policy made from the add-on's file (made once)."""
    title = POLICY_TITLES[policy]
    arn = f"arn:aws:iam::{ACCOUNT_ID}:policy/{title}"
    try:
        iam.get_policy(PolicyArn=arn)
    except ClientError:
        arn = str(iam.create_policy(PolicyName=title, PolicyDocument=policy_text(policy))["Policy"]["Arn"])
    return arn


def price_list() -> dict[tuple[str, str], float]:
    """The emulated account's Price List: the bundled catalog's on-demand prices, so a refresh
    in the demo succeeds and the panel dates its prices like on AWS."""
    return {
        (region, itype.name): price
        for itype in load_catalog().types.values()
        for region in load_catalog().regions()
        if (price := itype.price(region)) is not None
    }


@contextlib.contextmanager
def emulated_account(
    moto_url: str | None = None, log_path: Path | None = None, region: str = "us-east-1"
) -> Iterator[EmulatedAccount]:
    """The whole emulated account; starts its own moto server unless `moto_url` is given."""
    with contextlib.ExitStack() as stack:
        url = moto_url or stack.enter_context(moto_server(log_path, managed_policies=True))
        yield stack.enter_context(_account_on(url, region))


@contextlib.contextmanager
def _account_on(url: str, region: str) -> Iterator[EmulatedAccount]:
    with (
        PublicParameterServer(upstream=url) as params,
        QuotaServer(authorizer=url) as quotas,  # an IAM user's requests: authorised as on AWS
        pricing_server(price_list(), page_size=50, authorizer=url) as (pricing_url, _pricing),
    ):
        assert isinstance(params, PublicParameterServer) and isinstance(quotas, QuotaServer)
        endpoints = {
            **endpoint_variables(url, MOTO_SERVICES),
            **endpoint_variables(params.url, ("ssm",)),
            **endpoint_variables(quotas.url, ("service-quotas",)),
            **endpoint_variables(pricing_url, ("pricing",)),  # moto has no Price List API
        }
        assert set(endpoints) == set(endpoint_variables(url, SERVICES))
        saved = {k: os.environ.get(k) for k in endpoints}
        os.environ.update(endpoints)
        settings = AwsSettings(
            region=region,
            access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "AKIAEMULATEDTEST0001"),
            secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "emulated"),
            endpoint_url=url,
        )
        account = EmulatedAccount(url, settings, quotas, params)
        account.reset(region)
        try:
            yield account
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
