"""AWS Batch limits moto does not keep: array sizes, the 60-second minimum attempt timeout,
tags on the calls moto does not validate, and a job no machine of its queue can run.

That last one AWS does not refuse: it accepts the job, which then waits in RUNNABLE forever. A
test would only notice by timing out; here it is refused at once, saying why, as the test
layer's stand-in for the stuck job.
"""

from __future__ import annotations

from typing import Any

from .model import AwsRequest, Refusal, Rule
from .rules_common import TAG_DOC, moto_backend, tag_problem

SUBMIT_DOC = (
    'AWS Batch API Reference, "SubmitJob" and "ArrayProperties" (size: 2 to 10,000): '
    "https://docs.aws.amazon.com/batch/latest/APIReference/API_ArrayProperties.html; "
    'AWS Batch User Guide, "Array jobs": https://docs.aws.amazon.com/batch/latest/userguide/array_jobs.html'
)
TIMEOUT_DOC = (
    'AWS Batch API Reference, "JobTimeout" (attemptDurationSeconds: the minimum value is 60 seconds): '
    "https://docs.aws.amazon.com/batch/latest/APIReference/API_JobTimeout.html"
)
RUNNABLE_DOC = (
    'AWS Batch User Guide, "Jobs stuck in a RUNNABLE status" and "Compute resource memory management": '
    "https://docs.aws.amazon.com/batch/latest/userguide/job_stuck_in_runnable.html"
)
BATCH_TAGS_DOC = (
    'AWS Batch User Guide, "Tag your AWS Batch resources" (tag restrictions): '
    "https://docs.aws.amazon.com/batch/latest/userguide/using-tags.html; " + TAG_DOC
)

MIN_ARRAY, MAX_ARRAY = 2, 10_000
MIN_ATTEMPT_S = 60
# "optimal" and the default_* aliases as the Batch User Guide lists their families.
ALIASES = {
    "optimal": ("c4", "m4", "r4"),
    "default_x86_64": ("m6i", "c6i", "r6i"),
    "default_arm64": ("m6g", "c6g", "r6g"),
}


def _client(message: str) -> Refusal:
    return Refusal(400, "ClientException", message)


class ArraySize:
    """SubmitJob's `arrayProperties.size` outside 2 to 10,000 (moto starts any number of children)."""

    name = "batch-array-size"
    doc = SUBMIT_DOC

    def check(self, request: AwsRequest) -> Refusal | None:
        if request.service != "batch" or request.operation != "SubmitJob":
            return None
        array = request.params.get("arrayProperties") or {}
        if not isinstance(array, dict) or "size" not in array:
            return None
        size = array["size"]
        if not isinstance(size, int) or not MIN_ARRAY <= size <= MAX_ARRAY:
            return _client(f"Array job size must be between {MIN_ARRAY} and {MAX_ARRAY}: {size}")
        return None


class AttemptTimeout:
    """`timeout.attemptDurationSeconds` under 60 on SubmitJob or RegisterJobDefinition."""

    name = "batch-attempt-timeout"
    doc = TIMEOUT_DOC

    def check(self, request: AwsRequest) -> Refusal | None:
        if request.service != "batch" or request.operation not in ("SubmitJob", "RegisterJobDefinition"):
            return None
        timeout = request.params.get("timeout") or {}
        seconds = timeout.get("attemptDurationSeconds") if isinstance(timeout, dict) else None
        if seconds is not None and (not isinstance(seconds, int) or seconds < MIN_ATTEMPT_S):
            return _client(
                f"timeout.attemptDurationSeconds must be at least {MIN_ATTEMPT_S} seconds: {seconds}"
            )
        return None


def needs(definition: Any, overrides: dict[str, Any]) -> dict[str, float]:
    """A job's VCPU, MEMORY (MiB) and GPU: the definition's, each replaced by an override."""
    found: dict[str, float] = {}
    container = dict(getattr(definition, "container_properties", None) or {})
    for source in (container, overrides or {}):
        if "vcpus" in source:
            found["VCPU"] = float(source["vcpus"])
        if "memory" in source:
            found["MEMORY"] = float(source["memory"])
        for requirement in source.get("resourceRequirements") or []:
            kind = str(requirement.get("type", "")).upper()
            if kind in ("VCPU", "MEMORY", "GPU"):
                found[kind] = float(requirement.get("value", 0))
    return found


def instance_capacity(instance_types: list[str]) -> list[tuple[str, dict[str, float]]] | None:
    """(type, {VCPU, MEMORY, GPU}) of every type an environment may launch, or None where one
    of them is unknown here (then nothing is refused)."""
    from moto.ec2.models.instance_types import INSTANCE_TYPES

    names: list[str] = []
    for entry in instance_types:
        if entry in INSTANCE_TYPES:
            names.append(entry)
            continue
        families = ALIASES.get(entry, (entry,))
        members = [name for name in INSTANCE_TYPES if name.split(".")[0] in families]
        if not members:
            return None
        names.extend(members)
    capacity = []
    for name in names:
        info = INSTANCE_TYPES[name]
        gpus = sum(int(gpu.get("Count", 0)) for gpu in (info.get("GpuInfo") or {}).get("Gpus", []))
        capacity.append(
            (
                name,
                {
                    "VCPU": float(info["VCpuInfo"]["DefaultVCpus"]),
                    "MEMORY": float(info["MemoryInfo"]["SizeInMiB"]),
                    "GPU": float(gpus),
                },
            )
        )
    return capacity


class JobFitsQueue:
    """A SubmitJob whose VCPU, MEMORY or GPU no instance type of its queue's EC2 / Spot compute
    environments has (or whose vCPUs exceed the environment's maxvCpus). AWS accepts it and it
    stays RUNNABLE forever; refused here instead. Memory is compared with the instance's whole
    memory, so a job that only fits AWS's smaller usable share still passes."""

    name = "batch-job-fits-queue"
    doc = RUNNABLE_DOC

    def check(self, request: AwsRequest) -> Refusal | None:
        if request.service != "batch" or request.operation != "SubmitJob":
            return None
        backend = moto_backend("batch", request)
        if backend is None:
            return None
        queue = backend.get_job_queue(str(request.params.get("jobQueue", "")))
        definition = backend.get_job_definition(str(request.params.get("jobDefinition", "")))
        if queue is None or definition is None:
            return None  # moto answers that itself
        need = needs(definition, request.params.get("containerOverrides") or {})
        if not need:
            return None
        offered: list[str] = []
        for environment in queue.environments:
            resources = environment.compute_resources or {}
            if environment.env_type != "MANAGED" or resources.get("type") not in ("EC2", "SPOT"):
                return None  # unmanaged or Fargate: not judged here
            capacity = instance_capacity(list(resources.get("instanceTypes") or []))
            if capacity is None:
                return None
            if need.get("VCPU", 0) > float(resources.get("maxvCpus", 0)):
                offered.append(f"{environment.name}: maxvCpus {resources.get('maxvCpus')}")
                continue
            for _, has in capacity:
                if all(has.get(kind, 0) >= amount for kind, amount in need.items()):
                    return None
            offered.extend(f"{name} ({_describe(has)})" for name, has in capacity[:5])
        return _client(
            f"No instance of job queue {queue.name} can run this job ({_describe(need)}); "
            f"it offers {', '.join(offered) or 'nothing'}. AWS would accept the job and leave it "
            "RUNNABLE forever; the strict test layer refuses it instead."
        )


def _describe(amounts: dict[str, float]) -> str:
    units = {"VCPU": "vCPU", "MEMORY": "MiB", "GPU": "GPU"}
    return ", ".join(f"{amount:g} {units[kind]}" for kind, amount in sorted(amounts.items()))


# Where each call carries tags, and whether moto already checks them (RegisterJobDefinition:
# everything but the count). SubmitJob: moto refuses bad tags, but only after it has queued the
# job, which then lists as SUBMITTED for ever; so it is refused here, before moto sees it.
_TAG_CALLS = (
    "CreateComputeEnvironment",
    "CreateJobQueue",
    "TagResource",
    "RegisterJobDefinition",
    "SubmitJob",
)


class BatchTags:
    """Batch tags: at most 50 per resource (counting a TagResource's target's tags), keys of at
    most 128 and values of at most 256 characters, no `aws:` keys, on the calls moto does not
    check, and on the compute environment's `computeResources.tags` (its machines' EC2 tags)."""

    name = "batch-tags"
    doc = BATCH_TAGS_DOC

    def check(self, request: AwsRequest) -> Refusal | None:
        if request.service != "batch" or request.operation not in _TAG_CALLS:
            return None
        groups: list[dict[str, Any]] = [request.params.get("tags") or {}]
        if request.operation == "CreateComputeEnvironment":
            groups.append((request.params.get("computeResources") or {}).get("tags") or {})
        existing = 0
        if request.operation == "TagResource":
            existing = len(set(self._existing(request)) - set(groups[0]))
        for tags in groups:
            if not isinstance(tags, dict):
                continue
            pairs = [(str(key), str(value)) for key, value in tags.items()]
            if request.operation == "RegisterJobDefinition":
                pairs = [(str(index), "") for index in range(len(pairs))]  # moto checks the rest
            problem = tag_problem(pairs, existing)
            if problem is not None:
                return _client(problem.detail)
        return None

    @staticmethod
    def _existing(request: AwsRequest) -> list[str]:
        backend = moto_backend("batch", request)
        if backend is None:
            return []
        return list(backend.list_tags_for_resource(str(request.params.get("resourceArn", ""))))


RULES: list[Rule] = [ArraySize(), AttemptTimeout(), JobFitsQueue(), BatchTags()]
