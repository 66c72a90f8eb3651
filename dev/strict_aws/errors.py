"""A `Refusal` written in the error shape of the service's own protocol, as AWS writes it."""

from __future__ import annotations

import json
import uuid
from xml.sax.saxutils import escape

from .model import Refusal

QUERY_NAMESPACES = {
    "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
}

Answer = tuple[int, list[tuple[str, str]], bytes]


def access_denied_code(protocol: str) -> str:
    """What each protocol's services call "not authorised"."""
    if protocol == "ec2":
        return "UnauthorizedOperation"
    if protocol in ("json", "rest-json"):
        return "AccessDeniedException"
    return "AccessDenied"


def render(refusal: Refusal, protocol: str, service: str, method: str = "POST") -> Answer:
    request_id = str(uuid.uuid4())
    code, message = escape(refusal.code), escape(refusal.message)
    if protocol in ("json", "rest-json", "unknown"):
        content_type = "application/x-amz-json-1.1" if protocol == "json" else "application/json"
        body = json.dumps({"__type": refusal.code, "message": refusal.message, "Message": refusal.message})
        headers = [
            ("Content-Type", content_type),
            ("x-amzn-ErrorType", refusal.code),
            ("x-amzn-RequestId", request_id),
        ]
        return refusal.status, headers, body.encode()
    if protocol == "ec2":
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        )
    elif protocol == "query":
        namespace = QUERY_NAMESPACES.get(service, f"https://{service}.amazonaws.com/")
        xml = (
            f'<ErrorResponse xmlns="{namespace}"><Error><Type>Sender</Type><Code>{code}</Code>'
            f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
    else:  # rest-xml (S3)
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>"
        )
    headers = [("Content-Type", "text/xml;charset=UTF-8" if protocol != "rest-xml" else "application/xml")]
    headers.append(("x-amz-request-id" if protocol == "rest-xml" else "x-amzn-RequestId", request_id))
    return refusal.status, headers, b"" if method == "HEAD" else xml.encode()
