"""Turn one raw HTTP request into an `AwsRequest`: which service, which operation, which input.

The service comes from the SigV4 credential scope (Authorization header, `X-Amz-Credential`
query parameter, or the `x-amz-credential` field of an S3 POST form), else from the request's
shape (`X-Amz-Target`, a query-protocol `Version`, a Batch `/v1/` path, S3 otherwise). The
operation comes from botocore's own service model, so that it is named exactly as AWS names it:
query protocol `Action=`, JSON `X-Amz-Target`, and for REST protocols (Batch, S3) the best
match of method, path and query against each operation's `http.requestUri` and input members.
S3 is addressed path-style (`/bucket/key`), as the product does with an endpoint URL.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import parse_qs, unquote

import botocore.session
from botocore.model import OperationModel, ServiceModel
from werkzeug.formparser import parse_form_data

from .model import AwsRequest

ACCOUNT_ID = "123456789012"
_SCOPE = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")

# SigV4 signing name -> botocore service name, where they differ.
SIGNING_NAMES = {"servicequotas": "service-quotas", "execute-api": "execute-api"}
# JSON protocol target prefix -> botocore service name, for unsigned requests.
TARGET_PREFIXES = {
    "AWSBudgetServiceGateway": "budgets",
    "Logs_20140328": "logs",
    "AmazonSSM": "ssm",
    "ServiceQuotasV20190624": "service-quotas",
    "AWSPriceListService": "pricing",
}
QUERY_VERSIONS = {"2016-11-15": "ec2", "2010-05-08": "iam", "2011-06-15": "sts"}


@dataclass(frozen=True)
class Scope:
    """The SigV4 credential scope a request was signed with."""

    access_key: str
    date: str
    region: str
    service: str  # the signing name, as in the scope ("s3", "servicequotas", ...)


@dataclass
class Parsed:
    """An `AwsRequest` and what the signature check needs besides it."""

    request: AwsRequest
    protocol: str  # botocore's: "query", "ec2", "json", "rest-json", "rest-xml"
    raw_path: str  # the path as sent, still percent-encoded
    raw_query: str  # the query string as sent
    scope: Scope | None  # None: an unsigned request
    known: bool  # the operation was found in botocore's model


@cache
def service_model(service: str) -> ServiceModel:
    return botocore.session.get_session().get_service_model(service)


def scope_of(headers: dict[str, str], query: dict[str, list[str]], form: dict[str, str]) -> Scope | None:
    """The credential scope from whichever of the three places carries it."""
    text = headers.get("authorization", "")
    if not text.startswith("AWS4-HMAC-SHA256"):
        credential = (query.get("X-Amz-Credential") or [""])[0] or _form_field(form, "x-amz-credential")
        text = f"Credential={credential}" if credential else ""
    match = _SCOPE.search(text)
    if not match:
        return None
    return Scope(*match.groups())


def _form_field(form: dict[str, str], name: str) -> str:
    for key, value in form.items():
        if key.lower() == name:
            return value
    return ""


def service_of(scope: Scope | None, headers: dict[str, str], path: str, form: dict[str, list[str]]) -> str:
    if scope is not None:
        return SIGNING_NAMES.get(scope.service, scope.service)
    target = headers.get("x-amz-target", "")
    if target:
        return TARGET_PREFIXES.get(target.split(".", 1)[0], "unknown")
    version = (form.get("Version") or [""])[0]
    if version in QUERY_VERSIONS:
        return QUERY_VERSIONS[version]
    if path.startswith("/v1/"):
        return "batch"
    return "s3"


def multipart_form(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes | None]:
    """The fields and the file of an S3 POST form (presigned POST)."""
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": headers.get("content-type", ""),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    _stream, fields, files = parse_form_data(environ)
    upload = files.get("file")
    return {k: fields[k] for k in fields}, upload.read() if upload is not None else None


def parse(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: dict[str, str],
    body: bytes,
    service_hint: str | None = None,
) -> Parsed:
    """Parse one request. `headers` must have lower-case names."""
    query = parse_qs(raw_query, keep_blank_values=True)
    path = unquote(raw_path)
    post_form: dict[str, str] = {}
    post_file: bytes | None = None
    if method == "POST" and headers.get("content-type", "").startswith("multipart/form-data"):
        post_form, post_file = multipart_form(headers, body)
    url_form: dict[str, list[str]] = {}
    if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        url_form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    scope = scope_of(headers, query, post_form)
    service = service_hint or service_of(scope, headers, path, {**query, **url_form})
    request = AwsRequest(
        service=service,
        operation="",
        method=method,
        path=path,
        query=query,
        headers=headers,
        body=body,
        params={},
        region=scope.region if scope else "us-east-1",
        access_key=scope.access_key if scope else None,
        presigned="X-Amz-Signature" in query,
        post_form=post_form,
        post_file=post_file,
    )
    try:
        model = service_model(service)
    except Exception:
        return Parsed(request, "unknown", raw_path, raw_query, scope, known=False)
    protocol = model.protocol
    known = True
    if protocol in ("query", "ec2"):
        merged = {**query, **url_form}
        request.params = {k: v[0] for k, v in merged.items()}
        request.operation = request.params.get("Action", "")
        known = request.operation in model.operation_names
    elif protocol == "json":
        request.operation = headers.get("x-amz-target", "").split(".", 1)[-1]
        request.params = _json_body(body)
        known = request.operation in model.operation_names
    elif service == "s3":
        _parse_s3(request, model, raw_path)
        known = bool(request.operation)
    else:  # rest-json
        match = match_rest(model, method, raw_path, query, headers)
        if match is None:
            known = False
        else:
            request.operation, labels = match
            request.params = {**_json_body(body), **labels}
    return Parsed(request, protocol, raw_path, raw_query, scope, known)


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _parse_s3(request: AwsRequest, model: ServiceModel, raw_path: str) -> None:
    """Path-style S3: `/bucket/key`, and the presigned POST form to `/bucket`."""
    parts = raw_path.lstrip("/").split("/", 1)
    request.bucket = unquote(parts[0]) or None
    request.key = unquote(parts[1]) if len(parts) > 1 and parts[1] else None
    request.params = {k: v[0] for k, v in request.query.items()}
    if request.method == "POST" and request.post_form and request.key is None:
        request.operation = "PostObject"
        request.key = request.post_form.get("key")
        return
    match = match_rest(model, request.method, raw_path, request.query, request.headers)
    if match is not None:
        request.operation = match[0]


_AUTH_QUERY = {
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-signedheaders",
    "x-amz-signature",
    "x-amz-security-token",
    "x-id",
}


@cache
def _uri_pattern(request_uri: str) -> tuple[re.Pattern[str], tuple[tuple[str, str | None], ...], int]:
    """(path regex with named labels, required query markers, literal length) of a requestUri."""
    path, _, marker_text = request_uri.partition("?")
    regex = ""
    literal = 0
    for piece in re.split(r"(\{[^}]+\})", path):
        if piece.startswith("{"):
            name = piece[1:-1]
            greedy = name.endswith("+")
            regex += f"(?P<{name.rstrip('+')}>{'.+' if greedy else '[^/]+'})"
        else:
            regex += re.escape(piece)
            literal += len(piece)
    markers = tuple(
        (k, v[0] if v else None)
        for k, v in ((p.split("=", 1)[0], p.split("=", 1)[1:]) for p in marker_text.split("&") if p)
    )
    return re.compile(regex.rstrip("/") + "/?"), markers, literal


def match_rest(
    model: ServiceModel,
    method: str,
    raw_path: str,
    query: dict[str, list[str]],
    headers: dict[str, str],
) -> tuple[str, dict[str, str]] | None:
    """The operation whose requestUri and input members best fit the request, with its labels."""
    best: tuple[int, str, dict[str, str]] | None = None
    for name in model.operation_names:
        operation = model.operation_model(name)
        http = operation.http
        if http.get("method") != method:
            continue
        pattern, markers, literal = _uri_pattern(http["requestUri"])
        found = pattern.fullmatch(raw_path)
        if found is None:
            continue
        if any(k not in query or (v is not None and query[k][0] != v) for k, v in markers):
            continue
        score = _member_score(operation, query, headers, {k for k, _ in markers})
        if score is None:
            continue
        score += 1000 * len(markers) + literal
        if best is None or score > best[0]:
            labels = {k: unquote(v) for k, v in found.groupdict().items()}
            best = (score, name, labels)
    return None if best is None else (best[1], best[2])


def _member_score(
    operation: OperationModel, query: dict[str, list[str]], headers: dict[str, str], markers: set[str]
) -> int | None:
    """How well the request's query and headers fit the operation's input; None: not at all."""
    shape = operation.input_shape
    members = shape.members if shape is not None else {}
    required = set(shape.required_members) if shape is not None else set()
    known_query: set[str] = set(markers)
    score = 0
    for member_name, member in members.items():
        location = member.serialization.get("location")
        wire = member.serialization.get("name", member_name)
        if location == "querystring":
            known_query.add(wire)
            present = wire in query
        elif location == "header":
            present = wire.lower() in headers
        else:
            continue
        if member_name in required:
            if not present:
                return None
            score += 10
        elif present:
            score += 3 if location == "querystring" else 1
    unknown = [k for k in query if k not in known_query and k.lower() not in _AUTH_QUERY]
    return score - 5 * len(unknown)
