"""The public Deep Learning AMI parameters an AWS account can read, for the emulated account.

AWS publishes the newest Deep Learning Base OSS NVIDIA Driver GPU AMI ids as public SSM
parameters under /aws/service/deeplearning/. moto 5.2.5 has none, and refuses to create any
name under /aws/ (AccessDenied, as AWS does), so they cannot be put into moto. Instead a
small SSM server (JSON protocol, AmazonSSM.GetParameter / GetParameters) answers the public
names and forwards every other SSM request to moto, and the images the parameters point at are
registered in moto's EC2 so that DescribeImages and RunInstances find them.
"""

from __future__ import annotations

import json
import time
from typing import Any

import requests

from cloud.aws.session import AwsSettings, client
from dev.quota_server import LocalAwsServer, _json_error, _json_ok

# The names as AWS publishes them (x86_64); checked against public documentation and code.
DLAMI_PARAMETERS = {
    "al2023": "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id",
    "ubuntu-24.04": "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id",
    "ubuntu-22.04": "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
}
DLAMI_NAMES = {
    "al2023": "Deep Learning Base OSS Nvidia Driver GPU AMI (Amazon Linux 2023) 20251115",
    "ubuntu-24.04": "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 24.04) 20251115",
    "ubuntu-22.04": "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) 20251115",
}


class PublicParameterServer(LocalAwsServer):
    """SSM for the public /aws/service/ names, per region; everything else goes to moto."""

    service = "ssm"

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream=upstream)
        self.params: dict[str, dict[str, str]] = {}

    def put(self, region: str, name: str, value: str) -> None:
        self.params.setdefault(region, {})[name] = value

    def _shape(self, region: str, name: str, value: str) -> dict[str, Any]:
        return {
            "Name": name,
            "Type": "String",
            "Value": value,
            "Version": 1,
            "LastModifiedDate": time.time(),
            "ARN": f"arn:aws:ssm:{region}::parameter{name}",
            "DataType": "aws:ec2:image" if name.endswith("/ami-id") else "text",
        }

    def answer(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], bytes] | None:
        op = headers.get("X-Amz-Target", "").split(".", 1)[-1]
        body = json.loads(raw or b"{}")
        region = self.region_of(headers)
        known = self.params.get(region, {})
        if op == "GetParameter" and body.get("Name", "").startswith("/aws/service/"):
            self.record(region, op, body)
            name = body["Name"]
            if name not in known:
                return _json_error(400, "ParameterNotFound", "")
            return _json_ok({"Parameter": self._shape(region, name, known[name])})
        if op == "GetParameters" and any(n.startswith("/aws/service/") for n in body.get("Names", [])):
            self.record(region, op, body)
            names = body["Names"]
            return _json_ok(
                {
                    "Parameters": [self._shape(region, n, known[n]) for n in names if n in known],
                    "InvalidParameters": [n for n in names if n not in known],
                }
            )
        return None


def seed_deep_learning_amis(
    server: PublicParameterServer,
    settings: AwsSettings,
    region: str = "us-east-1",
    flavours: tuple[str, ...] = ("al2023", "ubuntu-24.04", "ubuntu-22.04"),
) -> dict[str, str]:
    """Register a DLAMI-named image per flavour in moto's EC2 and publish its id; returns the ids.

    `settings` must reach moto's EC2 directly (the `aws` fixture's settings).
    """
    ec2 = client(settings.in_region(region), "ec2")
    ids: dict[str, str] = {}
    for flavour in flavours:
        image = ec2.register_image(
            Name=DLAMI_NAMES[flavour],
            Description=f"Deep Learning Base OSS Nvidia Driver GPU AMI, {flavour}",
            Architecture="x86_64",
            RootDeviceName="/dev/xvda" if flavour == "al2023" else "/dev/sda1",
        )
        ids[flavour] = image["ImageId"]
        server.put(region, DLAMI_PARAMETERS[flavour], image["ImageId"])
    # On AWS these images are Amazon's (ec2:Owner "amazon", which the Render policy requires).
    if settings.endpoint_url:
        requests.post(
            f"{settings.endpoint_url}/strict-api/amazon-images", json=list(ids.values()), timeout=10
        ).raise_for_status()
    return ids
