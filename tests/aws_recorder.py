"""A proxy in front of moto that writes down every AWS call it forwards and can refuse some.

Tests point IAM, EC2 and Batch at it (`AwsSettings.service_endpoints`) to see what the product
asks of AWS: that a second Set Up writes nothing, that a submit after Set Up creates nothing,
and what a refused permission leaves behind. Refusals are answered as AWS answers them
(AccessDenied in each service's own error shape); everything else goes to moto unchanged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from urllib.parse import parse_qs

import botocore.session

from cloud.aws.session import AwsSettings
from dev.error_server import ec2_error, query_error
from dev.quota_server import LocalAwsServer

_SERVICE = re.compile(r"Credential=[^/]+/\d{8}/[a-z0-9-]+/([a-z0-9-]+)/")
# Batch's REST paths, lower case, as botocore sends them -> the operation's name.
_BATCH_PATH = re.compile(r"^/v1/([a-z]+)")
# The words that start an operation that writes; anything else (Describe, List, Get) only reads.
WRITES = ("Create", "Attach", "Add", "Update", "Register", "Put", "Delete", "Tag", "Submit", "Terminate")


@lru_cache(maxsize=1)
def _batch_operations() -> dict[str, str]:
    """Batch's operation names by their lower-case REST path (botocore's own service model)."""
    model = botocore.session.get_session().get_service_model("batch")
    return {name.lower(): name for name in model.operation_names}


@dataclass(frozen=True)
class Call:
    service: str  # the signing name: iam, ec2, batch
    operation: str  # CreateRole, DescribeSubnets, CreateComputeEnvironment

    @property
    def writes(self) -> bool:
        name = self.operation.lower()
        return any(name.startswith(w.lower()) for w in WRITES)


class RecordingProxy(LocalAwsServer):
    """Forwards to moto; `calls` lists each call; `refuse` names operations to deny."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream=upstream)
        self.calls: list[Call] = []
        self.refuse: set[str] = set()

    def answer(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], bytes] | None:
        found = _SERVICE.search(headers.get("Authorization", ""))
        service = found.group(1) if found else ""
        if service == "batch":
            match = _BATCH_PATH.match(path)
            operation = _batch_operations().get(match.group(1), path) if match else path
        else:
            operation = parse_qs(raw.decode(errors="replace")).get("Action", [""])[0]
        with self._lock:
            self.calls.append(Call(service, operation))
        if operation not in self.refuse:
            return None
        message = (
            f"User: arn:aws:iam::123456789012:user/artist is not authorized to perform: {service}:{operation}"
        )
        if service == "batch":
            body = json.dumps({"__type": "AccessDeniedException", "message": message}).encode()
            return (
                403,
                {"Content-Type": "application/json", "x-amzn-ErrorType": "AccessDeniedException"},
                body,
            )
        reply = (
            ec2_error("UnauthorizedOperation", message)
            if service == "ec2"
            else query_error("AccessDenied", message, 403)
        )
        return reply.status, {"Content-Type": reply.content_type}, reply.body

    def writes(self, since: int = 0) -> list[Call]:
        with self._lock:
            return [c for c in self.calls[since:] if c.writes]

    def mark(self) -> int:
        with self._lock:
            return len(self.calls)

    def route(
        self, settings: AwsSettings, services: tuple[str, ...] = ("iam", "ec2", "batch")
    ) -> AwsSettings:
        """`settings` with `services` sent through this proxy."""
        kept = tuple((s, u) for s, u in settings.service_endpoints if s not in services)
        return replace(settings, service_endpoints=(*kept, *((s, self.url) for s in services)))


def operations(calls: list[Call]) -> list[str]:
    return [f"{c.service}:{c.operation}" for c in calls]
