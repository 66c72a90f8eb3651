"""Check a request's SigV4 signature with the signer's secret, as AWS does before anything else.

The canonical request, string to sign and signature are computed by botocore's own signers
(`SigV4Auth`, `S3SigV4Auth`, `S3SigV4QueryAuth`, `S3SigV4PostAuth`) over the request as it came
over the wire (raw path, raw query, the signed headers only, the body), so the check agrees
with the client by construction instead of by a second implementation.

Verified: header-signed requests (method, path, query, every signed header, and the body's
SHA-256 where the payload is signed, including S3's `x-amz-content-sha256` against the body);
presigned URLs (`X-Amz-Signature`, `X-Amz-Expires` at most a week, not yet expired); presigned
POST (the policy's signature and its `expiration`).

Not verified (known gaps): the chunk signatures of `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`
(aws-chunked) uploads: only the seed signature of the headers is checked (botocore sends
these only over HTTPS, which the tests do not use); a `STREAMING-UNSIGNED-PAYLOAD-TRAILER`
body and its trailing checksum (AWS does not sign that body either); clock skew of header-signed
requests (AWS refuses `X-Amz-Date` more than 15 minutes off: RequestTimeTooSkewed); the POST
policy's other conditions (another rule's business); SigV2 and session tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

from botocore.auth import S3SigV4Auth, S3SigV4PostAuth, S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .model import Refusal
from .parse import Parsed

MAX_EXPIRES = 604800
SIGNATURE_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your key and signing method."
)
_UNHASHED = ("UNSIGNED-PAYLOAD", "STREAMING-")


def signature_refusal(protocol: str) -> Refusal:
    """A signature mismatch, in the code each protocol's services use for it."""
    if protocol == "ec2":
        return Refusal(401, "AuthFailure", "AWS was not able to validate the provided access credentials")
    if protocol in ("json", "rest-json"):
        return Refusal(403, "InvalidSignatureException", SIGNATURE_MESSAGE)
    return Refusal(403, "SignatureDoesNotMatch", SIGNATURE_MESSAGE)


def check_expiry(parsed: Parsed, now: datetime | None = None) -> Refusal | None:
    """A presigned URL's or POST policy's lifetime, which AWS checks whoever signed."""
    now = now or datetime.now(UTC)
    request = parsed.request
    if request.operation == "PostObject":
        return _post_expiry(request.post_form, now)
    if request.presigned:
        return _query_expiry(request.query, now)
    return None


def verify(parsed: Parsed, secret: str, now: datetime | None = None) -> Refusal | None:
    """None when the request is signed with `secret` and still valid, else AWS's refusal."""
    expired = check_expiry(parsed, now)
    if expired is not None:
        return expired
    request = parsed.request
    if parsed.scope is None:
        return signature_refusal(parsed.protocol)
    if request.operation == "PostObject":
        return _verify_post(parsed, secret)
    if request.presigned:
        return _verify_presigned(parsed, secret)
    return _verify_header(parsed, secret)


def _signer(parsed: Parsed, secret: str, kind: type[SigV4Auth]) -> SigV4Auth:
    assert parsed.scope is not None
    credentials = Credentials(parsed.scope.access_key, secret)
    return kind(credentials, parsed.scope.service, parsed.scope.region)


def _aws_request(parsed: Parsed, signed: list[str], query: str, timestamp: str) -> AWSRequest:
    headers = parsed.request.headers
    url = f"http://{headers.get('host', 'localhost')}{parsed.raw_path}" + (f"?{query}" if query else "")
    request = AWSRequest(
        method=parsed.request.method,
        url=url,
        headers={name: headers.get(name, "") for name in signed},
        data=parsed.request.body,
    )
    request.context["timestamp"] = timestamp
    return request


def _signature_of(auth: SigV4Auth, request: AWSRequest) -> str:
    canonical = auth.canonical_request(request)
    return str(auth.signature(auth.string_to_sign(request, canonical), request))


def _verify_header(parsed: Parsed, secret: str) -> Refusal | None:
    headers = parsed.request.headers
    fields = dict(
        part.strip().split("=", 1)
        for part in headers.get("authorization", "").removeprefix("AWS4-HMAC-SHA256").split(",")
        if "=" in part
    )
    signed = [h for h in fields.get("SignedHeaders", "").split(";") if h]
    timestamp = headers.get("x-amz-date", "")
    if not signed or not timestamp or "host" not in signed:
        return signature_refusal(parsed.protocol)
    is_s3 = parsed.request.service == "s3"
    content_hash = headers.get("x-amz-content-sha256", "")
    hashed = is_s3 and content_hash and not content_hash.startswith(_UNHASHED)
    if hashed and content_hash != hashlib.sha256(parsed.request.body).hexdigest():
        return Refusal(
            400,
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
    auth = _signer(parsed, secret, S3SigV4Auth if is_s3 else SigV4Auth)
    expected = _signature_of(auth, _aws_request(parsed, signed, parsed.raw_query, timestamp))
    if not hmac.compare_digest(expected, fields.get("Signature", "")):
        return signature_refusal(parsed.protocol)
    return None


def _query_expiry(query: dict[str, list[str]], now: datetime) -> Refusal | None:
    expires_text = (query.get("X-Amz-Expires") or [""])[0]
    timestamp = (query.get("X-Amz-Date") or [""])[0]
    if not expires_text.isdigit():
        return Refusal(400, "AuthorizationQueryParametersError", "X-Amz-Expires should be a number")
    if int(expires_text) > MAX_EXPIRES:
        return Refusal(
            400,
            "AuthorizationQueryParametersError",
            "X-Amz-Expires must be less than a week (in seconds) that is; 604800",
        )
    try:
        signed_at = datetime.strptime(timestamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return Refusal(
            400, "AuthorizationQueryParametersError", "X-Amz-Date must be in the ISO8601 Long Format"
        )
    if now > signed_at + timedelta(seconds=int(expires_text)):
        return Refusal(403, "AccessDenied", "Request has expired")
    return None


def _verify_presigned(parsed: Parsed, secret: str) -> Refusal | None:
    query = parsed.request.query
    timestamp = (query.get("X-Amz-Date") or [""])[0]
    signed = [h for h in (query.get("X-Amz-SignedHeaders") or [""])[0].split(";") if h]
    unsigned_query = "&".join(
        pair for pair in parsed.raw_query.split("&") if pair.split("=", 1)[0] != "X-Amz-Signature"
    )
    kind = S3SigV4QueryAuth if parsed.request.service == "s3" else SigV4Auth
    auth = _signer(parsed, secret, kind)
    expected = _signature_of(auth, _aws_request(parsed, signed, unsigned_query, timestamp))
    if not hmac.compare_digest(expected, (query.get("X-Amz-Signature") or [""])[0]):
        return signature_refusal(parsed.protocol)
    return None


def _field(form: dict[str, str], name: str) -> str:
    return next((v for k, v in form.items() if k.lower() == name), "")


def _post_expiry(form: dict[str, str], now: datetime) -> Refusal | None:
    try:
        policy = json.loads(base64.b64decode(_field(form, "policy")))
        expiration = datetime.fromisoformat(str(policy["expiration"]).replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError):
        return Refusal(400, "InvalidPolicyDocument", "Invalid Policy: Invalid JSON.")
    if now > expiration:
        return Refusal(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
    return None


def _verify_post(parsed: Parsed, secret: str) -> Refusal | None:
    form = parsed.request.post_form
    request = AWSRequest(method="POST", url="http://localhost/")
    request.context["timestamp"] = _field(form, "x-amz-date")
    auth = _signer(parsed, secret, S3SigV4PostAuth)
    expected = str(auth.signature(_field(form, "policy"), request))
    if not hmac.compare_digest(expected, _field(form, "x-amz-signature")):
        return signature_refusal(parsed.protocol)
    return None
