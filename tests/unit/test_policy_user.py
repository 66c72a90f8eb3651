"""Set Up and a job's AWS steps as the artist's IAM user, holding exactly Cloud Render's
policies (cloud/aws/*_policy.json): every request, presigned ones included, is authorised by
the emulator's strict layer (dev/strict_aws/) as AWS would, from the Service Authorization
Reference's actions, resource types, dependent actions and condition keys."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from cloud.aws import account_setup, batch, bucket_setup, compute, storage, uploads
from cloud.aws.iam_policy import POLICY_TITLES, PolicyName
from cloud.aws.presign import presign_get
from cloud.aws.session import AwsSettings, client
from cloud.errors import CloudError, ErrorCode
from dev.emulator import create_artist, detach
from tests import quota_fixtures

account = quota_fixtures.account
quotas = quota_fixtures.quotas
public_params = quota_fixtures.public_params

# Set Up's Batch step attaches AWS's managed ECS policy: moto must know it.
pytestmark = pytest.mark.iam_managed_policies

G_ON_DEMAND = "L-DB2E81BA"
STANDARD_ON_DEMAND = "L-1216C47A"


def artist(account: Any, policies: tuple[PolicyName, ...]) -> AwsSettings:
    """The product's settings, signed with the key of an IAM user holding `policies`."""
    key_id, secret = create_artist(account.moto_settings, policies)
    return replace(account.settings, access_key_id=key_id, secret_access_key=secret)


def refused(account: Any) -> list[str]:
    """The actions the strict layer refused since the account was reset."""
    decisions = requests.get(f"{account.moto_url}/strict-api/decisions", timeout=10).json()
    return sorted({d["action"] for d in decisions if not d["allowed"]})


def test_set_up_with_only_the_render_policy_says_which_policy_to_attach(account, tmp_path: Path) -> None:
    account.quotas.set_quota(G_ON_DEMAND, 8)
    settings = artist(account, ("render",))
    report = account_setup.run_setup(settings, tmp_path, region="us-east-1")

    assert report.ready is False
    bucket = report.step(account_setup.BUCKET)
    assert bucket is not None and bucket.status == "failed"
    assert bucket.message == (
        "Your AWS user is not allowed to use s3:CreateBucket while preparing your storage bucket."
    )
    assert bucket.action.startswith(
        f"This is Set Up's work: attach the {POLICY_TITLES['setup']} policy (Preferences > Copy Set Up Policy)"
    )
    batch_step = report.step(account_setup.BATCH)
    assert batch_step is not None and batch_step.status == "failed"
    assert f"attach the {POLICY_TITLES['setup']} policy" in batch_step.action
    # What the render policy allows was done; nothing was made.
    assert {s.name: s.status for s in report.steps}[account_setup.KEYS] == "done"
    assert client(account.moto_settings, "s3").list_buckets()["Buckets"] == []
    assert "s3:CreateBucket" in refused(account)


def test_set_up_with_both_policies_then_the_render_policy_alone_is_ready(account, tmp_path: Path) -> None:
    account.quotas.set_quota(G_ON_DEMAND, 8)
    settings = artist(account, ("render", "setup"))
    report = account_setup.run_setup(
        settings, tmp_path, region="us-east-1", machines=2, mail="artist@example.com"
    )
    assert report.ready is True, report.summary()
    assert report.summary().splitlines() == ["Ready to render", account_setup.DETACH_SETUP_POLICY]
    assert refused(account) == []  # with both policies, not one request was refused
    mail = report.step(account_setup.JOB_MAIL)
    assert mail is not None and mail.status == "done", mail  # the e-mail is Set Up's work

    detach(account.moto_settings, "setup")
    again = account_setup.run_setup(settings, tmp_path, region="us-east-1", machines=2)
    assert again.ready is True, again.summary()
    step = again.step(account_setup.BATCH)
    assert step is not None
    assert step.message.endswith(
        "Nothing needed changing (its roles were not re-read: that needs the Set Up policy)."
    )
    # The only refusal: Set Up's look at the roles, which the render policy does not allow.
    assert refused(account) == ["iam:ListRoles"]


def test_a_job_runs_its_aws_steps_with_the_render_policy_alone(account, tmp_path: Path) -> None:
    """One machine (RunInstances, TerminateInstances), the bucket (uploads, presigned URLs) and
    an array job on Batch (SubmitJob, DescribeJobs, TerminateJob on its children), after Set Up
    and with the Set Up policy detached."""
    account.quotas.set_quota(G_ON_DEMAND, 8)
    account.quotas.set_quota(STANDARD_ON_DEMAND, 64)
    settings = artist(account, ("render", "setup"))
    report = account_setup.run_setup(
        settings, tmp_path, region="us-east-1", instance_type="c5.2xlarge", machines=2
    )
    assert report.ready is True, report.summary()
    detach(account.moto_settings, "setup")

    bucket = bucket_setup.ensure_bucket(settings, tmp_path / "buckets.json")
    assert bucket == report.bucket
    scene = tmp_path / "scene.blend"
    scene.write_bytes(b"scene" * 1000)
    sha = uploads.hash_file(scene)
    assert uploads.upload_files(settings, bucket, [(scene, sha, 5000)]).uploaded == [sha]
    storage.put_json(settings, bucket, "jobs/j1/job.json", {"state": "new"})
    url = presign_get(client(settings, "s3"), bucket, "jobs/j1/job.json", 600)
    assert requests.get(url, timeout=10).json() == {"state": "new"}  # as the machine reads it

    launched = compute.launch(
        settings,
        job_id="j1",
        instance_type="c5.2xlarge",
        user_data="#!/bin/bash\necho render\n",
        spot=False,
        ami_id=report.image_id,
    )
    compute.terminate(settings, launched.instance_id)

    engine = batch.ensure_engine(
        settings, "c5.2xlarge", False, batch.vcpus_for(8, 2), pack_bytes=5000, gpu=False
    )
    job = batch.submit(settings, engine, "j2", 2, url, attempt_seconds=600, size=batch.child_size(8, 16, 0))
    batch.terminate_all(settings, job, 2, "checked")
    storage.delete_job_data(settings, bucket, "j1")
    assert refused(account) == []


def test_set_ups_other_writes_need_the_set_up_policy_and_nothing_more(account, tmp_path: Path) -> None:
    """What Set Up changes later (a budget, a quota request, a Batch engine for a larger job, an
    inbound rule someone added by hand) works with both policies and is refused with the Render
    policy alone, in words that name the Set Up policy."""
    account.quotas.set_quota(G_ON_DEMAND, 8)
    settings = artist(account, ("render", "setup"))
    report = account_setup.run_setup(
        settings, tmp_path, region="us-east-1", machines=2, budget=(25.0, "artist@example.com")
    )
    assert report.ready is True, report.summary()
    budget_step = report.step(account_setup.BUDGET)
    assert budget_step is not None and budget_step.status == "done"
    assert "Monthly budget created" in budget_step.message
    asked = account_setup.request_quota(settings, "us-east-1", "g5.12xlarge")
    assert asked.startswith("Asked AWS to raise"), asked
    # A job larger than Set Up prepared for: a new template version and a higher ceiling.
    batch.ensure_engine(settings, "g4dn.xlarge", False, batch.vcpus_for(4, 4), pack_bytes=40 * 1024**3)
    # An inbound rule added by hand is revoked before any machine uses the group.
    ec2 = client(account.moto_settings, "ec2")
    ec2.authorize_security_group_ingress(
        GroupId=report.security_group, IpProtocol="tcp", FromPort=22, ToPort=22, CidrIp="0.0.0.0/0"
    )
    assert compute.ensure_security_group(settings) == report.security_group
    [group] = ec2.describe_security_groups(GroupIds=[report.security_group])["SecurityGroups"]
    assert group["IpPermissions"] == []
    assert batch.live_jobs(settings) == []
    assert refused(account) == []

    detach(account.moto_settings, "setup")
    attempts = (
        # Another quota than the one asked above (an open request is found, not filed again).
        lambda: account_setup.request_quota(settings, "us-east-1", "p4d.24xlarge"),
        lambda: batch.ensure_engine(
            settings, "g4dn.xlarge", False, batch.vcpus_for(4, 8), pack_bytes=40 * 1024**3
        ),
    )
    for attempt in attempts:
        with pytest.raises(CloudError) as caught:
            attempt()
        assert caught.value.code in (ErrorCode.ACCESS_DENIED, ErrorCode.QUOTA_REQUEST_DENIED), caught.value
        assert f"ttach the {POLICY_TITLES['setup']} policy" in caught.value.action
