"""The product's own session factory reaches the emulator over HTTP."""

from __future__ import annotations

import requests

from cloud.aws.session import AwsSettings, client


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
    assert client(settings, "ec2").meta.endpoint_url == "http://127.0.0.1:1111"
