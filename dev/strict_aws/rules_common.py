"""What several rules share: reading flat query-protocol inputs, the tag limits every service
documents, and moto's in-process backends (the strict layer runs in moto's own process, so a rule
that must know what already exists reads moto's state instead of keeping a second copy)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .model import AwsRequest, Rule

TAG_DOC = (
    'Tagging AWS Resources and Tag Editor, "Tag naming limits and requirements": '
    "https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html#tag-conventions"
)
MAX_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
RESERVED_TAG_PREFIX = "aws:"


class AdjustingRule(Rule, Protocol):
    """A rule that changes a request it lets through, before moto sees it (for example a page
    size AWS would cap). The server calls `adjust` after every `check` let the request through
    and must forward `request.query` / `request.params` as they are afterwards."""

    def adjust(self, request: AwsRequest) -> None: ...


class ResettingRule(Rule, Protocol):
    """A rule that remembers something between requests; the server calls `reset` whenever moto
    forgets its state (`/moto-api/reset`), so nothing outlives the account it belonged to."""

    def reset(self) -> None: ...


def members(params: dict[str, Any], prefix: str) -> list[dict[str, str]]:
    """The members of a query-protocol list, in index order: `members(p, "Tag")` turns
    {"Tag.1.Key": "a", "Tag.1.Value": "b"} into [{"Key": "a", "Value": "b"}]."""
    found: dict[int, dict[str, str]] = {}
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)(?:\.(.+))?$")
    for name, value in params.items():
        match = pattern.match(name)
        if match:
            found.setdefault(int(match.group(1)), {})[match.group(2) or ""] = str(value)
    return [found[index] for index in sorted(found)]


def query_tags(params: dict[str, Any], prefix: str) -> list[tuple[str, str]]:
    """(key, value) pairs of a query-protocol tag list: "Tag.N.Key" / "Tag.N.Value" under
    `prefix` ("Tag", "TagSpecification.1.Tag", "Tags.member")."""
    return [(m.get("Key", ""), m.get("Value", "")) for m in members(params, prefix)]


def non_whitespace_length(text: str) -> int:
    """IAM's policy size: characters, white space not counted."""
    return sum(1 for char in text if not char.isspace())


@dataclass(frozen=True)
class TagProblem:
    """The first thing wrong with a set of tags, in words each service can put in its own error."""

    kind: str  # "count", "key", "value" or "reserved"
    detail: str


def tag_problem(
    tags: Iterable[tuple[str, str]], existing: int = 0, *, count: bool = True
) -> TagProblem | None:
    """The first broken limit of "Tag naming limits and requirements" in `tags`, or None.

    `existing` counts tags the resource already has under other keys (TagResource, CreateTags):
    the limit is per resource, not per call. `count=False` where moto counts them itself."""
    tags = list(tags)
    for key, value in tags:
        if len(key) > MAX_TAG_KEY:
            return TagProblem(
                "key", f"Tag key {key[:40]}... is {len(key)} characters long; at most {MAX_TAG_KEY}"
            )
        if len(value) > MAX_TAG_VALUE:
            return TagProblem(
                "value", f"Tag value for key {key} is {len(value)} characters long; at most {MAX_TAG_VALUE}"
            )
        if key.lower().startswith(RESERVED_TAG_PREFIX):
            return TagProblem("reserved", f"Tag keys starting with 'aws:' are reserved for AWS use: {key}")
    total = existing + len({key for key, _ in tags})
    if count and total > MAX_TAGS:
        return TagProblem("count", f"{total} tags on one resource; at most {MAX_TAGS}")
    return None


def moto_backend(service: str, request: AwsRequest) -> Any:
    """moto's in-process backend for this request's account and region (the partition for the
    global services), or None where moto has none: a rule that needs state then lets the request
    through and moto answers it as it would."""
    try:
        if service == "iam":
            from moto.iam.models import iam_backends

            return iam_backends[request.account_id]["aws"]
        if service == "batch":
            from moto.batch.models import batch_backends

            return batch_backends[request.account_id][request.region]
    except (KeyError, ImportError):
        return None
    raise ValueError(f"no backend lookup for {service}")


def header(request: AwsRequest, name: str) -> str | None:
    """A request header by its lower-case name (the parser lower-cases them; be lenient)."""
    value = request.headers.get(name)
    if value is None:
        for key, found in request.headers.items():
            if key.lower() == name:
                return found
    return value
