"""Who signed a request: an IAM user moto knows, or the account's administrator.

The access key id decides. A key that belongs to an IAM user in moto's IAM (read from moto's
in-process backend, so it is always current) makes the request that user's: its signature is
checked with the user's secret and its permissions come from the user's policies (attached
managed policies at their default version, inline user policies, and the same of the user's
groups). Any other key, such as the test harness's `AKIAEXAMPLETESTKEY00`, stands for the
account's administrator (root), allowed everything and not signature-checked, when it is one
of the harness's own keys (`ROOT_KEYS`, plus `STRICT_AWS_ROOT_KEYS`, comma-separated) or a
temporary key from moto's STS (ASIA...). Any other key is unknown to the account and refused
as AWS refuses it (InvalidAccessKeyId, InvalidClientTokenId, ...). An unsigned request is
anonymous.

Known gaps: permissions boundaries, temporary credentials from STS (AssumeRole keys are treated
as the administrator's), resource-based policies (bucket policies, role trust policies) and
service control policies are not evaluated.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

ACCOUNT_ID = "123456789012"
# The keys the test harness and the demos sign with as the account's administrator.
ROOT_KEYS = frozenset(
    {"AKIAEXAMPLETESTKEY00", "AKIAEMULATEDTEST0001", "AKIAIOSFODNN7EXAMPLE", "AKIAREPRCHECK0000000"}
)


def root_keys() -> frozenset[str]:
    extra = {k.strip() for k in os.environ.get("STRICT_AWS_ROOT_KEYS", "").split(",") if k.strip()}
    return ROOT_KEYS | extra


@dataclass(frozen=True)
class Policy:
    """One identity policy, named for the decision log."""

    name: str  # "managed:arn:aws:iam::...:policy/x" or "inline:user/x/name"
    document: dict[str, Any]


@dataclass(frozen=True)
class Principal:
    kind: Literal["admin", "user", "anonymous", "unknown"]
    account_id: str = ACCOUNT_ID
    arn: str = f"arn:aws:iam::{ACCOUNT_ID}:root"
    name: str = ""
    user_id: str = ACCOUNT_ID
    secret: str = ""
    policies: tuple[Policy, ...] = field(default_factory=tuple)


ADMIN = Principal("admin")
ANONYMOUS = Principal("anonymous", arn="anonymous", user_id="anonymous")
UNKNOWN = Principal("unknown", arn="unknown", user_id="unknown")


def _iam_backend(account_id: str) -> Any:
    from moto.iam.models import iam_backends

    return iam_backends[account_id]["aws"]


def _document(text: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    try:
        return dict(json.loads(text))
    except ValueError:
        return dict(json.loads(unquote(text)))


def _default_version(policy: Any) -> dict[str, Any]:
    for version in policy.versions:
        if version.is_default:
            return _document(version.document)
    return {"Statement": []}


def find(access_key: str | None) -> Principal:
    """The principal behind an access key id (see the module docstring)."""
    if not access_key:
        return ANONYMOUS
    if access_key in root_keys() or access_key.startswith("ASIA"):
        # Before any look into IAM: reaching moto's IAM backend after a reset builds it, and on a
        # server that knows AWS's managed policies that loads about a thousand of them.
        return ADMIN
    from moto.iam.models import iam_backends

    for account_id in list(iam_backends.keys()):
        backend = _iam_backend(account_id)
        for user in list(backend.users.values()):
            for key in list(user.access_keys):
                if key.access_key_id == access_key and key.status == "Active":
                    return _user_principal(backend, account_id, user, key.secret_access_key)
    return UNKNOWN


def _user_principal(backend: Any, account_id: str, user: Any, secret: str) -> Principal:
    policies: list[Policy] = []
    holders: list[tuple[str, Any]] = [(f"user/{user.name}", user)]
    holders += [(f"group/{g.name}", g) for g in backend.get_groups_for_user(user.name)]
    for label, holder in holders:
        for arn, managed in list(holder.managed_policies.items()):
            policies.append(Policy(f"managed:{arn}", _default_version(managed)))
        for name, text in list(holder.policies.items()):
            policies.append(Policy(f"inline:{label}/{name}", _document(text)))
    return Principal(
        kind="user",
        account_id=account_id,
        arn=f"arn:aws:iam::{account_id}:user{user.path}{user.name}",
        name=user.name,
        user_id=user.id,
        secret=secret,
        policies=tuple(policies),
    )
