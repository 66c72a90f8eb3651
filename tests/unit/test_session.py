"""The product's own session factory: the emulator over HTTP, endpoints, secrets kept out of repr."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from cloud.aws.session import AwsSettings, client
from cloud.errors import CloudError
from dev.aws_emulator import SERVICES

ROOT = Path(__file__).resolve().parents[2]


def test_client_creates_bucket_in_emulator_over_http(aws):
    s3 = client(aws.settings, "s3")
    s3.create_bucket(Bucket="cloud-render-test-bucket")

    # Ask the emulator itself (plain HTTP, no boto3) that the bucket exists.
    listing = requests.get(f"{aws.url}/moto-api/data.json", timeout=10).json()
    assert "cloud-render-test-bucket" in listing["s3"]["FakeBucket"][0]["name"] or any(
        b["name"] == "cloud-render-test-bucket" for b in listing["s3"]["FakeBucket"]
    )
    assert s3.meta.endpoint_url == aws.url


def test_secrets_are_not_in_repr():
    settings = AwsSettings(access_key_id="AKIAREPRCHECK0000000", secret_access_key="very-secret-value")
    text = repr(settings)
    assert "very-secret-value" not in text
    assert "AKIAREPRCHECK0000000" not in text


def test_region_override_keeps_everything_else():
    settings = AwsSettings(region="us-east-1", endpoint_url="http://127.0.0.1:1")
    moved = settings.in_region("eu-west-1")
    assert moved.region == "eu-west-1"
    assert moved.endpoint_url == "http://127.0.0.1:1"


def test_service_endpoint_override_wins_for_that_service_only():
    settings = AwsSettings(
        endpoint_url="http://127.0.0.1:1111", service_endpoints=(("service-quotas", "http://127.0.0.1:2222"),)
    )
    assert client(settings, "service-quotas").meta.endpoint_url == "http://127.0.0.1:2222"
    assert client(settings, "s3").meta.endpoint_url == "http://127.0.0.1:1111"


def test_standard_per_service_environment_variable_is_honoured(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SERVICE_QUOTAS", "http://127.0.0.1:3333")
    settings = AwsSettings(endpoint_url="http://127.0.0.1:1111")
    assert client(settings, "service-quotas").meta.endpoint_url == "http://127.0.0.1:3333"
    assert client(settings, "s3").meta.endpoint_url == "http://127.0.0.1:1111"
    assert client(settings, "ec2").meta.endpoint_url == "https://ec2.us-east-1.amazonaws.com"


def test_the_artists_endpoint_url_applies_to_s3_only():
    """An S3-compatible service gets the files; keys, machines, quotas and budgets stay with AWS."""
    settings = AwsSettings(endpoint_url="https://s3.example.com")
    assert client(settings, "s3").meta.endpoint_url == "https://s3.example.com"
    for service in ("sts", "ec2", "iam", "ssm", "service-quotas", "budgets", "pricing"):
        assert settings.endpoint_for(service) is None, service
        assert client(settings, service).meta.endpoint_url.endswith(".amazonaws.com"), service


def test_plain_http_is_refused_unless_the_server_is_on_this_computer():
    for url in (
        "http://127.0.0.1:9000",
        "http://localhost:9000",
        "http://[::1]:9000",
        "https://s3.example.com",
    ):
        assert client(AwsSettings(endpoint_url=url), "s3").meta.endpoint_url == url
    for url in (
        "http://s3.example.com",
        "http://192.168.1.20:9000",
        "http://10.0.0.5",
        "http://127.example.com",
    ):
        settings = AwsSettings(endpoint_url=url)
        with pytest.raises(CloudError) as caught:
            client(settings, "s3")
        err = caught.value
        assert err.code == "insecure_endpoint"
        assert err.message == (
            f"The Endpoint URL {url} is plain http, so your scenes and frames would cross the network unencrypted."
        )
        assert "https://" in err.action and err.action.endswith(".")
        assert client(settings, "sts").meta.endpoint_url == "https://sts.us-east-1.amazonaws.com"
    for url in ("ftp://files.example.com", "s3.example.com", "https://"):
        with pytest.raises(CloudError) as caught:
            client(AwsSettings(endpoint_url=url), "s3")
        assert caught.value.code == "bad_endpoint" and caught.value.action


def test_the_emulator_serves_every_service_the_code_calls():
    """Tests and the demo send every service but S3 to the emulator by name (dev/aws_emulator.py);
    one missing from the list would reach for real AWS."""
    called = {
        match
        for path in (ROOT / "cloud").rglob("*.py")
        for match in re.findall(r"client\(\s*[\w.()]+,\s*\"([a-z0-9-]+)\"", path.read_text())
    }
    assert {"s3", "ec2", "sts", "service-quotas"} <= called
    assert called - {"s3"} - set(SERVICES) == set()
