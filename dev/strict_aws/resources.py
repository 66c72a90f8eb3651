"""The ARNs a request names, per IAM resource type, with what AWS knows of each resource.

Each resolver reads the operation's input (and, for resources that already exist, moto's
in-process backends: tags, instance types, image owners, bucket owners) and answers the
(ARN, context) pairs IAM authorises for that resource type, or an empty list when the request
names no such resource. Resources a request creates are named as AWS names them before their
id exists: `instance/*`, `volume/*`, `security-group/*`, `job/*`, ...
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree

from .model import AwsRequest

Context = dict[str, list[str]]
Item = tuple[str, Context]
Resolver = Callable[[AwsRequest], list[Item]]


# --- helpers ------------------------------------------------------------------------------------


def indexed(params: dict[str, Any], prefix: str) -> list[str]:
    """Query-protocol list values: `prefix.1`, `prefix.2`, ... in order."""
    found = []
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)$")
    for key, value in params.items():
        match = pattern.match(key)
        if match:
            found.append((int(match.group(1)), str(value)))
    return [v for _, v in sorted(found)]


def tag_context(tags: dict[str, str], kind: str = "ResourceTag", service: str | None = None) -> Context:
    """aws:ResourceTag/<k> (and the service's own alias, ec2:ResourceTag/<k>) for each tag."""
    context: Context = {}
    for key, value in tags.items():
        context[f"aws:{kind}/{key}".lower()] = [value]
        if service:
            context[f"{service}:{kind}/{key}".lower()] = [value]
    return context


def request_tag_context(tags: dict[str, str]) -> Context:
    context = tag_context(tags, "RequestTag")
    if tags:
        context["aws:tagkeys"] = list(tags)
    return context


def _tags_of(value: Any) -> dict[str, str]:
    """moto keeps tags as lists of {Key, Value}, dicts of them, or plain dicts."""
    if isinstance(value, dict):
        return {str(k): str(v.get("Value", "")) if isinstance(v, dict) else str(v) for k, v in value.items()}
    if isinstance(value, list):
        return {str(t.get("Key", t.get("key"))): str(t.get("Value", t.get("value", ""))) for t in value}
    return {}


def _region_arn(request: AwsRequest, service: str, resource: str) -> str:
    return f"arn:aws:{service}:{request.region}:{request.account_id}:{resource}"


# --- EC2 ---------------------------------------------------------------------------------------


def _ec2(request: AwsRequest) -> Any:
    from moto.ec2.models import ec2_backends

    return ec2_backends[request.account_id][request.region]


def ec2_tags(request: AwsRequest, resource_id: str) -> Context:
    return tag_context(dict(_ec2(request).tags.get(resource_id, {})), service="ec2")


def ec2_spec_tags(request: AwsRequest, resource_type: str) -> dict[str, str]:
    """The tags TagSpecification.N gives the resources of one type a request creates."""
    params = request.params
    tags: dict[str, str] = {}
    for n in range(1, 50):
        kind = params.get(f"TagSpecification.{n}.ResourceType")
        if kind is None:
            break
        if kind != resource_type:
            continue
        for m in range(1, 100):
            key = params.get(f"TagSpecification.{n}.Tag.{m}.Key")
            if key is None:
                break
            tags[key] = str(params.get(f"TagSpecification.{n}.Tag.{m}.Value", ""))
    return tags


def ec2_spec_types(request: AwsRequest) -> list[str]:
    return [
        str(request.params[f"TagSpecification.{n}.ResourceType"])
        for n in range(1, 50)
        if f"TagSpecification.{n}.ResourceType" in request.params
    ]


def _created(request: AwsRequest, kind: str, extra: Context | None = None) -> list[Item]:
    context = request_tag_context(ec2_spec_tags(request, kind))
    return [(_region_arn(request, "ec2", f"{kind}/*"), {**context, **(extra or {})})]


def _template(request: AwsRequest) -> Any | None:
    params = request.params
    backend = _ec2(request)
    template_id = params.get("LaunchTemplate.LaunchTemplateId") or params.get("LaunchTemplateId")
    name = params.get("LaunchTemplate.LaunchTemplateName") or params.get("LaunchTemplateName")
    try:
        if template_id:
            return backend.get_launch_template(template_id)
        if name:
            return backend.get_launch_template_by_name(name)
    except Exception:
        return None
    return None


def ec2_instance(request: AwsRequest) -> list[Item]:
    if request.operation == "RunInstances":
        instance_type = request.params.get("InstanceType")
        template = _template(request)
        if not instance_type and template is not None:
            instance_type = template.default_version().instance_type
        extra = {"ec2:instancetype": [instance_type]} if instance_type else {}
        return _created(request, "instance", extra)
    items = []
    backend = _ec2(request)
    ids = indexed(request.params, "InstanceId") or (
        [request.params["InstanceId"]] if "InstanceId" in request.params else []
    )
    for instance_id in ids:
        context = ec2_tags(request, instance_id)
        instance = backend.get_instance_by_id(instance_id)
        if instance is not None:
            context["ec2:instancetype"] = [instance.instance_type]
        items.append((_region_arn(request, "ec2", f"instance/{instance_id}"), context))
    return items


def ec2_image(request: AwsRequest) -> list[Item]:
    ids = indexed(request.params, "ImageId")
    if not ids and request.params.get("ImageId"):
        ids = [str(request.params["ImageId"])]
    if not ids and request.operation == "RunInstances":
        template = _template(request)
        if template is not None and template.default_version().image_id:
            ids = [template.default_version().image_id]
    items = []
    for image_id in ids:
        context = ec2_tags(request, image_id)
        image = _ec2(request).amis.get(image_id)
        if image is not None:
            amazon = image.owner_alias == "amazon" or image_id in AMAZON_IMAGES
            owner = "amazon" if amazon else str(image.owner_id)
            context["ec2:owner"] = [owner]
            context["ec2:public"] = ["true" if image.is_public else "false"]
        items.append((f"arn:aws:ec2:{request.region}::image/{image_id}", context))
    return items


# Images the harness registered to stand in for Amazon's own (the Deep Learning AMIs, which moto
# does not have): on AWS their owner is "amazon", so here too (`/strict-api/amazon-images`).
AMAZON_IMAGES: set[str] = set()


def _group_ids(request: AwsRequest) -> list[str]:
    params = request.params
    backend = _ec2(request)
    ids = indexed(params, "SecurityGroupId")
    for n in range(1, 10):
        ids += indexed(params, f"NetworkInterface.{n}.SecurityGroupId")
    for name in indexed(params, "SecurityGroup"):
        group = backend.get_security_group_from_name(name)
        if group is not None:
            ids.append(group.id)
    if request.operation != "RunInstances":
        if params.get("GroupId"):
            ids.append(str(params["GroupId"]))
        elif params.get("GroupName"):
            group = backend.get_security_group_from_name(params["GroupName"])
            if group is not None:
                ids.append(group.id)
    elif not ids:
        template = _template(request)
        if template is not None:
            ids += list(template.default_version().data.get("SecurityGroupIds", []) or [])
        if not ids:
            vpc = backend.get_default_vpc()
            group = backend.get_security_group_from_name("default", vpc.id if vpc else None)
            ids += [group.id] if group is not None else []
    return ids


def ec2_security_group(request: AwsRequest) -> list[Item]:
    if request.operation == "CreateSecurityGroup":
        return _created(request, "security-group")
    return [
        (_region_arn(request, "ec2", f"security-group/{gid}"), ec2_tags(request, gid))
        for gid in _group_ids(request)
    ]


def ec2_subnet(request: AwsRequest) -> list[Item]:
    params = request.params
    ids = [params["SubnetId"]] if params.get("SubnetId") else []
    ids += [str(params[k]) for k in params if re.fullmatch(r"NetworkInterface\.\d+\.SubnetId", k)]
    if not ids and request.operation == "RunInstances":
        zone = params.get("Placement.AvailabilityZone")
        defaults = _ec2(request).get_default_subnets()
        subnet = defaults.get(zone) if zone else next(iter(sorted(defaults.items())), (None, None))[1]
        if subnet is None:
            return [(_region_arn(request, "ec2", "subnet/*"), {})]
        ids = [subnet.id]
    return [(_region_arn(request, "ec2", f"subnet/{sid}"), ec2_tags(request, sid)) for sid in ids]


def ec2_volume(request: AwsRequest) -> list[Item]:
    if request.operation == "RunInstances":
        return _created(request, "volume")
    ids = indexed(request.params, "VolumeId") or (
        [request.params["VolumeId"]] if request.params.get("VolumeId") else []
    )
    return [(_region_arn(request, "ec2", f"volume/{v}"), ec2_tags(request, v)) for v in ids]


def ec2_network_interface(request: AwsRequest) -> list[Item]:
    return _created(request, "network-interface") if request.operation == "RunInstances" else []


def ec2_launch_template(request: AwsRequest) -> list[Item]:
    if request.operation == "CreateLaunchTemplate":
        return _created(request, "launch-template")
    template = _template(request)
    if template is None:
        return []
    return [(_region_arn(request, "ec2", f"launch-template/{template.id}"), ec2_tags(request, template.id))]


def ec2_spot_request(request: AwsRequest) -> list[Item]:
    if request.operation == "RunInstances":
        if request.params.get("InstanceMarketOptions.MarketType") == "spot":
            return _created(request, "spot-instances-request")
        return []
    ids = indexed(request.params, "SpotInstanceRequestId")
    return [(_region_arn(request, "ec2", f"spot-instances-request/{i}"), ec2_tags(request, i)) for i in ids]


def ec2_key_pair(request: AwsRequest) -> list[Item]:
    name = request.params.get("KeyName")
    return [(_region_arn(request, "ec2", f"key-pair/{name}"), {})] if name else []


def ec2_vpc(request: AwsRequest) -> list[Item]:
    vpc_id = request.params.get("VpcId")
    if not vpc_id and request.operation == "CreateSecurityGroup":
        vpc = _ec2(request).get_default_vpc()
        vpc_id = vpc.id if vpc is not None else None
    return [(_region_arn(request, "ec2", f"vpc/{vpc_id}"), ec2_tags(request, vpc_id))] if vpc_id else []


# EC2 id prefix -> resource type, for CreateTags/DeleteTags on existing resources.
_EC2_ID_TYPES = {
    "i": "instance",
    "sg": "security-group",
    "vol": "volume",
    "lt": "launch-template",
    "subnet": "subnet",
    "vpc": "vpc",
    "eni": "network-interface",
    "snap": "snapshot",
    "sir": "spot-instances-request",
    "key": "key-pair",
}


def ec2_tagged(request: AwsRequest, resource_type: str) -> list[Item]:
    """CreateTags/DeleteTags: the existing resources of one type among ResourceId.N."""
    items = []
    for resource_id in indexed(request.params, "ResourceId"):
        if resource_id.startswith("ami-"):
            if resource_type == "image":
                items.append(
                    (f"arn:aws:ec2:{request.region}::image/{resource_id}", ec2_tags(request, resource_id))
                )
            continue
        if _EC2_ID_TYPES.get(resource_id.split("-", 1)[0]) == resource_type:
            arn = _region_arn(request, "ec2", f"{resource_type}/{resource_id}")
            items.append((arn, ec2_tags(request, resource_id)))
    return items


# --- S3 ----------------------------------------------------------------------------------------


def _bucket_owner(request: AwsRequest, bucket: str) -> str:
    from moto.s3.models import s3_backends

    try:
        return str(s3_backends[request.account_id]["aws"].get_bucket(bucket).account_id)
    except Exception:
        return request.account_id


def s3_bucket(request: AwsRequest) -> list[Item]:
    if not request.bucket:
        return []
    # CreateBucket makes the bucket in the caller's account: its s3:ResourceAccount is the
    # caller's, and a name another account holds is then S3's BucketAlreadyExists, not a denial.
    if request.operation == "CreateBucket":
        owner = request.account_id
    else:
        owner = _bucket_owner(request, request.bucket)
    return [(f"arn:aws:s3:::{request.bucket}", {"s3:resourceaccount": [owner]})]


def _delete_keys(body: bytes) -> list[str]:
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return []
    return [el.text or "" for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Key"]


def s3_object(request: AwsRequest, action: str = "") -> list[Item]:
    if not request.bucket:
        return []
    if action == "s3:GetObject" and request.operation in ("CopyObject", "UploadPartCopy"):
        source = request.headers.get("x-amz-copy-source", "").lstrip("/").split("?", 1)[0]
        from urllib.parse import unquote

        bucket, _, key = unquote(source).partition("/")
        owner = _bucket_owner(request, bucket)
        return [(f"arn:aws:s3:::{bucket}/{key}", {"s3:resourceaccount": [owner]})]
    owner = _bucket_owner(request, request.bucket)
    keys = _delete_keys(request.body) if request.operation == "DeleteObjects" else []
    if request.operation == "PostObject" and request.key is not None:
        keys = [request.key.replace("${filename}", request.post_form.get("filename", ""))]
    elif request.key is not None:
        keys = keys or [request.key]
    return [(f"arn:aws:s3:::{request.bucket}/{k}", {"s3:resourceaccount": [owner]}) for k in keys]


# --- Batch -------------------------------------------------------------------------------------


def _batch(request: AwsRequest) -> Any:
    from moto.batch.models import batch_backends

    return batch_backends[request.account_id][request.region]


def batch_tags(request: AwsRequest, arn: str) -> Context:
    try:
        return tag_context(dict(_batch(request).list_tags_for_resource(arn) or {}))
    except Exception:
        return {}


def _batch_named(request: AwsRequest, kind: str, identifier: str, lookup: str) -> Item:
    """An existing Batch resource by name or ARN, with its tags."""
    if identifier.startswith("arn:"):
        arn = identifier
    else:
        found = getattr(_batch(request), lookup)(identifier)
        arn = found.arn if found is not None else _region_arn(request, "batch", f"{kind}/{identifier}")
    return arn, batch_tags(request, arn)


def _by_arn(request: AwsRequest, kind: str) -> list[Item]:
    arn = str(request.params.get("resourceArn", ""))
    if f":{kind}/" in arn:
        if kind == "job" and re.search(r":job/[^/]+:\d+$", arn):  # an array child: no tags on AWS
            return [(arn, {})]
        return [(arn, batch_tags(request, arn))]
    return []


def batch_compute_environment(request: AwsRequest) -> list[Item]:
    params = request.params
    if request.operation == "CreateComputeEnvironment":
        name = params.get("computeEnvironmentName", "")
        return [(_region_arn(request, "batch", f"compute-environment/{name}"), {})]
    if "resourceArn" in params:
        return _by_arn(request, "compute-environment")
    idents = [str(params["computeEnvironment"])] if params.get("computeEnvironment") else []
    idents += [str(o.get("computeEnvironment")) for o in params.get("computeEnvironmentOrder") or []]
    return [_batch_named(request, "compute-environment", i, "get_compute_environment") for i in idents]


def batch_job_queue(request: AwsRequest) -> list[Item]:
    params = request.params
    if request.operation == "CreateJobQueue":
        name = params.get("jobQueueName", "")
        return [(_region_arn(request, "batch", f"job-queue/{name}"), {})]
    if "resourceArn" in params:
        return _by_arn(request, "job-queue")
    ident = params.get("jobQueue")
    return [_batch_named(request, "job-queue", str(ident), "get_job_queue")] if ident else []


def batch_job_definition(request: AwsRequest) -> list[Item]:
    params = request.params
    if request.operation == "RegisterJobDefinition":
        # What is made is the next revision: its ARN carries the revision number.
        name = str(params.get("jobDefinitionName", ""))
        known = [d.revision for d in _batch(request)._job_definitions.values() if d.name == name]
        return [(_region_arn(request, "batch", f"job-definition/{name}:{max(known, default=0) + 1}"), {})]
    if "resourceArn" in params:
        return _by_arn(request, "job-definition")
    ident = params.get("jobDefinition")
    if not ident:
        return []
    found = _batch(request).get_job_definition(str(ident))
    arn = found.arn if found is not None else _region_arn(request, "batch", f"job-definition/{ident}")
    return [(arn, batch_tags(request, arn))]


def batch_job(request: AwsRequest) -> list[Item]:
    params = request.params
    if request.operation == "SubmitJob":
        return [(_region_arn(request, "batch", "job/*"), {})]
    if "resourceArn" in params:
        return _by_arn(request, "job")
    job_id = params.get("jobId")
    if not job_id:
        return []
    arn = _region_arn(request, "batch", f"job/{job_id}")
    if re.search(r":\d+$", str(job_id)):  # an array job's child: AWS gives it no tags
        return [(arn, {})]
    job = _batch(request).get_job_by_id(str(job_id))
    return [(job.arn if job is not None else arn, batch_tags(request, job.arn) if job is not None else {})]


# --- IAM ---------------------------------------------------------------------------------------


def _iam(request: AwsRequest) -> Any:
    from moto.iam.models import iam_backends

    return iam_backends[request.account_id]["aws"]


def iam_role_item(request: AwsRequest, name: str) -> Item:
    try:
        role = _iam(request).get_role(name)
    except Exception:
        path = str(request.params.get("Path") or "/")
        return f"arn:aws:iam::{request.account_id}:role{path}{name}", {}
    return role.arn, tag_context(_tags_of(role.tags), service="iam")


def iam_role(request: AwsRequest) -> list[Item]:
    params = request.params
    if request.operation == "CreateServiceLinkedRole":
        service = params.get("AWSServiceName", "")
        arn = f"arn:aws:iam::{request.account_id}:role/aws-service-role/{service}/*"
        return [(arn, {"iam:awsservicename": [service]})]
    if params.get("RoleArn"):
        return [(str(params["RoleArn"]), {})]
    name = params.get("RoleName")
    return [iam_role_item(request, str(name))] if name else []


def iam_instance_profile(request: AwsRequest) -> list[Item]:
    name = request.params.get("InstanceProfileName")
    if not name:
        return []
    try:
        profile = _iam(request).get_instance_profile(name)
        return [(profile.arn, tag_context(_tags_of(profile.tags), service="iam"))]
    except Exception:
        path = str(request.params.get("Path") or "/")
        return [(f"arn:aws:iam::{request.account_id}:instance-profile{path}{name}", {})]


def iam_profile_roles(request: AwsRequest, ident: str) -> list[str]:
    """The role ARNs inside an instance profile named by name or ARN."""
    name = ident.rsplit("/", 1)[-1]
    try:
        return [role.arn for role in _iam(request).get_instance_profile(name).roles]
    except Exception:
        return []


def iam_user(request: AwsRequest, own: str = "") -> list[Item]:
    name = request.params.get("UserName")
    if not name:
        return [(own, {})] if own else []
    try:
        user = _iam(request).get_user(name)
        return [(user.arn, {})]
    except Exception:
        path = str(request.params.get("Path") or "/")
        return [(f"arn:aws:iam::{request.account_id}:user{path}{name}", {})]


def iam_policy(request: AwsRequest) -> list[Item]:
    params = request.params
    if request.operation == "CreatePolicy":
        path = str(params.get("Path") or "/")
        return [(f"arn:aws:iam::{request.account_id}:policy{path}{params.get('PolicyName', '')}", {})]
    return [(str(params["PolicyArn"]), {})] if params.get("PolicyArn") else []


def iam_group(request: AwsRequest) -> list[Item]:
    name = request.params.get("GroupName")
    return [(f"arn:aws:iam::{request.account_id}:group/{name}", {})] if name else []


# --- the JSON services ---------------------------------------------------------------------------


def budgets_budget(request: AwsRequest) -> list[Item]:
    name = request.params.get("BudgetName")
    if not name and request.operation == "CreateBudget":
        name = (request.params.get("Budget") or {}).get("BudgetName")
    return [(f"arn:aws:budgets::{request.account_id}:budget/{name or '*'}", {})]


def logs_group(request: AwsRequest) -> list[Item]:
    name = request.params.get("logGroupName") or request.params.get("logGroupIdentifier")
    if not name:
        return []
    if str(name).startswith("arn:"):
        return [(str(name).removesuffix(":*"), {})]
    return [(_region_arn(request, "logs", f"log-group:{name}"), {})]


def logs_stream(request: AwsRequest) -> list[Item]:
    group = request.params.get("logGroupName") or request.params.get("logGroupIdentifier")
    stream = request.params.get("logStreamName")
    if not (group and stream):
        return []
    return [(_region_arn(request, "logs", f"log-group:{group}:log-stream:{stream}"), {})]


def ssm_parameter(request: AwsRequest) -> list[Item]:
    names = list(request.params.get("Names") or [])
    if request.params.get("Name"):
        names.append(str(request.params["Name"]))
    if request.params.get("Path"):
        names.append(str(request.params["Path"]))
    items: list[Item] = []
    for name in names:
        path = name if name.startswith("/") else f"/{name}"
        account = "" if path.startswith("/aws/") else request.account_id
        items.append((f"arn:aws:ssm:{request.region}:{account}:parameter{path}", {}))
    return items


def quotas_quota(request: AwsRequest) -> list[Item]:
    service = request.params.get("ServiceCode")
    code = request.params.get("QuotaCode")
    if not (service and code):
        return []
    return [(_region_arn(request, "servicequotas", f"{service}/{code}"), {})]


def events_rule(request: AwsRequest) -> list[Item]:
    """A rule on the default bus (SAR, Amazon EventBridge: rule-on-default-event-bus is
    `arn:aws:events:<region>:<account>:rule/<name>`); PutRule names it `Name`, the others `Rule`."""
    name = request.params.get("Name") or request.params.get("Rule")
    bus = request.params.get("EventBusName") or "default"
    if not name or str(bus) not in ("default", _region_arn(request, "events", "event-bus/default")):
        return []
    return [(_region_arn(request, "events", f"rule/{name}"), {})]


def events_custom_rule(request: AwsRequest) -> list[Item]:
    """A rule on another bus: `rule/<bus>/<name>` (none of ours: theirs are on the default bus)."""
    name = request.params.get("Name") or request.params.get("Rule")
    bus = str(request.params.get("EventBusName") or "default").rsplit("/", 1)[-1]
    if not name or bus == "default":
        return []
    return [(_region_arn(request, "events", f"rule/{bus}/{name}"), {})]


def sns_topic(request: AwsRequest) -> list[Item]:
    """CreateTopic names the topic by `Name`; the others by `TopicArn`."""
    if request.operation == "CreateTopic" and request.params.get("Name"):
        return [(_region_arn(request, "sns", str(request.params["Name"])), {})]
    arn = request.params.get("TopicArn")
    return [(str(arn), {})] if arn else []


def sts_role(request: AwsRequest) -> list[Item]:
    arn = request.params.get("RoleArn")
    return [(str(arn), {})] if arn else []


RESOLVERS: dict[tuple[str, str], Resolver] = {
    ("ec2", "instance"): ec2_instance,
    ("ec2", "image"): ec2_image,
    ("ec2", "security-group"): ec2_security_group,
    ("ec2", "subnet"): ec2_subnet,
    ("ec2", "volume"): ec2_volume,
    ("ec2", "network-interface"): ec2_network_interface,
    ("ec2", "launch-template"): ec2_launch_template,
    ("ec2", "spot-instances-request"): ec2_spot_request,
    ("ec2", "key-pair"): ec2_key_pair,
    ("ec2", "vpc"): ec2_vpc,
    ("s3", "bucket"): s3_bucket,
    ("batch", "compute-environment"): batch_compute_environment,
    ("batch", "job-queue"): batch_job_queue,
    ("batch", "job-definition"): batch_job_definition,
    ("batch", "job-definition-revision"): batch_job_definition,
    ("batch", "job"): batch_job,
    ("iam", "role"): iam_role,
    ("iam", "instance-profile"): iam_instance_profile,
    ("iam", "policy"): iam_policy,
    ("iam", "group"): iam_group,
    ("budgets", "budget"): budgets_budget,
    ("logs", "log-group"): logs_group,
    ("logs", "log-stream"): logs_stream,
    ("ssm", "parameter"): ssm_parameter,
    ("servicequotas", "quota"): quotas_quota,
    ("sts", "role"): sts_role,
    ("events", "rule-on-default-event-bus"): events_rule,
    ("events", "rule-on-custom-event-bus"): events_custom_rule,
    ("sns", "topic"): sns_topic,
}
