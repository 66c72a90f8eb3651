"""Fixtures for compute and capacity tests: moto plus the servers for what moto lacks.

A test module uses them by naming them at module level (`account = quota_fixtures.account`).
`account.settings` reaches moto for everything except Service Quotas (QuotaServer) and the
public /aws/service/ SSM parameters (PublicParameterServer, which forwards the rest to moto).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from cloud.aws.session import AwsSettings
from dev.quota_server import AmazonImage, Ec2Proxy, QuotaServer
from dev.ssm_seed import PublicParameterServer, seed_deep_learning_amis


@dataclass
class Account:
    """An emulated AWS account with GPU image parameters and EC2 vCPU quotas."""

    moto_url: str
    moto_settings: AwsSettings  # straight to moto, for reading back what the product did
    settings: AwsSettings  # what the product gets
    quotas: QuotaServer
    params: PublicParameterServer
    images: dict[str, str]  # flavour -> image id registered in moto (us-east-1)

    def with_ec2(self, proxy: Ec2Proxy) -> AwsSettings:
        """The product's settings with EC2 going through `proxy`."""
        return replace(
            self.settings, service_endpoints=(*self.settings.service_endpoints, ("ec2", proxy.url))
        )

    def ec2_proxy(
        self,
        spot_error: str | None = None,
        amazon_images: tuple[AmazonImage, ...] = (),
        on_demand_error: str | None = None,
        lose_run_replies: bool = False,
    ) -> Ec2Proxy:
        proxy = Ec2Proxy(self.moto_url, spot_error, amazon_images, on_demand_error, lose_run_replies)
        proxy.start()
        self._proxies.append(proxy)
        return proxy

    def __post_init__(self) -> None:
        self._proxies: list[Ec2Proxy] = []

    def close(self) -> None:
        for proxy in self._proxies:
            proxy.stop()


@pytest.fixture
def quotas(aws) -> Iterator[QuotaServer]:  # type: ignore[no-untyped-def]
    """Service Quotas for EC2 as a new account has them (G and P at 0 vCPUs); an IAM user's
    requests are authorised by the emulator's strict layer, as AWS would."""
    with QuotaServer(authorizer=aws.url) as server:
        assert isinstance(server, QuotaServer)
        yield server


@pytest.fixture
def public_params(aws) -> Iterator[PublicParameterServer]:  # type: ignore[no-untyped-def]
    with PublicParameterServer(upstream=aws.url) as server:
        assert isinstance(server, PublicParameterServer)
        yield server


@pytest.fixture
def account(aws, quotas: QuotaServer, public_params: PublicParameterServer) -> Iterator[Account]:  # type: ignore[no-untyped-def]
    """A fresh emulated account whose us-east-1 has the Deep Learning AMI parameters seeded."""
    images = seed_deep_learning_amis(public_params, aws.admin)
    settings = replace(
        aws.settings,
        service_endpoints=(("service-quotas", quotas.url), ("ssm", public_params.url)),
    )
    acct = Account(aws.url, aws.admin, settings, quotas, public_params, images)
    try:
        yield acct
    finally:
        acct.close()
