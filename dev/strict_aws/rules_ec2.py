"""EC2 limits moto does not keep: user data size, tag keys and values, and RunInstances'
ClientToken idempotency (moto starts a new machine for every retry of the same launch)."""

from __future__ import annotations

import base64
import binascii
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .model import AwsRequest, Refusal, Rule
from .rules_common import TAG_DOC, members, query_tags, tag_problem

USER_DATA_DOC = (
    'Amazon EC2 User Guide, "Run commands when you launch an EC2 instance with user data input" '
    "(user data is limited to 16 KB, in raw form, before it is base64-encoded): "
    "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/user-data.html"
)
EC2_TAGS_DOC = (
    'Amazon EC2 User Guide, "Tag your Amazon EC2 resources" (tag restrictions): '
    "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html; " + TAG_DOC
)
IDEMPOTENCY_DOC = (
    'Amazon EC2 Developer Guide, "Ensuring idempotency in Amazon EC2 API requests": '
    "https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html"
)

MAX_USER_DATA = 16384
# Where each call carries user data (base64, as the query protocol sends it).
USER_DATA_PARAMS = {
    "RunInstances": "UserData",
    "CreateLaunchTemplate": "LaunchTemplateData.UserData",
    "CreateLaunchTemplateVersion": "LaunchTemplateData.UserData",
    "ModifyInstanceAttribute": "UserData.Value",
}


class UserDataSize:
    """User data over 16,384 bytes before base64 (RunInstances, launch templates)."""

    name = "ec2-user-data-size"
    doc = USER_DATA_DOC

    def check(self, request: AwsRequest) -> Refusal | None:
        if request.service != "ec2" or request.operation not in USER_DATA_PARAMS:
            return None
        encoded = request.params.get(USER_DATA_PARAMS[request.operation])
        if not encoded:
            return None
        try:
            raw = base64.b64decode(str(encoded), validate=False)
        except (binascii.Error, ValueError):
            return None  # moto refuses what is not base64 itself
        if len(raw) > MAX_USER_DATA:
            return Refusal(400, "InvalidParameterValue", f"User data is limited to {MAX_USER_DATA} bytes")
        return None


class Ec2Tags:
    """EC2 tags: keys of at most 128 and values of at most 256 characters, no `aws:` keys, on
    every TagSpecification and CreateTags; at most 50 in a launch template's instance tags. moto
    counts tags per resource itself (TagLimitExceeded) but never checks lengths or the prefix,
    and never looks at the tags inside LaunchTemplateData."""

    name = "ec2-tags"
    doc = EC2_TAGS_DOC

    def check(self, request: AwsRequest) -> Refusal | None:
        if request.service != "ec2":
            return None
        groups: list[tuple[list[tuple[str, str]], bool]] = []  # (tags, count them here)
        if request.operation == "CreateTags":
            groups.append((query_tags(request.params, "Tag"), False))
        for prefix, counted in (("TagSpecification", False), ("LaunchTemplateData.TagSpecification", True)):
            for index, _ in enumerate(members(request.params, prefix), start=1):
                groups.append((query_tags(request.params, f"{prefix}.{index}.Tag"), counted))
        for tags, counted in groups:
            problem = tag_problem(tags, count=counted)
            if problem is None:
                continue
            if problem.kind == "count":
                return Refusal(
                    400, "TagLimitExceeded", "The maximum number of Tags for a resource has been reached."
                )
            if problem.kind == "reserved":
                key = next(k for k, _ in tags if k.lower().startswith("aws:"))
                return Refusal(
                    400,
                    "InvalidParameterValue",
                    f"Value ( {key} ) for parameter key is invalid. "
                    "Tag keys starting with 'aws:' are reserved for internal use",
                )
            return Refusal(400, "InvalidParameterValue", problem.detail)
        return None


@dataclass
class _Launch:
    """One ClientToken's launch: its parameters, and moto's answer once it came."""

    params: dict[str, Any]
    answer: tuple[int, list[tuple[str, str]], bytes] | None = None
    done: threading.Event = field(default_factory=threading.Event)


class ClientTokenIdempotency:
    """RunInstances with a ClientToken already used: the same parameters get the first launch's
    answer again (same reservation, same instance ids) instead of more machines; other parameters
    get IdempotentParameterMismatch. A repeat that arrives while the first is still with moto
    waits for its answer. Tokens are per account and region, forgotten on `reset`."""

    name = "ec2-client-token"
    doc = IDEMPOTENCY_DOC
    WAIT_S = 60.0

    def __init__(self) -> None:
        self._launches: dict[tuple[str, str, str], _Launch] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _token(request: AwsRequest) -> tuple[str, str, str] | None:
        if request.service != "ec2" or request.operation != "RunInstances":
            return None
        token = request.params.get("ClientToken")
        return (request.account_id, request.region, str(token)) if token else None

    @staticmethod
    def _params(request: AwsRequest) -> dict[str, Any]:
        return {name: value for name, value in request.params.items() if name != "ClientToken"}

    def check(self, request: AwsRequest) -> Refusal | None:
        token = self._token(request)
        if token is None:
            return None
        with self._lock:
            launch = self._launches.get(token)
        if launch is not None and launch.params != self._params(request):
            return Refusal(
                400,
                "IdempotentParameterMismatch",
                "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).",
            )
        return None

    def respond(self, request: AwsRequest) -> tuple[int, list[tuple[str, str]], bytes] | None:
        token = self._token(request)
        if token is None:
            return None
        with self._lock:
            launch = self._launches.get(token)
            if launch is None:
                self._launches[token] = _Launch(self._params(request))
                return None  # the first: moto launches it
        deadline = time.monotonic() + self.WAIT_S
        while not launch.done.wait(timeout=0.1):
            if time.monotonic() > deadline:
                return None
        return launch.answer

    def record(self, request: AwsRequest, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        token = self._token(request)
        if token is None:
            return
        with self._lock:
            launch = self._launches.get(token)
            if launch is None or launch.done.is_set():
                return
            if status == 200:
                launch.answer = (status, list(headers), body)
            else:
                del self._launches[token]  # a refused launch started nothing: the token is free
            launch.done.set()

    def reset(self) -> None:
        with self._lock:
            for launch in self._launches.values():
                launch.done.set()
            self._launches.clear()


RULES: list[Rule] = [UserDataSize(), Ec2Tags(), ClientTokenIdempotency()]
