"""Can this account start this machine type here, now? Offerings, vCPU quotas, quota requests.

AWS limits how many vCPUs of each instance family an account may run at once, separately for
on-demand and spot, per region (Service Quotas). New accounts usually have 0 for the GPU
families (G and VT, P), so the first render would fail at launch with an AWS code the artist
cannot act on; this module says so beforehand in plain words and files the increase request.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from ..errors import CloudError, ErrorCode
from .error_rules import error_code, translate
from .iam_policy import POLICY_TITLES
from .session import AwsSettings, client, make_session

# Service Quotas codes of the EC2 vCPU quotas: family -> (on-demand, spot, label).
QUOTAS: dict[str, tuple[str, str, str]] = {
    "standard": ("L-1216C47A", "L-34B43A08", "Standard (A, C, D, H, I, M, R, T, Z) instances"),
    "g": ("L-DB2E81BA", "L-3819A6DF", "G and VT instances"),
    "p": ("L-417A185B", "L-7212CCBC", "P instances"),
    "x": ("L-7295265B", "L-E3A00192", "X instances"),
    "f": ("L-74FC7D96", "L-88CF9481", "F instances"),
    "inf": ("L-1945791B", "L-B5D1601B", "Inf instances"),
}
_STANDARD_LETTERS = set("acdhimrtz")
_OWN_QUOTA = ("dl", "hpc", "inf", "mac", "trn")  # families with quotas of their own, not "Standard"
_PREFIX = re.compile(r"^([a-z]+?)(?=\d)")
GPU_FAMILIES = ("g", "p")

OPEN_STATUSES = ("PENDING", "CASE_OPENED")
STATUS_WORDS = {
    "PENDING": "waiting for AWS",
    "CASE_OPENED": "AWS is reviewing it",
    "APPROVED": "approved",
    "DENIED": "declined by AWS",
    "NOT_APPROVED": "declined by AWS",
    "CASE_CLOSED": "closed by AWS",
    "INVALID_REQUEST": "rejected as invalid",
    "NOT_NEEDED": "not needed: the quota is already high enough",
}


@dataclass(frozen=True)
class CapacityReport:
    """Whether `instance_type` can start now, and if not, why and what to do (plain words)."""

    offered: bool
    vcpus_needed: int
    quota_vcpus: float | None  # None: the quota could not be read
    fits: bool
    message: str
    action: str
    instance_type: str = ""
    region: str = ""
    spot: bool = False
    quota_code: str = ""
    quota_label: str = ""
    vcpus_in_use: int = 0
    code: ErrorCode = ErrorCode.NONE  # FITS, NOT_OFFERED, QUOTA_ZERO, QUOTA_LOW or QUOTA_UNKNOWN


@dataclass(frozen=True)
class QuotaRequest:
    """A request to raise a vCPU quota; `status` is AWS's word, `status_words` ours."""

    id: str
    status: str
    desired: float
    quota_code: str = ""
    region: str = ""
    created: datetime | None = None

    @property
    def open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def status_words(self) -> str:
        return STATUS_WORDS.get(self.status, self.status.lower())


# Codes of a refusal that a quota increase would cure: the panel offers Request Quota Increase.
QUOTA_ERROR_CODES = frozenset({ErrorCode.QUOTA_ZERO, ErrorCode.QUOTA_LOW, ErrorCode.NO_QUOTA})


def _family(instance_type: str) -> str:
    prefix_match = _PREFIX.match(instance_type.lower())
    prefix = prefix_match.group(1) if prefix_match else ""
    if prefix == "vt" or prefix.startswith("g"):
        return "g"
    if prefix.startswith("p"):
        return "p"
    if prefix in ("inf", "f", "x"):
        return prefix
    if prefix and prefix[0] in _STANDARD_LETTERS and prefix not in _OWN_QUOTA:
        return "standard"
    raise CloudError(
        f"Cloud Render cannot check the AWS limits for {instance_type} machines.",
        "Choose a machine type from the list in the Cloud Render panel.",
        code=ErrorCode.UNKNOWN_FAMILY,
    )


def family_quota_code(instance_type: str, spot: bool) -> tuple[str, str]:
    """The Service Quotas code and its AWS label for the type's vCPU quota (on-demand or spot)."""
    on_demand, spot_code, label = QUOTAS[_family(instance_type)]
    if spot:
        return spot_code, f"All {label.replace(' instances', '')} Spot Instance Requests"
    return on_demand, f"Running On-Demand {label}"


# --- what AWS says ------------------------------------------------------------------------------


def _offered(ec2: Any, types: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(types), 100):
        pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
            LocationType="region", Filters=[{"Name": "instance-type", "Values": types[start : start + 100]}]
        )
        for page in pages:
            found.update(o["InstanceType"] for o in page.get("InstanceTypeOfferings", []))
    return found


def _vcpus(ec2: Any, types: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for start in range(0, len(types), 100):
        pages = ec2.get_paginator("describe_instance_types").paginate(
            InstanceTypes=types[start : start + 100]
        )
        for page in pages:
            for info in page.get("InstanceTypes", []):
                out[info["InstanceType"]] = int(info["VCpuInfo"]["DefaultVCpus"])
    return out


def _quota(sq: Any, code: str) -> float | None:
    """The account's quota value, or None when it cannot be read (no permission, unknown code)."""
    try:
        return float(sq.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"])
    except ClientError as exc:
        if error_code(exc) in (
            "NoSuchResourceException",
            "AccessDeniedException",
            "IllegalArgumentException",
        ):
            return None
        raise


def _in_use(ec2: Any, spot: bool) -> dict[str, int]:
    """vCPUs running now per quota code (all instances of the account, not only ours)."""
    running: list[tuple[str, bool]] = []
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    for page in pages:
        for reservation in page.get("Reservations", []):
            for inst in reservation.get("Instances", []):
                running.append((inst["InstanceType"], inst.get("InstanceLifecycle") == "spot"))
    mine = [t for t, is_spot in running if is_spot == spot]
    sizes = _vcpus(ec2, sorted(set(mine))) if mine else {}
    used: dict[str, int] = {}
    for instance_type in mine:
        try:
            code, _ = family_quota_code(instance_type, spot)
        except CloudError:
            continue
        used[code] = used.get(code, 0) + sizes.get(instance_type, 0)
    return used


# --- the report ---------------------------------------------------------------------------------


def _report(
    instance_type: str,
    region: str,
    spot: bool,
    offered: bool,
    vcpus: int,
    quota: float | None,
    in_use: int,
) -> CapacityReport:
    quota_code, label = family_quota_code(instance_type, spot)
    kind = "spot " if spot else ""

    def report(fits: bool, message: str, action: str, code: ErrorCode) -> CapacityReport:
        return CapacityReport(
            offered=offered,
            vcpus_needed=vcpus,
            quota_vcpus=quota,
            fits=fits,
            message=message,
            action=action,
            instance_type=instance_type,
            region=region,
            spot=spot,
            quota_code=quota_code,
            quota_label=label,
            vcpus_in_use=in_use,
            code=code,
        )

    if not offered:
        return report(
            False,
            f"AWS does not offer {instance_type} machines in {region}.",
            "Choose another machine type or region.",
            ErrorCode.NOT_OFFERED,
        )
    if quota is None:
        return report(
            True,
            f"Cloud Render could not read your account's limit for {label} in {region}, "
            f"so a {instance_type} may still be refused at launch.",
            "Attach the CloudRenderRender policy (Preferences > Copy Render Policy; it lets Cloud Render read quotas) "
            "to your IAM user for a check before launch.",
            ErrorCode.QUOTA_UNKNOWN,
        )
    if quota <= 0:
        what = "GPU machines" if _family(instance_type) in GPU_FAMILIES else f"{kind}machines of this kind"
        return report(
            False,
            f"New AWS accounts may not start {what} until AWS raises a limit called a quota: "
            f"yours allows 0 vCPUs of {label} in {region}, and a {instance_type} needs {vcpus}.",
            "Request quota increase (AWS usually answers within a day), "
            "and meanwhile render on a machine type your account can run now.",
            ErrorCode.QUOTA_ZERO,
        )
    if in_use + vcpus > quota:
        busy = f" and {in_use} are in use already" if in_use else ""
        return report(
            False,
            f"Your AWS account may run {quota:g} vCPUs of {label} at once in {region}; "
            f"a {instance_type} needs {vcpus}{busy}.",
            "Request quota increase, or choose a smaller machine type.",
            ErrorCode.QUOTA_LOW,
        )
    return report(
        True, f"Your AWS account can start a {kind}{instance_type} in {region}.", "", ErrorCode.FITS
    )


def check_capacity(settings: AwsSettings, instance_type: str, spot: bool) -> CapacityReport:
    """Is the type offered in the region, and does the family's vCPU quota leave room for it?"""
    region = settings.region
    code, _ = family_quota_code(instance_type, spot)
    try:
        session = make_session(settings)
        ec2 = client(settings, "ec2", session)
        offered = instance_type in _offered(ec2, [instance_type])
        vcpus = _vcpus(ec2, [instance_type]).get(instance_type, 0) if offered else 0
        quota = _quota(client(settings, "service-quotas", session), code)
        in_use = _in_use(ec2, spot).get(code, 0) if offered else 0
    except CloudError:
        raise
    except Exception as exc:
        raise translate(
            exc, "checking what your account may run", region=region, instance_type=instance_type
        ) from exc
    return _report(instance_type, region, spot, offered, vcpus, quota, in_use)


def runnable_now(settings: AwsSettings, candidates: list[str], spot: bool) -> list[str]:
    """The candidates this account can start in the region now (offered and within quota), in order."""
    region = settings.region
    try:
        session = make_session(settings)
        ec2 = client(settings, "ec2", session)
        offered = _offered(ec2, list(dict.fromkeys(candidates)))
        known = [t for t in candidates if t in offered]
        vcpus = _vcpus(ec2, sorted(set(known))) if known else {}
        sq = client(settings, "service-quotas", session)
        quotas: dict[str, float | None] = {}
        in_use = _in_use(ec2, spot) if known else {}
        runnable: list[str] = []
        for instance_type in known:
            try:
                code, _ = family_quota_code(instance_type, spot)
            except CloudError:
                continue
            if code not in quotas:
                quotas[code] = _quota(sq, code)
            quota = quotas[code]
            if quota is None or in_use.get(code, 0) + vcpus.get(instance_type, 0) <= quota:
                runnable.append(instance_type)
        return runnable
    except CloudError:
        raise
    except Exception as exc:
        raise translate(exc, "checking what your account may run", region=region) from exc


# --- quota requests -----------------------------------------------------------------------------


def desired_vcpus(needed: int) -> int:
    """Round a vCPU need up to what is worth asking for: steps of 8 (32 above 64)."""
    step = 8 if needed <= 64 else 32
    return max(step, math.ceil(needed / step) * step)


def _as_request(item: dict[str, Any], region: str) -> QuotaRequest:
    return QuotaRequest(
        id=str(item.get("Id", "")),
        status=str(item.get("Status", "")),
        desired=float(item.get("DesiredValue", 0)),
        quota_code=str(item.get("QuotaCode", "")),
        region=region,
        created=item.get("Created"),
    )


def _history(sq: Any, code: str, region: str) -> list[QuotaRequest]:
    items: list[dict[str, Any]] = []
    pages = sq.get_paginator("list_requested_service_quota_change_history_by_quota").paginate(
        ServiceCode="ec2", QuotaCode=code
    )
    for page in pages:
        items.extend(page.get("RequestedQuotas", []))
    requests = [_as_request(i, region) for i in items]
    return sorted(requests, key=lambda r: r.created.timestamp() if r.created else 0.0, reverse=True)


def quota_request_status(settings: AwsSettings, instance_type: str, spot: bool) -> QuotaRequest | None:
    """The newest increase request for the type's quota in this region, or None if there is none."""
    code, _ = family_quota_code(instance_type, spot)
    try:
        history = _history(client(settings, "service-quotas"), code, settings.region)
    except Exception as exc:
        raise translate(exc, "checking your quota request", region=settings.region) from exc
    return history[0] if history else None


def request_quota_increase(
    settings: AwsSettings, instance_type: str, spot: bool, machines: int = 1
) -> QuotaRequest:
    """Ask AWS for enough vCPUs of the type's family to run `machines` of it at once; an open
    request is returned as is."""
    region = settings.region
    code, label = family_quota_code(instance_type, spot)
    try:
        session = make_session(settings)
        ec2 = client(settings, "ec2", session)
        sq = client(settings, "service-quotas", session)
        vcpus = _vcpus(ec2, [instance_type]).get(instance_type, 0) * max(1, machines)
        current = _quota(sq, code) or 0.0
        needed = max(vcpus, _in_use(ec2, spot).get(code, 0) + vcpus)
        for existing in _history(sq, code, region):
            if existing.open:
                return existing
        if needed <= current:
            return QuotaRequest("", "NOT_NEEDED", current, code, region)
        desired = float(desired_vcpus(needed))
        try:
            item = sq.request_service_quota_increase(ServiceCode="ec2", QuotaCode=code, DesiredValue=desired)
        except ClientError as exc:
            if error_code(exc) == "ResourceAlreadyExistsException":
                history = _history(sq, code, region)
                if history:
                    return history[0]
            raise
        return _as_request(item["RequestedQuota"], region)
    except CloudError:
        raise
    except ClientError as exc:
        if error_code(exc) in ("AccessDeniedException", "DependencyAccessDeniedException"):
            raise CloudError(
                "Your AWS user may not ask AWS for a higher limit (quota).",
                f"Attach the {POLICY_TITLES['setup']} policy (Preferences > Copy Set Up Policy) to your IAM user "
                "and press the button again, or ask the account owner to request it in the AWS console: "
                f"Service Quotas > Amazon EC2 > {label}.",
                code=ErrorCode.QUOTA_REQUEST_DENIED,
                detail=f"{error_code(exc)}: {exc}",
            ) from exc
        if error_code(exc) == "QuotaExceededException":
            raise CloudError(
                "Your AWS account has too many open quota requests.",
                "Wait until AWS answers the open ones (Service Quotas > Quota request history), then try again.",
                code=ErrorCode.TOO_MANY_QUOTA_REQUESTS,
                detail=f"{error_code(exc)}: {exc}",
            ) from exc
        raise translate(
            exc, "asking AWS for a higher limit", region=region, instance_type=instance_type
        ) from exc
    except Exception as exc:
        raise translate(
            exc, "asking AWS for a higher limit", region=region, instance_type=instance_type
        ) from exc
