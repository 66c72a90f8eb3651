"""The authorisation checks AWS makes for one request: (action, resource ARN, context) each.

For every IAM action the operation is authorised as (`actions.py`), every resource type the
Service Authorization Reference lists for that action is resolved from the request
(`resources.py`): a required type the layer cannot name is a gap, and a gap refuses the request
(fail closed, with a message naming it) so a missing mapping shows in a test instead of passing
silently; an action without resource types is authorised on `"*"`. Then the dependent actions
the request makes happen: `ec2:CreateTags` for TagSpecifications, `iam:PassRole` for a role
handed to a service, `iam:Tag*` / `batch:TagResource` / `batch:SetCapacityTags` /
`budgets:TagResource` for tags given at creation.

The context: the principal's keys (aws:PrincipalAccount, aws:PrincipalArn, aws:username,
aws:userid, ...), aws:RequestedRegion, aws:RequestTag/* and aws:TagKeys from the request
(for EC2 per created resource type, from its TagSpecification), and each resource's own keys
from moto's backends (aws:ResourceTag/*, ec2:InstanceType, ec2:Owner, s3:ResourceAccount, ...).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from . import resources as res
from .actions import UNCHECKED, actions_for, sar_action
from .authorize import Check, Context
from .model import AwsRequest
from .principals import Principal


class Gap(Exception):
    """The layer cannot say what AWS would authorise for this request."""


def base_context(principal: Principal, request: AwsRequest) -> Context:
    now = datetime.now(UTC)
    context: Context = {
        "aws:principalaccount": [principal.account_id],
        "aws:principalarn": [principal.arn],
        "aws:principaltype": ["User" if principal.kind == "user" else "Account"],
        "aws:userid": [principal.user_id],
        "aws:requestedregion": [request.region],
        "aws:currenttime": [now.strftime("%Y-%m-%dT%H:%M:%SZ")],
        "aws:epochtime": [str(int(now.timestamp()))],
        "aws:securetransport": ["false"],
        "aws:principalisawsservice": ["false"],
        "aws:viaawsservice": ["false"],
    }
    if principal.kind == "user":
        context["aws:username"] = [principal.name]
    if request.service == "iam" and request.params.get("PolicyArn"):
        context["iam:policyarn"] = [str(request.params["PolicyArn"])]
    if request.service == "batch" and request.operation == "RegisterJobDefinition":
        context.update(_job_definition_context(request))
    if request.service == "events" and request.operation == "PutTargets":
        # SAR, Amazon EventBridge: events:TargetArn, the ARNs of the targets being put.
        targets = request.params.get("Targets") or []
        context["events:targetarn"] = [str(t.get("Arn")) for t in targets if isinstance(t, dict)]
    if request.service == "s3":
        context["s3:signatureversion"] = ["AWS4-HMAC-SHA256"]
        context["s3:authtype"] = [
            "POST"
            if request.operation == "PostObject"
            else "REST-QUERY-STRING"
            if request.presigned
            else "REST-HEADER"
        ]
    return context


def _job_definition_context(request: AwsRequest) -> Context:
    """batch:Image and batch:Privileged, from the container properties being registered (a key
    the request does not set is absent, as on AWS: a policy tests it with ...IfExists)."""
    props = request.params.get("containerProperties") or {}
    context: Context = {}
    if isinstance(props, dict):
        if props.get("image"):
            context["batch:image"] = [str(props["image"])]
        if "privileged" in props:
            context["batch:privileged"] = [str(bool(props["privileged"])).lower()]
    return context


def request_tags(request: AwsRequest) -> dict[str, str]:
    """Tags a (non-EC2) request gives the resources it creates or tags."""
    params = request.params
    if request.service in ("iam", "sts"):
        tags = {}
        for n in range(1, 51):
            key = params.get(f"Tags.member.{n}.Key")
            if key is None:
                break
            tags[str(key)] = str(params.get(f"Tags.member.{n}.Value", ""))
        return tags
    if request.service == "ec2" and request.operation in ("CreateTags", "DeleteTags"):
        return {
            str(params[k]): str(params.get(k[:-3] + "Value", ""))
            for k in params
            if re.fullmatch(r"Tag\.\d+\.Key", k)
        }
    for name in ("tags", "Tags", "ResourceTags"):
        value = params.get(name)
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        if isinstance(value, list):
            return {str(t.get("Key")): str(t.get("Value", "")) for t in value if isinstance(t, dict)}
    return {}


def _merge(*parts: Context) -> Context:
    merged: Context = {}
    for part in parts:
        merged.update(part)
    return merged


def _resolve(
    request: AwsRequest, principal: Principal, action: str, prefix: str, kind: str
) -> list[res.Item]:
    if request.service == "ec2" and request.operation in ("CreateTags", "DeleteTags"):
        return res.ec2_tagged(request, kind)
    if (prefix, kind) == ("s3", "object"):
        return res.s3_object(request, action)
    if (prefix, kind) == ("iam", "user"):
        return res.iam_user(request, own=principal.arn if principal.kind == "user" else "")
    resolver = res.RESOLVERS.get((prefix, kind))
    return resolver(request) if resolver is not None else []


def action_checks(request: AwsRequest, principal: Principal, action: str, context: Context) -> list[Check]:
    """The checks of one action: one per resource the request names, or `"*"`."""
    entry = sar_action(action)
    if entry is None:
        raise Gap(f"{action} is not in the Service Authorization Reference")
    types = entry.get("resourceTypes") or []
    if not types:
        return [Check(action, "*", context)]
    prefix = action.split(":", 1)[0].lower()
    checks: list[Check] = []
    for resource_type in types:
        items = _resolve(request, principal, action, prefix, resource_type["name"])
        if resource_type.get("required") and not items:
            raise Gap(
                f"{request.service}:{request.operation}: no {resource_type['name']} ARN for {action} "
                "could be built from the request"
            )
        checks += [Check(action, arn, _merge(context, extra)) for arn, extra in items]
    if not checks:
        names = ", ".join(t["name"] for t in types)
        raise Gap(f"{request.service}:{request.operation}: none of {action}'s resources ({names}) is named")
    return checks


def checks_for(request: AwsRequest, principal: Principal) -> list[Check]:
    """Every authorisation AWS makes for the request (raises `Gap` where unknown)."""
    if (request.service, request.operation) in UNCHECKED:
        return []
    if not request.operation:
        raise Gap(f"{request.service}: the operation of {request.method} {request.path} is not known")
    context = base_context(principal, request)
    if request.service != "ec2" or request.operation in ("CreateTags", "DeleteTags"):
        context = _merge(context, res.request_tag_context(request_tags(request)))
    checks: list[Check] = []
    for action in actions_for(request.service, request.operation):
        checks += action_checks(request, principal, action, context)
    return checks + dependent_checks(request, principal, context)


def _role_arn(request: AwsRequest, ident: str) -> str:
    return ident if ident.startswith("arn:") else res.iam_role_item(request, ident)[0]


def _pass_role(roles: list[str], service: str | None, context: Context) -> list[Check]:
    extra = {"iam:passedtoservice": [service]} if service else {}
    return [Check("iam:PassRole", arn, _merge(context, extra)) for arn in roles]


def dependent_checks(request: AwsRequest, principal: Principal, context: Context) -> list[Check]:
    """The other actions a request makes happen (tagging at creation, passing a role)."""
    op, params = request.operation, request.params
    checks: list[Check] = []
    if request.service == "ec2" and op not in ("CreateTags", "DeleteTags"):
        for kind in dict.fromkeys(res.ec2_spec_types(request)):
            if kind == "image":
                arn = f"arn:aws:ec2:{request.region}::image/*"
            else:
                arn = f"arn:aws:ec2:{request.region}:{request.account_id}:{kind}/*"
            tags = res.request_tag_context(res.ec2_spec_tags(request, kind))
            checks.append(Check("ec2:CreateTags", arn, _merge(context, tags, {"ec2:createaction": [op]})))
        if op == "RunInstances":
            ident = params.get("IamInstanceProfile.Arn") or params.get("IamInstanceProfile.Name")
            if ident:
                checks += _pass_role(res.iam_profile_roles(request, str(ident)), "ec2.amazonaws.com", context)
    if request.service == "batch":
        checks += _batch_dependents(request, principal, context)
    if request.service == "iam":
        tag_action = {
            "CreateRole": "iam:TagRole",
            "CreateInstanceProfile": "iam:TagInstanceProfile",
            "CreateUser": "iam:TagUser",
            "CreatePolicy": "iam:TagPolicy",
        }.get(op)
        if tag_action and request_tags(request):
            checks += action_checks(request, principal, tag_action, context)
        if op == "AddRoleToInstanceProfile" and params.get("RoleName"):
            checks += _pass_role([_role_arn(request, str(params["RoleName"]))], None, context)
    if request.service == "budgets" and op == "CreateBudget" and request_tags(request):
        checks += [Check("budgets:TagResource", arn, context) for arn, _ in res.budgets_budget(request)]
    return checks


def _batch_dependents(request: AwsRequest, principal: Principal, context: Context) -> list[Check]:
    op, params = request.operation, request.params
    checks: list[Check] = []
    compute: dict[str, Any] = params.get("computeResources") or {}
    if op in ("CreateComputeEnvironment", "UpdateComputeEnvironment"):
        if params.get("serviceRole"):
            role = _role_arn(request, str(params["serviceRole"]))
            checks += _pass_role([role], "batch.amazonaws.com", context)
        if compute.get("instanceRole"):
            roles = res.iam_profile_roles(request, str(compute["instanceRole"]))
            checks += _pass_role(roles, "ec2.amazonaws.com", context)
        if compute.get("tags"):
            checks += action_checks(request, principal, "batch:SetCapacityTags", context)
    if op == "RegisterJobDefinition":
        container = params.get("containerProperties") or {}
        roles = [str(container[k]) for k in ("jobRoleArn", "executionRoleArn") if container.get(k)]
        checks += _pass_role([_role_arn(request, r) for r in roles], "ecs-tasks.amazonaws.com", context)
    created = {
        "CreateComputeEnvironment": res.batch_compute_environment,
        "CreateJobQueue": res.batch_job_queue,
        "RegisterJobDefinition": res.batch_job_definition,
        "SubmitJob": res.batch_job,
    }.get(op)
    if created is not None and params.get("tags"):
        checks += [Check("batch:TagResource", arn, context) for arn, _ in created(request)]
    return checks
