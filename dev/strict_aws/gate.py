"""Authenticate and authorise one parsed request, and keep the log of decisions.

The answer is None (let it through) or the `Refusal` AWS would give: an unsigned request is
refused; an expired presigned URL or POST policy is refused whoever signed it; an IAM user's
signature must match its secret; then every check of `context.checks_for` is evaluated against
the user's policies, and the first denied one refuses the request with AWS's message. A request
the layer cannot map is refused for an IAM user (fail closed) with a message naming the gap;
the administrator (the harness's own keys) may do anything; any other key is refused as unknown.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from . import principals, sigv4
from .authorize import Check, Decision, evaluate
from .context import Gap, checks_for
from .errors import access_denied_code
from .model import Refusal
from .parse import Parsed

_lock = threading.Lock()
_decisions: list[dict[str, Any]] = []


def decisions() -> list[dict[str, Any]]:
    with _lock:
        return list(_decisions)


def clear() -> None:
    with _lock:
        _decisions.clear()


# Which grants were used, across resets and servers: each (policy, statement, action) that
# allowed a request is appended once per server process to the file named by
# STRICT_AWS_GRANTS_LOG (JSON lines), so a test session can list the grants no test used.
_grants_seen: set[tuple[str, str, str]] = set()


def _record(decision: Decision, parsed: Parsed) -> None:
    entry = {**decision.as_json(), "operation": f"{parsed.request.service}:{parsed.request.operation}"}
    with _lock:
        _decisions.append(entry)
        grant = (str(decision.policy), str(decision.sid), decision.action.lower())
        log = os.environ.get("STRICT_AWS_GRANTS_LOG")
        if not (decision.allowed and decision.policy and log) or grant in _grants_seen:
            return
        _grants_seen.add(grant)
        with open(log, "a", encoding="utf-8") as out:
            out.write(json.dumps({"policy": grant[0], "sid": grant[1], "action": grant[2]}) + "\n")


def anonymous_refusal(protocol: str) -> Refusal:
    if protocol == "rest-xml":
        return Refusal(403, "AccessDenied", "Access Denied")
    if protocol == "ec2":
        return Refusal(401, "AuthFailure", "AWS was not able to validate the provided access credentials")
    if protocol in ("json", "rest-json"):
        return Refusal(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    return Refusal(403, "MissingAuthenticationToken", "Request is missing Authentication Token")


def unknown_key_refusal(protocol: str) -> Refusal:
    """A key the account does not have, as each protocol says it."""
    if protocol == "rest-xml":
        return Refusal(
            403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
        )
    if protocol == "ec2":
        return Refusal(401, "AuthFailure", "AWS was not able to validate the provided access credentials")
    if protocol in ("json", "rest-json"):
        return Refusal(
            403, "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    return Refusal(403, "InvalidClientTokenId", "The security token included in the request is invalid.")


def denial_message(decision: Decision, protocol: str) -> str:
    why = (
        "with an explicit deny in an identity-based policy"
        if decision.explicit_deny
        else f"because no identity-based policy allows the {decision.action} action"
    )
    text = f"User: {decision.principal} is not authorized to perform: {decision.action} on resource: {decision.resource} {why}"
    return f"You are not authorized to perform this operation. {text}" if protocol == "ec2" else text


def check(parsed: Parsed) -> Refusal | None:
    """None to let the request through, or AWS's refusal (see the module docstring)."""
    request = parsed.request
    principal = principals.find(request.access_key)
    if principal.kind == "anonymous":
        return anonymous_refusal(parsed.protocol)
    if principal.kind == "unknown":
        return unknown_key_refusal(parsed.protocol)
    if principal.kind == "admin":
        return sigv4.check_expiry(parsed)
    refusal = sigv4.verify(parsed, principal.secret)
    if refusal is not None:
        return refusal
    denied = access_denied_code(parsed.protocol)
    if not parsed.known:
        gap = f"the strict layer cannot map {request.method} {request.path} to a {request.service} operation"
        return Refusal(403, denied, f"User: {principal.arn} is not authorized: {gap}")
    try:
        checks = _unique(checks_for(request, principal))
    except Gap as gap:
        with _lock:  # listed with the refusals, so a test that asks what was refused sees it
            _decisions.append(
                {
                    "principal": principal.arn,
                    "action": "gap",
                    "resource": str(gap),
                    "allowed": False,
                    "operation": f"{request.service}:{request.operation}",
                }
            )
        return Refusal(403, denied, f"User: {principal.arn} is not authorized: strict layer gap: {gap}")
    for one in checks:
        decision = evaluate(principal, one)
        _record(decision, parsed)
        if not decision.allowed:
            return Refusal(403, denied, denial_message(decision, parsed.protocol))
    return None


def _unique(checks: list[Check]) -> list[Check]:
    seen: set[tuple[str, str]] = set()
    kept = []
    for one in checks:
        if (one.action, one.resource) not in seen:
            seen.add((one.action, one.resource))
            kept.append(one)
    return kept
