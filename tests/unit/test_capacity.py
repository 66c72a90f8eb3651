"""cloud.capacity: offerings and vCPUs from moto over HTTP, EC2 vCPU quotas from the local
Service Quotas server (moto serves none for EC2), quota requests recorded by that server."""

from __future__ import annotations

import pytest

from cloud.aws import compute
from cloud.aws import quotas as capacity
from cloud.aws.session import client
from cloud.errors import CloudError
from tests import quota_fixtures

# The fixtures these tests use (moto plus the quota, SSM and EC2 servers for what moto lacks).
account = quota_fixtures.account
quotas = quota_fixtures.quotas
public_params = quota_fixtures.public_params


@pytest.mark.parametrize(
    ("instance_type", "spot", "code", "label"),
    [
        ("g4dn.xlarge", False, "L-DB2E81BA", "Running On-Demand G and VT instances"),
        ("g5.xlarge", True, "L-3819A6DF", "All G and VT Spot Instance Requests"),
        ("g6e.2xlarge", False, "L-DB2E81BA", "Running On-Demand G and VT instances"),
        ("gr6.4xlarge", False, "L-DB2E81BA", "Running On-Demand G and VT instances"),
        ("vt1.3xlarge", True, "L-3819A6DF", "All G and VT Spot Instance Requests"),
        ("p4d.24xlarge", False, "L-417A185B", "Running On-Demand P instances"),
        ("p5.48xlarge", True, "L-7212CCBC", "All P Spot Instance Requests"),
        (
            "c7i.2xlarge",
            False,
            "L-1216C47A",
            "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
        ),
        ("m5.2xlarge", True, "L-34B43A08", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests"),
        (
            "r5b.large",
            False,
            "L-1216C47A",
            "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
        ),
    ],
)
def test_family_quota_codes(instance_type, spot, code, label):
    assert capacity.family_quota_code(instance_type, spot) == (code, label)


def test_unknown_family_is_a_plain_error():
    with pytest.raises(CloudError) as caught:
        capacity.family_quota_code("trn1.2xlarge", False)
    assert caught.value.message == "Cloud Render cannot check the AWS limits for trn1.2xlarge machines."
    assert caught.value.action == "Choose a machine type from the list in the Cloud Render panel."


def test_quota_zero_explains_and_requests_an_increase(account):
    report = capacity.check_capacity(account.settings, "g4dn.xlarge", spot=False)
    assert report.offered is True
    assert report.vcpus_needed == 4
    assert report.quota_vcpus == 0
    assert report.fits is False
    assert report.code == "quota_zero"
    assert report.message == (
        "New AWS accounts may not start GPU machines until AWS raises a limit called a quota: "
        "yours allows 0 vCPUs of Running On-Demand G and VT instances in us-east-1, and a g4dn.xlarge needs 4."
    )
    assert report.action.startswith("Request quota increase")
    assert [r.body["QuotaCode"] for r in account.quotas.seen if r.target == "GetServiceQuota"] == [
        "L-DB2E81BA"
    ]

    assert capacity.quota_request_status(account.settings, "g4dn.xlarge", spot=False) is None
    request = capacity.request_quota_increase(account.settings, "g4dn.xlarge", spot=False)
    assert request.status == "PENDING"
    assert request.status_words == "waiting for AWS"
    assert request.desired == 8  # the type's 4 vCPUs, rounded up to a step of 8
    recorded = account.quotas.requests
    assert [(r.region, r.quota_code, r.desired) for r in recorded] == [("us-east-1", "L-DB2E81BA", 8.0)]

    # Asking again while AWS has not answered returns the open request instead of a second one.
    again = capacity.request_quota_increase(account.settings, "g4dn.xlarge", spot=False)
    assert again.id == request.id
    assert len(account.quotas.requests) == 1

    status = capacity.quota_request_status(account.settings, "g4dn.xlarge", spot=False)
    assert status is not None
    assert (status.id, status.status, status.desired, status.quota_code) == (
        request.id,
        "PENDING",
        8.0,
        "L-DB2E81BA",
    )
    assert status.created is not None

    account.quotas.requests[0].status = "APPROVED"
    assert (
        capacity.quota_request_status(account.settings, "g4dn.xlarge", spot=False).status_words == "approved"
    )


def test_spot_uses_the_spot_quota_and_requests_enough_for_big_types(account):
    report = capacity.check_capacity(account.settings, "g5.12xlarge", spot=True)
    assert (report.quota_code, report.vcpus_needed, report.fits) == ("L-3819A6DF", 48, False)
    request = capacity.request_quota_increase(account.settings, "g5.12xlarge", spot=True)
    assert request.desired == 48
    assert [(r.quota_code, r.desired) for r in account.quotas.requests] == [("L-3819A6DF", 48.0)]


def test_fitting_quota_fits(account):
    account.quotas.set_quota("L-DB2E81BA", 8, region="us-east-1")
    report = capacity.check_capacity(account.settings, "g4dn.xlarge", spot=False)
    assert report.fits is True
    assert report.code == "fits"
    assert report.quota_vcpus == 8
    assert report.message == "Your AWS account can start a g4dn.xlarge in us-east-1."
    # The quota is per region: us-west-2 still has none.
    assert (
        capacity.check_capacity(account.settings.in_region("us-west-2"), "g4dn.xlarge", spot=False).fits
        is False
    )
    request = capacity.request_quota_increase(account.settings, "g4dn.xlarge", spot=False)
    assert request.status == "NOT_NEEDED"
    assert account.quotas.requests == []


def test_quota_taken_by_running_machines_is_too_low(account):
    account.quotas.set_quota("L-DB2E81BA", 8)
    compute.launch(
        account.settings, job_id="job-a", instance_type="g4dn.2xlarge", user_data="#!/bin/bash\n", spot=False
    )
    report = capacity.check_capacity(account.settings, "g4dn.xlarge", spot=False)
    assert (report.fits, report.code, report.vcpus_in_use) == (False, "quota_low", 8)
    assert report.message == (
        "Your AWS account may run 8 vCPUs of Running On-Demand G and VT instances at once in us-east-1; "
        "a g4dn.xlarge needs 4 and 8 are in use already."
    )
    assert report.action == "Request quota increase, or choose a smaller machine type."
    # The request covers what runs already plus the new machine: 8 + 4, rounded up to 16.
    assert capacity.request_quota_increase(account.settings, "g4dn.xlarge", spot=False).desired == 16
    # Spot machines count against the spot quota only.
    assert capacity.check_capacity(account.settings, "c7i.2xlarge", spot=True).vcpus_in_use == 0


def test_type_not_offered_in_region(account):
    report = capacity.check_capacity(account.settings.in_region("eu-west-3"), "p4d.24xlarge", spot=False)
    assert (report.offered, report.fits, report.code) == (False, False, "not_offered")
    assert report.message == "AWS does not offer p4d.24xlarge machines in eu-west-3."
    assert report.action == "Choose another machine type or region."


def test_runnable_now_suggests_what_a_new_account_can_start(account):
    candidates = ["g5.xlarge", "g4dn.xlarge", "c7i.2xlarge", "c7i.48xlarge", "m5.2xlarge", "p4d.24xlarge"]
    # New account: no GPU quota, 32 standard vCPUs (c7i.48xlarge needs 192).
    assert capacity.runnable_now(account.settings, candidates, spot=False) == ["c7i.2xlarge", "m5.2xlarge"]
    account.quotas.set_quota("L-3819A6DF", 4)
    assert capacity.runnable_now(account.settings, candidates, spot=True) == [
        "g5.xlarge", "g4dn.xlarge", "c7i.2xlarge", "m5.2xlarge",
    ]  # fmt: skip
    ec2 = client(account.moto_settings, "ec2")
    assert ec2.describe_instances()["Reservations"] == []  # checking starts nothing


def test_a_quota_request_for_many_machines_asks_for_all_of_them(account):
    account.quotas.set_quota("L-DB2E81BA", 8)
    request = capacity.request_quota_increase(account.settings, "g4dn.xlarge", spot=False, machines=4)
    assert request.desired >= 16  # four g4dn.xlarge at 4 vCPUs each
