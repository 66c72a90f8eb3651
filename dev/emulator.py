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

from cloud.aws.session import AwsSettings
from cloud.cost.catalog import load_catalog
from tests.aws_emulator import MOTO_SERVICES, SERVICES, endpoint_variables, moto_server, reset
from tests.pricing_server import pricing_server
from tests.quota_server import QuotaServer
from tests.ssm_seed import PublicParameterServer, seed_deep_learning_amis

# The vCPU quota the emulated account has: enough for a g4dn.xlarge and a c5.2xlarge.
GPU_QUOTA_VCPUS = 16
QUOTA_CODES = ("L-1216C47A", "L-DB2E81BA", "L-417A185B", "L-34B43A08", "L-3819A6DF", "L-7212CCBC")


@dataclass
class EmulatedAccount:
    url: str  # the endpoint URL for the add-on's preferences
    settings: AwsSettings  # settings that reach moto directly (for checks and setup)
    quotas: QuotaServer
    params: PublicParameterServer

    def reset(self, region: str = "us-east-1") -> None:
        """An empty account again, with its AMI parameters and quotas."""
        reset(self.url)
        seed_deep_learning_amis(self.params, self.settings, region)
        for code in QUOTA_CODES:
            self.quotas.set_quota(code, GPU_QUOTA_VCPUS, region)


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
        QuotaServer() as quotas,
        pricing_server(price_list(), page_size=50) as (pricing_url, _pricing),
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
