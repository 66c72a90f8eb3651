"""S3's notification configuration as AWS answers it: with `EventBridgeConfiguration` once on.

moto 5.2.5 stores `EventBridgeConfiguration` from PutBucketNotificationConfiguration but leaves
it out of GetBucketNotificationConfiguration's answer, so a caller cannot see that the bucket's
events go to EventBridge, and one that keeps the other settings while turning it on would turn
it on again every time. AWS answers it (Amazon S3 API Reference,
"GetBucketNotificationConfiguration": EventBridgeConfiguration, "Enables delivery of events to
Amazon EventBridge"). This rule answers in moto's place when moto holds it, from moto's own
state, in S3's XML; otherwise moto answers.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from .model import AwsRequest, Refusal

DOC = (
    'Amazon S3 API Reference, "GetBucketNotificationConfiguration": '
    "https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketNotificationConfiguration.html"
)
_KINDS = (("topic", "TopicConfiguration", "Topic"), ("queue", "QueueConfiguration", "Queue"))
_LAMBDA = ("cloud_function", "CloudFunctionConfiguration", "CloudFunction")


def _config_xml(item: Any, element: str, arn_element: str) -> str:
    """One topic, queue or Lambda configuration (filters left out: moto 5.2.5 fails on them)."""
    events = "".join(f"<Event>{escape(str(e))}</Event>" for e in item.events)
    return (
        f"<{element}><Id>{escape(str(item.id))}</Id><{arn_element}>{escape(str(item.arn))}</{arn_element}>"
        f"{events}</{element}>"
    )


class EventBridgeShown:
    """GetBucketNotificationConfiguration names EventBridgeConfiguration when it is on."""

    name = "s3-eventbridge-configuration-shown"
    doc = DOC

    def check(self, request: AwsRequest) -> Refusal | None:
        return None

    def respond(self, request: AwsRequest) -> tuple[int, list[tuple[str, str]], bytes] | None:
        if request.service != "s3" or not request.bucket:
            return None
        if request.operation not in ("GetBucketNotificationConfiguration", "GetBucketNotification"):
            return None
        from moto.s3.models import s3_backends

        try:
            bucket = s3_backends[request.account_id]["aws"].get_bucket(request.bucket)
        except Exception:
            return None  # moto answers a missing bucket as S3 does
        config = bucket.notification_configuration
        if config is None or config.event_bridge is None:
            return None
        parts = [
            _config_xml(item, element, arn)
            for attr, element, arn in (*_KINDS, _LAMBDA)
            for item in getattr(config, attr, None) or []
        ]
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"{''.join(parts)}<EventBridgeConfiguration></EventBridgeConfiguration></NotificationConfiguration>"
        )
        return 200, [("Content-Type", "application/xml")], body.encode()

    def record(self, request: AwsRequest, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        return None


RULES = [EventBridgeShown()]
