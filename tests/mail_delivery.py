"""What AWS would e-mail for the notices in a bucket: the harness plays S3 -> EventBridge -> SNS.

moto 5.2.5 neither sends S3's events to EventBridge nor delivers an EventBridge rule to an SNS
topic (`Rule.send_to_targets` has no SNS branch), and it applies no input transformer to S3's
events. So this module does AWS's part from what really is in the emulated account:

1. each notice object in the bucket becomes the event S3 sends EventBridge ("Object Created",
   S3 User Guide, "EventBridge event message structure": only key, size, ETag, sequencer, never
   the body), and only when the bucket's notification configuration has EventBridge on;
2. each rule read back from the emulator (`list_rules`, `list_targets_by_rule`) is matched
   against it by moto's own event-pattern matcher (EventBridge User Guide, "Amazon EventBridge
   event patterns", prefix and wildcard included);
3. each SNS target's input transformer is applied as the EventBridge User Guide, "Amazon
   EventBridge input transformation", documents it: every `<name>` of InputPathsMap replaced by
   the value its JSON path finds (a string as its text), the rest of the template as written;
4. the topic's policy must let `events.amazonaws.com` publish for that rule (its `aws:SourceArn`
   and `aws:SourceAccount`), evaluated by the strict layer's condition evaluator;
5. the message goes to the topic's e-mail subscriptions (on AWS, once confirmed).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from moto.events.models import EventPattern

from cloud.aws.session import AwsSettings, client
from dev.strict_aws.authorize import Check, statement_applies

ACCOUNT = "123456789012"  # moto's account


@dataclass(frozen=True)
class Mail:
    to: tuple[str, ...]
    rule: str
    text: str


def s3_event(bucket: str, obj: dict[str, Any], region: str) -> dict[str, Any]:
    """S3's "Object Created" event for one object, in the documented shape."""
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": ACCOUNT,
        "time": obj["LastModified"].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {
                "key": obj["Key"],
                "size": obj["Size"],
                "etag": obj["ETag"].strip('"'),
                "sequencer": "00617F08299329D189",
            },
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": ACCOUNT,
            "source-ip-address": "203.0.113.15",
            "reason": "POST Object",
        },
    }


def _path_value(event: dict[str, Any], path: str) -> Any:
    """A dot-notation JSON path ("$.detail.object.key"), the only syntax our rules use."""
    node: Any = event
    for part in path.removeprefix("$.").split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def transform(transformer: dict[str, Any], event: dict[str, Any]) -> str:
    """The input transformer's output: placeholders replaced, the template otherwise as it is."""
    values = {name: _path_value(event, path) for name, path in transformer["InputPathsMap"].items()}

    def one(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        if value is None:
            return match.group(0)  # a path that finds nothing makes no variable
        return value if isinstance(value, str) else json.dumps(value)

    return re.sub(r"<([A-Za-z0-9_.-]+)>", one, str(transformer["InputTemplate"]))


def may_publish(policy: dict[str, Any], topic_arn: str, rule_arn: str) -> bool:
    """Does the topic policy let EventBridge publish for this rule (resource-based policy)?"""
    context = {"aws:sourcearn": [rule_arn], "aws:sourceaccount": [ACCOUNT]}
    check = Check("sns:Publish", topic_arn, context)
    allowed = False
    for statement in policy.get("Statement", []):
        if statement.get("Principal") != {"Service": "events.amazonaws.com"}:
            continue
        if statement_applies(statement, check):
            if statement.get("Effect") == "Deny":
                return False
            allowed = True
    return allowed


def deliver(admin: AwsSettings, bucket: str) -> list[Mail]:
    """Every e-mail AWS would send for the bucket's notice objects, in key order."""
    s3, events, sns = client(admin, "s3"), client(admin, "events"), client(admin, "sns")
    if "EventBridgeConfiguration" not in s3.get_bucket_notification_configuration(Bucket=bucket):
        return []
    objects = [
        o
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="jobs/")
        for o in page.get("Contents", [])
        if "/out/notice/" in o["Key"]
    ]
    rules = events.list_rules()["Rules"]
    mails: list[Mail] = []
    for obj in sorted(objects, key=lambda o: o["Key"]):
        event = s3_event(bucket, obj, admin.region)
        for rule in rules:
            if rule.get("State") != "ENABLED" or "EventPattern" not in rule:
                continue
            pattern = json.loads(rule["EventPattern"])
            if not EventPattern(rule["EventPattern"], pattern).matches_event(event):
                continue
            for target in events.list_targets_by_rule(Rule=rule["Name"])["Targets"]:
                topic = target["Arn"]
                if ":sns:" not in topic:
                    continue
                policy = json.loads(sns.get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"])
                if not may_publish(policy, topic, rule["Arn"]):
                    continue
                text = transform(target["InputTransformer"], event) if "InputTransformer" in target else ""
                subs = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
                to = tuple(sorted(s["Endpoint"] for s in subs if s["Protocol"] == "email"))
                mails.append(Mail(to, rule["Name"], text))
    return mails
