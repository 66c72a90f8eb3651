"""Turn botocore and network exceptions into `CloudError`s an artist can act on.

botocore has already retried what is worth retrying (throttling, 5xx, dropped connections)
by the time an exception reaches us, so every translation here is final. The AWS code and
message go to `detail` for the job log; `message` and `action` are plain words.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Iterator

from botocore import exceptions as bce
from s3transfer.exceptions import RetriesExceededError

from ..errors import CloudError

BAD_KEYS = {
    "InvalidClientTokenId",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AuthFailure",
    "UnrecognizedClientException",
    "IncompleteSignature",
    "InvalidToken",
    "MissingAuthenticationToken",
}
EXPIRED = {"ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired"}
DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden", "403"}
QUOTA = {
    "VcpuLimitExceeded",
    "InstanceLimitExceeded",
    "MaxSpotInstanceCountExceeded",
    "ServiceQuotaExceededException",
}
CAPACITY = {"InsufficientInstanceCapacity", "InsufficientHostCapacity", "InsufficientCapacity"}
SPOT = {"SpotMaxPriceTooLow", "InsufficientSpotCapacity"}
REGION = {"OptInRequired", "InvalidRegion", "UnsupportedOperation"}
TAKEN = {"BucketAlreadyExists"}
CLOCK = {"RequestTimeTooSkewed", "RequestExpired", "RequestInTheFuture"}
THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "SlowDown",
    "TooManyRequestsException",
    "EC2ThrottledException",
}
GONE = {"NoSuchBucket"}
CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict", "412"}
AWS_DOWN = {
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "500",
    "503",
}

NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    bce.EndpointConnectionError,
    bce.ConnectTimeoutError,
    bce.ReadTimeoutError,
    bce.ConnectionClosedError,
    bce.HTTPClientError,
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    RetriesExceededError,  # s3transfer gave up re-reading a download
)

_DENIED_ACTION = re.compile(r"perform:\s*([a-z0-9-]+:[A-Za-z0-9*]+)")


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError ('' for anything else)."""
    if isinstance(exc, bce.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def is_code(exc: BaseException, *codes: str) -> bool:
    return error_code(exc) in codes


def _detail(exc: BaseException) -> str:
    if isinstance(exc, bce.ClientError):
        err = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        return (
            f"{err.get('Code', '')}: {err.get('Message', '')} "
            f"(operation {exc.operation_name}, HTTP {meta.get('HTTPStatusCode', '?')}, "
            f"request id {meta.get('RequestId', '?')})"
        )
    return f"{type(exc).__name__}: {exc}"


def _missing_action(exc: bce.ClientError) -> str:
    from .iam_policy import action_for_operation

    found = _DENIED_ACTION.search(str(exc.response.get("Error", {}).get("Message", "")))
    if found:
        return found.group(1)
    return action_for_operation(exc.operation_name) or exc.operation_name


def translate(
    exc: BaseException,
    context: str = "",
    *,
    region: str = "",
    instance_type: str = "",
    spot: bool = False,
) -> CloudError:
    """A CloudError for `exc`; `context` says what we were doing ("uploading the scene")."""
    if isinstance(exc, CloudError):
        return exc
    during = f" while {context}" if context else ""
    where = f" in {region}" if region else ""
    machine = instance_type or "GPU"
    detail = _detail(exc)
    code = error_code(exc)

    def err(kind: str, message: str, action: str) -> CloudError:
        return CloudError(message, action, code=kind, detail=detail)

    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError | bce.ProfileNotFound):
        return err(
            "no_credentials",
            f"Cloud Render found no AWS keys to use{during}.",
            "Paste an access key in Preferences > Add-ons > Cloud Render, or choose an AWS profile that exists.",
        )
    if isinstance(exc, bce.TokenRetrievalError | bce.SSOTokenLoadError | bce.UnauthorizedSSOTokenError) or (
        code in EXPIRED
    ):
        return err(
            "expired_credentials",
            f"Your AWS sign-in has expired{during}.",
            "Sign in again (for an SSO profile run 'aws sso login') or paste a fresh access key in the preferences.",
        )
    if isinstance(exc, bce.NoRegionError | bce.InvalidRegionError):
        return err(
            "bad_region",
            f"The AWS region '{region or 'none'}' is not a region Cloud Render can use.",
            "Pick a region from the list in the Cloud Render panel.",
        )
    if isinstance(exc, NETWORK_ERRORS):
        return err(
            "no_network",
            f"Cloud Render could not reach AWS{during}.",
            "Check your internet connection (and any proxy or firewall), then try again.",
        )
    if not isinstance(exc, bce.ClientError):
        return err(
            "unexpected",
            f"Something unexpected went wrong{during}.",
            "Try again; if it keeps happening, send the job log to the Cloud Render developers.",
        )

    message = str(exc.response.get("Error", {}).get("Message", ""))
    if code in BAD_KEYS:
        return err(
            "bad_credentials",
            f"AWS did not accept your access keys{during}.",
            "Copy the key pair again from the AWS console (IAM > Users > Security credentials) and paste it in the preferences.",
        )
    if code in CLOCK or (code == "InvalidSignatureException" and "expired" in message.lower()):
        return err(
            "clock_skew",
            "Your computer's clock is off by several minutes, so AWS refuses its requests.",
            "Turn on automatic date and time in your system settings, then try again.",
        )
    if code in DENIED:
        action = _missing_action(exc)
        return err(
            "access_denied",
            f"Your AWS user is not allowed to use {action}{during}.",
            "Attach the Cloud Render policy (Preferences > Copy policy) to your IAM user in the AWS console, then try again.",
        )
    if code in SPOT or (spot and code in CAPACITY):
        return err(
            "spot_capacity",
            f"AWS has no spare discounted (spot) {machine} machines{where} right now.",
            "Switch off 'Spot' to use a regular machine, or try another region or instance type.",
        )
    if code in QUOTA:
        return err(
            "no_quota",
            f"Your AWS account is not allowed to start more {machine} machines{where} yet (its quota is too low).",
            "Press 'Request quota increase' in the Cloud Render panel; AWS usually answers within a day.",
        )
    if code in CAPACITY:
        return err(
            "no_capacity",
            f"AWS has no free {machine} machines{where} right now.",
            "Try another region or instance type, or try again in a few minutes.",
        )
    if code in REGION:
        return err(
            "region_unavailable",
            f"The region{where or ' you chose'} is not enabled for your AWS account.",
            "Enable it in the AWS console (Account > AWS Regions) or pick another region in the panel.",
        )
    if code in TAKEN:
        return err(
            "bucket_name_taken",
            "The storage bucket name Cloud Render picked is already taken by another AWS account.",
            "Press the button again: Cloud Render will pick a new random name.",
        )
    if code in THROTTLED:
        return err(
            "throttled",
            f"AWS is limiting how fast Cloud Render may send requests{during}, even after several retries.",
            "Wait a minute, then try again.",
        )
    if code in GONE:
        return err(
            "bucket_gone",
            f"Your Cloud Render storage bucket no longer exists{where}.",
            "Press Render again: Cloud Render will create a new bucket.",
        )
    if code in CONFLICT:
        return err(
            "conflict",
            f"Another copy of Cloud Render changed the same file{during}.",
            "Refresh the job list, then try again.",
        )
    if code in AWS_DOWN:
        return err(
            "aws_unavailable",
            f"AWS had a temporary problem{during}.",
            "Try again in a few minutes.",
        )
    return err(
        "aws_error",
        f"AWS refused a request{during}.",
        "Try again; if it keeps happening, the job log has the details.",
    )


def is_translatable(exc: BaseException) -> bool:
    return isinstance(exc, (bce.BotoCoreError, bce.ClientError, *NETWORK_ERRORS))


@contextlib.contextmanager
def translating(context: str = "", **where: str | bool) -> Iterator[None]:
    """Raise AWS and network failures inside the block as CloudError."""
    try:
        yield
    except CloudError:
        raise
    except Exception as exc:
        if not is_translatable(exc):
            raise
        raise translate(
            exc,
            context,
            region=str(where.get("region", "")),
            instance_type=str(where.get("instance_type", "")),
            spot=bool(where.get("spot", False)),
        ) from exc
