"""Presigned POST: the policy's conditions, which moto never reads.

The render machine uploads frames with a POST policy that only allows keys under the job's prefix
and objects up to a size (cloud/aws/presign.py). moto stores whatever the form says, so without
this rule a machine writing outside its prefix, or too much, would pass every test and fail on
AWS. Expiry and signature are the authentication's business, not this rule's.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from .model import AwsRequest, Refusal, Rule

POST_DOC = (
    'Amazon S3 API Reference, "Browser-Based Uploads Using POST (AWS Signature Version 4)" and '
    '"Creating a POST Policy": https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-HTTPPOSTConstructPolicy.html'
)

# "Each form field that you specify in a form (except x-amz-signature, file, policy, and field
# names that have an x-ignore- prefix) must appear in the list of conditions." With Signature
# Version 2 the exceptions are AWSAccessKeyId, signature, file, policy and x-ignore-*.
EXEMPT = ("x-amz-signature", "file", "policy", "awsaccesskeyid", "signature")
IGNORED_PREFIX = "x-ignore-"

_FILE_PART = re.compile(rb"content-disposition:[^\r\n]*?\bname=\"file\"[^\r\n]*", re.IGNORECASE)
_FILENAME = re.compile(rb"\bfilename=\"([^\"]*)\"", re.IGNORECASE)


@dataclass(frozen=True)
class PostUpload:
    """A presigned POST as S3 reads it: lower-case field names, the key with `${filename}`
    replaced, the file's size."""

    fields: dict[str, str]  # lower-case name -> value, as sent
    names: dict[str, str]  # lower-case name -> the name as sent
    key: str
    size: int


def file_name(request: AwsRequest) -> str:
    """The file part's `filename` (its last path component, as S3 and moto take it), read from
    the raw multipart body: `post_form` and `post_file` do not carry it."""
    part = _FILE_PART.search(request.body)
    if part is None:
        return ""
    found = _FILENAME.search(part.group(0))
    if found is None:
        return ""
    name = found.group(1).decode("utf-8", "replace")
    return re.split(r"[\\/]", name)[-1]


def post_upload(request: AwsRequest) -> PostUpload | None:
    """The POST form of a browser-style upload, or None when the request is not one."""
    if request.service != "s3" or request.method != "POST" or not request.post_form:
        return None
    fields = {name.lower(): value for name, value in request.post_form.items()}
    names = {name.lower(): name for name in request.post_form}
    fields.pop("file", None)
    key = fields.get("key", "").replace("${filename}", file_name(request))
    return PostUpload(fields, names, key, len(request.post_file or b""))


class PostPolicy:
    """A POST outside its policy: a failed `eq` / `starts-with` (the key's prefix, the bucket, or
    any other field), a file outside `content-length-range`, or a form field no condition names."""

    name = "s3-post-policy"
    doc = POST_DOC

    def check(self, request: AwsRequest) -> Refusal | None:
        upload = post_upload(request)
        if upload is None or "policy" not in upload.fields:
            return None
        conditions = _conditions(upload.fields["policy"])
        if isinstance(conditions, Refusal):
            return conditions
        values = {**upload.fields, "key": upload.key, "bucket": request.bucket or ""}
        covered: set[str] = set()
        for condition in conditions:
            refusal = _check_one(condition, values, upload.size, covered)
            if refusal is not None:
                return refusal
        extra = sorted(
            upload.names[name]
            for name in upload.fields
            if name not in covered and name not in EXEMPT and not name.startswith(IGNORED_PREFIX)
        )
        if extra:
            return _denied("Extra input fields: " + ", ".join(extra))
        return None


def _denied(why: str) -> Refusal:
    return Refusal(403, "AccessDenied", f"Invalid according to Policy: {why}")


def _conditions(encoded: str) -> list[Any] | Refusal:
    try:
        document = json.loads(base64.b64decode(encoded, validate=False))
    except (binascii.Error, ValueError):
        return Refusal(400, "InvalidPolicyDocument", "Invalid Policy: Invalid JSON.")
    conditions = document.get("conditions") if isinstance(document, dict) else None
    if not isinstance(conditions, list):
        return Refusal(400, "InvalidPolicyDocument", "Invalid Policy: Missing conditions.")
    return conditions


def _check_one(condition: Any, values: dict[str, str], size: int, covered: set[str]) -> Refusal | None:
    """One condition, in the policy's order as S3 evaluates them; `covered` gains its field."""
    if isinstance(condition, dict) and len(condition) == 1:
        ((field, expected),) = condition.items()
        condition = ["eq", "$" + str(field), expected]
    rendered = json.dumps(condition)
    failed = _denied(f"Policy Condition failed: {rendered}")
    if not isinstance(condition, list) or len(condition) != 3:
        return failed
    operator = str(condition[0]).lower()
    if operator == "content-length-range":
        low, high = condition[1], condition[2]
        if not isinstance(low, int) or not isinstance(high, int):
            return failed
        if size > high:
            return Refusal(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
        if size < low:
            return Refusal(
                400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size"
            )
        return None
    field, expected = condition[1], condition[2]
    if not isinstance(field, str) or not field.startswith("$") or not isinstance(expected, str):
        return failed
    name = field[1:].lower()
    covered.add(name)
    actual = values.get(name)
    if operator == "eq":
        return None if actual == expected else failed
    if operator == "starts-with":
        if actual is None:
            return failed
        # A Content-Type may list several types: each must start with the prefix.
        parts = [p.strip() for p in actual.split(",")] if name == "content-type" else [actual]
        return None if all(p.startswith(expected) for p in parts) else failed
    return failed


RULES: list[Rule] = [PostPolicy()]
