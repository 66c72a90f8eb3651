"""What the strict layer in front of moto sees of one request, and how it refuses one.

The layer (`server.py`) parses every request once into an `AwsRequest`, authenticates and
authorises it as AWS would (`authorize.py`), then runs the rules of `rules.py`, each a limit or
check AWS documents and moto does not enforce. A rule answers `None` (let it through) or a
`Refusal`, which the server writes in the service's own error shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class AwsRequest:
    """One request, parsed. Header names are lower-case; `query` keeps repeated values."""

    service: str  # botocore's service name: "s3", "ec2", "iam", "sts", "batch", "budgets", ...
    operation: str  # the API operation: "PutObject", "RunInstances", "SubmitJob", ...
    method: str
    path: str  # unquoted path, without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    # The operation's input: query protocol (EC2, IAM, STS): the flat form fields
    # ("TagSpecification.1.Tag.1.Key" -> "..."); JSON and REST-JSON (Batch, Budgets, ...): the
    # parsed body merged with the URI's labels; S3: the query string's single values.
    params: dict[str, Any]
    account_id: str = "123456789012"
    region: str = "us-east-1"
    bucket: str | None = None  # S3 only
    key: str | None = None  # S3 only (unquoted)
    access_key: str | None = None  # who signed it (header, query or POST form)
    presigned: bool = False  # a presigned URL (query-string SigV4)
    post_form: dict[str, str] = field(default_factory=dict)  # S3 presigned POST: the form fields
    post_file: bytes | None = None  # S3 presigned POST: the file part


@dataclass(frozen=True)
class Refusal:
    """An answer AWS would give instead of doing the request."""

    status: int  # 400, 403, 409, 412, ...
    code: str  # AWS's error code: "AccessDenied", "EntityTooLarge", "InvalidParameterValue", ...
    message: str


class Rule(Protocol):
    """One thing AWS refuses and moto lets through."""

    name: str  # short id, used in dev/README.md's list and in the refusal log
    doc: str  # the AWS documentation that states it: title and URL

    def check(self, request: AwsRequest) -> Refusal | None:
        """`None` to let the request through, or what AWS answers instead."""
        ...


class RespondingRule(Rule, Protocol):
    """A rule that may answer in moto's place (for example the same reservation again for a
    repeated `ClientToken`) and that sees moto's answer to remember it."""

    def respond(self, request: AwsRequest) -> tuple[int, list[tuple[str, str]], bytes] | None: ...

    def record(
        self, request: AwsRequest, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> None: ...
