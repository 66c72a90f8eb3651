"""Evaluate identity policies the way IAM does, for one (action, resource, context) check.

AWS's order: an explicit Deny in any statement wins; otherwise any Allow allows; otherwise the
request is implicitly denied. A statement applies when its Action/NotAction matches the action
(case-insensitive, `*` and `?` wildcards), its Resource/NotResource matches the ARN (each ARN
component on its own, wildcards within it, policy variables substituted first), and every
condition holds. Conditions follow IAM's documented semantics: operators are ANDed, keys
within an operator are ANDed, the values of one key are ORed; a key missing from the request
context makes a condition false, except for the negated operators (`StringNotEquals`,
`ArnNotLike`, ...; true then, as AWS documents), `...IfExists` (true) and `Null`;
`ForAllValues:` is true for a missing key, `ForAnyValue:` false.

Known gaps: resource-based policies, permissions boundaries, session policies and SCPs are not
evaluated; `NotPrincipal`/`Principal` do not occur in identity policies.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from .principals import Principal

Context = dict[str, list[str]]  # lower-case key -> values


@dataclass(frozen=True)
class Check:
    """One authorisation AWS makes for a request."""

    action: str  # "ec2:RunInstances"
    resource: str  # an ARN, or "*"
    context: Context


@dataclass(frozen=True)
class Decision:
    principal: str
    action: str
    resource: str
    allowed: bool
    explicit_deny: bool = False
    sid: str | None = None  # the statement that allowed (or denied) it
    policy: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "action": self.action,
            "resource": self.resource,
            "allowed": self.allowed,
            "explicit_deny": self.explicit_deny,
            "sid": self.sid,
            "policy": self.policy,
        }


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _wild(pattern: str) -> str:
    """IAM wildcards as fnmatch patterns: only `*` and `?` are special."""
    return pattern.replace("[", "[[]")


def action_matches(pattern: str, action: str) -> bool:
    return fnmatchcase(action.lower(), _wild(pattern.lower()))


def arn_matches(pattern: str, arn: str) -> bool:
    """ARN wildcard match, component by component (the resource part may hold colons)."""
    if pattern == "*":
        return True
    wanted, got = pattern.split(":", 5), arn.split(":", 5)
    if len(wanted) != 6 or len(got) != 6:
        return fnmatchcase(arn, _wild(pattern))
    return all(fnmatchcase(g, _wild(w)) for w, g in zip(wanted, got, strict=True))


_VARIABLE = re.compile(r"\$\{([^}]+)\}")
_ESCAPES = {"*": "*", "?": "?", "$": "$"}


def substitute(text: str, context: Context) -> str | None:
    """Policy variables replaced from the context; None when one cannot be resolved."""
    missing = False

    def one(match: re.Match[str]) -> str:
        nonlocal missing
        name, _, default = match.group(1).partition(",")
        name = name.strip()
        if name in _ESCAPES:
            return _ESCAPES[name]
        values = context.get(name.lower())
        if values and len(values) == 1:
            return values[0]
        if default.strip():
            return default.strip().strip("'")
        missing = True
        return ""

    result = _VARIABLE.sub(one, text)
    return None if missing else result


def _string_like(policy: str, value: str) -> bool:
    return fnmatchcase(value, _wild(policy))


def _number(text: str) -> float:
    return float(text)


def _date(text: str) -> datetime:
    if re.fullmatch(r"\d+", text):
        return datetime.fromtimestamp(int(text), UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _ip(policy: str, value: str) -> bool:
    return ipaddress.ip_address(value) in ipaddress.ip_network(policy, strict=False)


def _compare(convert: Callable[[str], Any], test: Callable[[Any, Any], bool]) -> Callable[[str, str], bool]:
    def match(policy: str, value: str) -> bool:
        try:
            return test(convert(value), convert(policy))
        except (ValueError, TypeError):
            return False

    return match


# Operator (without IfExists / set prefixes) -> (value matcher(policy, request), negated)
_OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    "stringequals": (lambda p, v: p == v, False),
    "stringnotequals": (lambda p, v: p == v, True),
    "stringequalsignorecase": (lambda p, v: p.lower() == v.lower(), False),
    "stringnotequalsignorecase": (lambda p, v: p.lower() == v.lower(), True),
    "stringlike": (_string_like, False),
    "stringnotlike": (_string_like, True),
    "numericequals": (_compare(_number, lambda v, p: v == p), False),
    "numericnotequals": (_compare(_number, lambda v, p: v == p), True),
    "numericlessthan": (_compare(_number, lambda v, p: v < p), False),
    "numericlessthanequals": (_compare(_number, lambda v, p: v <= p), False),
    "numericgreaterthan": (_compare(_number, lambda v, p: v > p), False),
    "numericgreaterthanequals": (_compare(_number, lambda v, p: v >= p), False),
    "dateequals": (_compare(_date, lambda v, p: v == p), False),
    "datenotequals": (_compare(_date, lambda v, p: v == p), True),
    "datelessthan": (_compare(_date, lambda v, p: v < p), False),
    "datelessthanequals": (_compare(_date, lambda v, p: v <= p), False),
    "dategreaterthan": (_compare(_date, lambda v, p: v > p), False),
    "dategreaterthanequals": (_compare(_date, lambda v, p: v >= p), False),
    "bool": (lambda p, v: p.lower() == v.lower(), False),
    "binaryequals": (lambda p, v: base64.b64decode(p) == base64.b64decode(v), False),
    "ipaddress": (_ip, False),
    "notipaddress": (_ip, True),
    "arnequals": (arn_matches, False),
    "arnlike": (arn_matches, False),
    "arnnotequals": (arn_matches, True),
    "arnnotlike": (arn_matches, True),
}


class UnknownOperator(ValueError):
    """A condition operator IAM does not have: the statement never applies."""


def condition_holds(operator: str, key: str, wanted: Any, context: Context) -> bool:
    name = operator.lower()
    set_op = ""
    for prefix in ("forallvalues:", "foranyvalue:"):
        if name.startswith(prefix):
            set_op, name = prefix[:-1], name[len(prefix) :]
    if_exists = name.endswith("ifexists") and name != "ifexists"
    name = name.removesuffix("ifexists") if if_exists else name
    values = context.get(key.lower())
    policy_values = [str(v).lower() if isinstance(v, bool) else str(v) for v in _as_list(wanted)]
    if name == "null":
        absent = not values
        return any((p.lower() == "true") == absent for p in policy_values)
    if name not in _OPERATORS:
        raise UnknownOperator(operator)
    match, negated = _OPERATORS[name]
    substituted = [s for s in (substitute(p, context) for p in policy_values) if s is not None]

    def matches(value: str) -> bool:
        return any(match(p, value) for p in substituted)

    if not values:
        if set_op == "forallvalues" or if_exists:
            return True
        if set_op == "foranyvalue":
            return False
        return negated
    if set_op == "forallvalues":
        return all((not matches(v)) if negated else matches(v) for v in values)
    if set_op == "foranyvalue":
        return any((not matches(v)) if negated else matches(v) for v in values)
    if negated:
        return not any(matches(v) for v in values)
    return any(matches(v) for v in values)


def _resource_matches(patterns: Iterable[str], arn: str, context: Context) -> bool:
    for pattern in patterns:
        resolved = substitute(pattern, context)
        if resolved is not None and arn_matches(resolved, arn):
            return True
    return False


def statement_applies(statement: dict[str, Any], check: Check) -> bool:
    if "Action" in statement:
        if not any(action_matches(p, check.action) for p in _as_list(statement["Action"])):
            return False
    elif "NotAction" in statement:
        if any(action_matches(p, check.action) for p in _as_list(statement["NotAction"])):
            return False
    else:
        return False
    if "Resource" in statement:
        if not _resource_matches(_as_list(statement["Resource"]), check.resource, check.context):
            return False
    elif "NotResource" in statement:
        if _resource_matches(_as_list(statement["NotResource"]), check.resource, check.context):
            return False
    else:
        return False
    try:
        return all(
            condition_holds(operator, key, wanted, check.context)
            for operator, keys in (statement.get("Condition") or {}).items()
            for key, wanted in keys.items()
        )
    except UnknownOperator:
        return False


def evaluate(principal: Principal, check: Check) -> Decision:
    """Deny wins, then Allow, else implicit deny; the administrator may do anything."""
    if principal.kind == "admin":
        return Decision(principal.arn, check.action, check.resource, True, sid="(administrator)")
    allowed: Decision | None = None
    for policy in principal.policies:
        for statement in _as_list(policy.document.get("Statement")):
            if not isinstance(statement, dict) or not statement_applies(statement, check):
                continue
            sid = statement.get("Sid")
            if statement.get("Effect") == "Deny":
                return Decision(principal.arn, check.action, check.resource, False, True, sid, policy.name)
            if statement.get("Effect") == "Allow" and allowed is None:
                allowed = Decision(principal.arn, check.action, check.resource, True, False, sid, policy.name)
    return allowed or Decision(principal.arn, check.action, check.resource, False)
