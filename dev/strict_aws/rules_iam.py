"""IAM limits moto does not keep: policy sizes, managed policies per identity, and the tag rules
on the IAM calls moto does not validate (CreateUser, TagUser, CreateInstanceProfile, ...) and
the `aws:` prefix, which moto lets through on every IAM call."""

from __future__ import annotations

from typing import Any

from .model import AwsRequest, Refusal, Rule
from .rules_common import TagProblem, moto_backend, non_whitespace_length, query_tags, tag_problem

QUOTAS_DOC = (
    'IAM User Guide, "IAM and AWS STS quotas": '
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html"
)
IAM_TAGS_DOC = (
    'IAM User Guide, "Tags for AWS Identity and Access Management resources" (rules for tagging): '
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_tags.html"
)

MANAGED_POLICY_SIZE = 6144
USER_INLINE_SIZE = 2048
ROLE_INLINE_SIZE = 10240
GROUP_INLINE_SIZE = 5120
ATTACHED_PER_IDENTITY = 10


def _limit(quota: str, value: int) -> Refusal:
    return Refusal(409, "LimitExceeded", f"Cannot exceed quota for {quota}: {value}")


class ManagedPolicySize:
    """A managed policy document over 6,144 characters (white space not counted)."""

    name = "iam-managed-policy-size"
    doc = QUOTAS_DOC

    def check(self, request: AwsRequest) -> Refusal | None:
        if request.service != "iam" or request.operation not in ("CreatePolicy", "CreatePolicyVersion"):
            return None
        document = str(request.params.get("PolicyDocument", ""))
        if non_whitespace_length(document) > MANAGED_POLICY_SIZE:
            return _limit("PolicySize", MANAGED_POLICY_SIZE)
        return None


class InlinePolicySize:
    """A user's (2,048), group's (5,120) or role's (10,240) inline policies together, white space
    not counted.

    The other inline policies come from moto's backend; one of the same name is replaced by the
    new document, so it does not count."""

    name = "iam-inline-policy-size"
    doc = QUOTAS_DOC

    def check(self, request: AwsRequest) -> Refusal | None:
        if request.service != "iam":
            return None
        if request.operation == "PutUserPolicy":
            kind, quota, limit, who = "users", "UserPolicySize", USER_INLINE_SIZE, "UserName"
        elif request.operation == "PutRolePolicy":
            kind, quota, limit, who = "roles", "RolePolicySize", ROLE_INLINE_SIZE, "RoleName"
        elif request.operation == "PutGroupPolicy":
            kind, quota, limit, who = "groups", "GroupPolicySize", GROUP_INLINE_SIZE, "GroupName"
        else:
            return None
        name = str(request.params.get("PolicyName", ""))
        total = non_whitespace_length(str(request.params.get("PolicyDocument", "")))
        for other, document in _inline_policies(request, kind, str(request.params.get(who, ""))).items():
            if other != name:
                total += non_whitespace_length(document)
        if total > limit:
            return _limit(quota, limit)
        return None


def _identity(request: AwsRequest, kind: str, name: str) -> Any:
    """moto's user, group, role, instance profile or managed policy (by ARN) of that name, or
    None (moto then answers NoSuchEntity)."""
    backend = moto_backend("iam", request)
    if backend is None:
        return None
    if kind == "users":
        return backend.users.get(name)
    if kind == "groups":
        return backend.groups.get(name)
    if kind == "policies":
        return backend.managed_policies.get(name)
    found = backend.instance_profiles.values() if kind == "instance_profiles" else backend.roles.values()
    return next((item for item in found if item.name == name), None)


def _inline_policies(request: AwsRequest, kind: str, name: str) -> dict[str, str]:
    identity = _identity(request, kind, name)
    return dict(getattr(identity, "policies", {}) or {})


class AttachedPolicyCount:
    """More than 10 managed policies attached to one user or role (AWS's default quota).
    Attaching one that is already attached changes nothing, so it is let through."""

    name = "iam-attached-policies"
    doc = QUOTAS_DOC

    def check(self, request: AwsRequest) -> Refusal | None:
        if request.service != "iam":
            return None
        if request.operation == "AttachUserPolicy":
            kind, quota, who = "users", "PoliciesPerUser", "UserName"
        elif request.operation == "AttachRolePolicy":
            kind, quota, who = "roles", "PoliciesPerRole", "RoleName"
        else:
            return None
        identity = _identity(request, kind, str(request.params.get(who, "")))
        attached = dict(getattr(identity, "managed_policies", {}) or {})
        if str(request.params.get("PolicyArn", "")) in attached:
            return None
        if len(attached) >= ATTACHED_PER_IDENTITY:
            return _limit(quota, ATTACHED_PER_IDENTITY)
        return None


# The IAM calls that take tags, and which identity's existing tags count towards the 50.
_TAGGING = {
    "CreateRole": None,
    "CreateUser": None,
    "CreateInstanceProfile": None,
    "CreatePolicy": None,
    "TagRole": ("roles", "RoleName"),
    "TagUser": ("users", "UserName"),
    "TagInstanceProfile": ("instance_profiles", "InstanceProfileName"),
    "TagPolicy": ("policies", "PolicyArn"),
}
_MOTO_VALIDATES = ("CreateRole", "TagRole", "CreatePolicy", "TagPolicy")


class IamTags:
    """IAM tags: at most 50 per identity (counting those it already has), keys of at most 128
    and values of at most 256 characters, no `aws:` keys. moto checks count and lengths per call
    on CreateRole, TagRole and CreatePolicy (left to it), never across calls, never the prefix."""

    name = "iam-tags"
    doc = IAM_TAGS_DOC

    def check(self, request: AwsRequest) -> Refusal | None:
        if request.service != "iam" or request.operation not in _TAGGING:
            return None
        tags = query_tags(request.params, "Tags.member")
        if not tags:
            return None
        reserved = next((key for key, _ in tags if key.lower().startswith("aws:")), None)
        if reserved is not None:
            return Refusal(
                400, "InvalidInput", f"Tag keys starting with 'aws:' are reserved for AWS use: {reserved}"
            )
        existing = 0
        target = _TAGGING[request.operation]
        if target is not None:
            new_keys = {key.lower() for key, _ in tags}
            existing = len({key.lower() for key in _existing_tag_keys(request, *target)} - new_keys)
        if request.operation in _MOTO_VALIDATES:
            if len(tags) <= 50 < existing + len(tags):
                return _tag_refusal(TagProblem("count", ""), request.operation, len(tags))
            return None
        problem = tag_problem(tags, existing)
        return None if problem is None else _tag_refusal(problem, request.operation, len(tags))


def _existing_tag_keys(request: AwsRequest, kind: str, who: str) -> list[str]:
    name = str(request.params.get(who, ""))
    identity = _identity(request, kind, name)
    if identity is None:
        return []
    if kind in ("roles", "instance_profiles", "policies"):
        # moto keeps these tags as a dict (key -> tag) or a list of tags, depending on the call
        tags = identity.tags.values() if isinstance(identity.tags, dict) else identity.tags
        return [str(tag.get("Key", "")) for tag in tags]
    backend = moto_backend("iam", request)
    listed = backend.tagger.list_tags_for_resource(identity.arn)["Tags"]
    return [str(tag["Key"]) for tag in listed]


def _tag_refusal(problem: TagProblem, operation: str, in_call: int) -> Refusal:
    """IAM's answers: a list or string longer than the API model allows is a ValidationError
    (moto's own wording for CreateRole); tags beyond 50 on one identity are LimitExceeded."""
    if problem.kind == "count" and in_call <= 50:
        kind = {"TagRole": "Role", "TagUser": "User"}.get(operation, "Resource")
        return _limit(f"TagsPer{kind}", 50)
    field, limit = {"count": ("tags", 50), "key": ("tags.X.member.key", 128)}.get(
        problem.kind, ("tags.X.member.value", 256)
    )
    return Refusal(
        400,
        "ValidationError",
        f"1 validation error detected: Value at '{field}' failed to satisfy constraint: "
        f"Member must have length less than or equal to {limit}",
    )


RULES: list[Rule] = [ManagedPolicySize(), InlinePolicySize(), AttachedPolicyCount(), IamTags()]
