"""The e-mail when a job ends, with Blender closed and no credentials on the render machine.

The machine writes one empty object, `jobs/<id>/out/notice/<ending>/<words>`, through its
presigned POST (cloud/machine/notice.py). Set Up wires what AWS does with it, all in the
artist's account and region:

- the bucket sends its events to EventBridge (S3 User Guide, "Enabling Amazon EventBridge"),
  its other notification settings kept;
- one EventBridge rule per ending on the default bus matches `aws.s3` "Object Created" events of
  that bucket whose key has the notice's shape, and sends them to the topic through an input
  transformer: fixed lines saying what happened and what to do next, and the key (S3 gives
  EventBridge only the key, never the body);
- an SNS topic that only EventBridge's rules of this account may publish to (topic policy,
  `aws:SourceArn` and `aws:SourceAccount`), with the artist's address subscribed by e-mail
  (AWS sends one confirmation mail first; nothing arrives until the artist confirms).

Running it again changes nothing that is already so: `CreateTopic` answers the existing topic,
rules and targets are written in place, an address already subscribed (or waiting for its
confirmation) is not subscribed again.
"""

from __future__ import annotations

import json
from typing import Any

from .error_rules import translating
from .session import AwsSettings, client

TOPIC_NAME = "cloud-render-job-mail"
RULE_PREFIX = "cloud-render-notice-"
TARGET_ID = "mail"

# What each ending's e-mail says around the machine's words (the key): what happened and what
# to do next. The words themselves name the file, the frames and the cost.
NEXT_STEP = {
    "done": (
        "Cloud Render: a render is done.",
        "Open the scene in Blender: Cloud Render brings the frames to your computer.",
    ),
    "failed": (
        "Cloud Render: a render failed.",
        "Open the scene in Blender to read what went wrong; the frames done so far are kept.",
    ),
    "capped": (
        "Cloud Render: a render reached its cap and stopped.",
        "Open the scene in Blender, raise Max Hours or Max Cost, and relaunch the missing frames.",
    ),
    "cancelled": (
        "Cloud Render: a render was stopped after its quote.",
        "Open the scene in Blender and relaunch the missing frames when you want the rest.",
    ),
    "stopped": (
        "Cloud Render: a render stopped before the end.",
        "Open the scene in Blender and relaunch the missing frames.",
    ),
    "quote": (
        "Cloud Render: a render waits for your answer to its quote.",
        "Open the scene in Blender within 20 minutes to answer; "
        "without an answer the machine stops after the scout frames.",
    ),
}


def rule_name(ending: str) -> str:
    return f"{RULE_PREFIX}{ending}"


def event_pattern(bucket: str, ending: str) -> dict[str, Any]:
    """S3's "Object Created" events of `bucket` for notices of `ending` (EventBridge User Guide,
    "Content filtering in Amazon EventBridge event patterns": wildcard matching)."""
    return {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [bucket]},
            "object": {"key": [{"wildcard": f"jobs/*/out/notice/{ending}/*"}]},
        },
    }


def input_transformer(ending: str) -> dict[str, Any]:
    """Plain text, one quoted line each (EventBridge User Guide, "Amazon EventBridge input
    transformation": a template that is not JSON is a string in quotes), the key in between."""
    what, next_step = NEXT_STEP[ending]
    lines = [what, "<key>", next_step, "(Cloud Render for Blender, set up in your AWS account.)"]
    return {
        "InputPathsMap": {"key": "$.detail.object.key"},
        "InputTemplate": "\n".join(json.dumps(line) for line in lines),
    }


def topic_policy(topic_arn: str, region: str, account: str) -> dict[str, Any]:
    """Only this account's Cloud Render rules may publish (SNS Developer Guide, "Amazon SNS
    access policy": EventBridge targets; aws:SourceArn and aws:SourceAccount against confused
    deputies)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CloudRenderRulesPublish",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {
                    "ArnLike": {"aws:SourceArn": f"arn:aws:events:{region}:{account}:rule/{RULE_PREFIX}*"},
                    "StringEquals": {"aws:SourceAccount": account},
                },
            }
        ],
    }


def _subscribed(sns: Any, topic_arn: str, email: str) -> bool:
    """The address already has an e-mail subscription (confirmed or waiting for it)."""
    pages = sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn)
    return any(
        s.get("Protocol") == "email" and str(s.get("Endpoint", "")).lower() == email.lower()
        for page in pages
        for s in page.get("Subscriptions", [])
    )


def _eventbridge_on(s3: Any, bucket: str) -> bool:
    """Turn on the bucket's events to EventBridge, keeping its other notification settings;
    False when they were on already."""
    current = s3.get_bucket_notification_configuration(Bucket=bucket)
    current.pop("ResponseMetadata", None)
    if "EventBridgeConfiguration" in current:
        return False
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={**current, "EventBridgeConfiguration": {}}
    )
    return True


def ensure_job_mail(settings: AwsSettings, bucket: str, email: str) -> list[str]:
    """Wire the e-mail for `bucket`'s jobs to `email` (module docstring); what was made, in words."""
    region = settings.region
    made: list[str] = []
    with translating("setting up the e-mail when a job ends", region=region):
        account = client(settings, "sts").get_caller_identity()["Account"]
        sns = client(settings, "sns")
        topic_arn = sns.create_topic(Name=TOPIC_NAME)["TopicArn"]
        policy = json.dumps(topic_policy(topic_arn, region, account))
        sns.set_topic_attributes(TopicArn=topic_arn, AttributeName="Policy", AttributeValue=policy)
        if not _subscribed(sns, topic_arn, email):
            sns.subscribe(TopicArn=topic_arn, Protocol="email", Endpoint=email)
            made.append(f"a subscription for {email} (AWS sends a confirmation mail first)")
        if _eventbridge_on(client(settings, "s3"), bucket):
            made.append("the bucket's events to EventBridge")
        events = client(settings, "events")
        for ending in NEXT_STEP:
            name = rule_name(ending)
            events.put_rule(
                Name=name,
                EventPattern=json.dumps(event_pattern(bucket, ending)),
                State="ENABLED",
                Description=f"Cloud Render: e-mail when a job's notice says {ending}",
            )
            events.put_targets(
                Rule=name,
                Targets=[{"Id": TARGET_ID, "Arn": topic_arn, "InputTransformer": input_transformer(ending)}],
            )
    return made
