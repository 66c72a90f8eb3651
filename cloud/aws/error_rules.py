"""Turn botocore and network exceptions into `CloudError`s an artist can act on.

The translation is a table (`RULES`): each row says which exception types or AWS error codes it
covers and the two sentences the artist reads; the first row that applies wins.

botocore has already retried what is worth retrying (throttling, 5xx, dropped connections)
by the time an exception reaches us, so every translation here is final. The AWS code and
message go to `detail` for the job log; `message` and `action` are plain words.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from botocore import exceptions as bce
from s3transfer.exceptions import RetriesExceededError

from ..errors import CloudError, ErrorCode
from .iam_policy import POLICY_TITLES, action_for_operation, setup_only_actions

BAD_KEYS = frozenset(
    {
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AuthFailure",
        "UnrecognizedClientException",
        "IncompleteSignature",
        "InvalidToken",
        "MissingAuthenticationToken",
    }
)
EXPIRED = frozenset({"ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired"})
DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden", "403"})
QUOTA = frozenset(
    {
        "VcpuLimitExceeded",
        "InstanceLimitExceeded",
        "MaxSpotInstanceCountExceeded",
        "ServiceQuotaExceededException",
    }
)
CAPACITY = frozenset({"InsufficientInstanceCapacity", "InsufficientHostCapacity", "InsufficientCapacity"})
SPOT = frozenset({"SpotMaxPriceTooLow", "InsufficientSpotCapacity"})
REGION = frozenset({"OptInRequired", "InvalidRegion", "UnsupportedOperation"})
TAKEN = frozenset({"BucketAlreadyExists"})
CLOCK = frozenset({"RequestTimeTooSkewed", "RequestExpired", "RequestInTheFuture"})
THROTTLED = frozenset(
    {
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
)
GONE = frozenset({"NoSuchBucket"})
CONFLICT = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412"})
AWS_DOWN = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "500",
        "503",
    }
)

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


def _missing_action(exc: BaseException) -> str:
    """The IAM action AWS said is missing, else the one behind the refused operation."""
    if not isinstance(exc, bce.ClientError):
        return ""
    found = _DENIED_ACTION.search(str(exc.response.get("Error", {}).get("Message", "")))
    if found:
        return found.group(1)
    return action_for_operation(exc.operation_name) or exc.operation_name


@dataclass(frozen=True)
class Facts:
    """What the rules look at: the exception, its AWS code and message, and what we were doing."""

    exc: BaseException
    aws_code: str
    aws_message: str
    spot: bool


class _Words(dict[str, str]):
    """The fields a rule's sentences may name; `missing_action` is looked up only when named."""

    def __init__(self, facts: Facts, fields: dict[str, str]) -> None:
        super().__init__(fields)
        self._facts = facts

    def __missing__(self, key: str) -> str:
        if key == "missing_action":
            value = self[key] = _missing_action(self._facts.exc)
            return value
        if key == "which_policy":
            value = self[key] = _which_policy(self["missing_action"])
            return value
        raise KeyError(key)


def _which_policy(action: str) -> str:
    """Which of the two policies grants `action`, as the step to take: Set Up's writes are
    attached once for Set Up; everything else belongs on the user for good."""
    if action.lower() in {a.lower() for a in setup_only_actions()}:
        return (
            f"This is Set Up's work: attach the {POLICY_TITLES['setup']} policy (Preferences > Copy Set Up "
            "Policy) to your IAM user, press Set Up, then it may be detached again."
        )
    return (
        f"Attach the {POLICY_TITLES['render']} policy (Preferences > Copy Render Policy) to your IAM user "
        "in the AWS console, then try again."
    )


@dataclass(frozen=True)
class Rule:
    """One row of the table: when it applies, and the sentences the artist reads.

    A rule applies when the exception is one of `types`, or its AWS code is one of `codes`, or
    `when(facts)` holds. `message` and `action` are `str.format` templates over {during},
    {where}, {machine}, {region}, {region_or_chosen} and {missing_action}.
    """

    kind: ErrorCode
    message: str
    action: str
    types: tuple[type[BaseException], ...] = ()
    codes: frozenset[str] = frozenset()
    when: Callable[[Facts], bool] | None = None

    def applies(self, facts: Facts) -> bool:
        return (
            (bool(self.types) and isinstance(facts.exc, self.types))
            or (bool(facts.aws_code) and facts.aws_code in self.codes)
            or (self.when is not None and self.when(facts))
        )


def _not_from_aws(facts: Facts) -> bool:
    return not isinstance(facts.exc, bce.ClientError)


def _expired_signature(facts: Facts) -> bool:
    return facts.aws_code == "InvalidSignatureException" and "expired" in facts.aws_message.lower()


def _spot_short(facts: Facts) -> bool:
    return facts.spot and facts.aws_code in CAPACITY


def _always(facts: Facts) -> bool:
    return True


def _facts(exc: BaseException, spot: bool) -> Facts:
    aws_message = ""
    if isinstance(exc, bce.ClientError):
        aws_message = str(exc.response.get("Error", {}).get("Message", ""))
    return Facts(exc, error_code(exc), aws_message, spot)


# Evaluated in order; the first rule that applies wins, and the last applies to everything.
RULES: tuple[Rule, ...] = (
    Rule(
        ErrorCode.NO_CREDENTIALS,
        "Cloud Render found no AWS keys to use{during}.",
        "Paste an access key in Preferences > Add-ons > Cloud Render, or choose an AWS profile that exists.",
        types=(bce.NoCredentialsError, bce.PartialCredentialsError, bce.ProfileNotFound),
    ),
    Rule(
        ErrorCode.EXPIRED_CREDENTIALS,
        "Your AWS sign-in has expired{during}.",
        "Sign in again (for an SSO profile run 'aws sso login') or paste a fresh access key in the preferences.",
        types=(bce.TokenRetrievalError, bce.SSOTokenLoadError, bce.UnauthorizedSSOTokenError),
        codes=EXPIRED,
    ),
    Rule(
        ErrorCode.BAD_REGION,
        "The AWS region '{region}' is not a region Cloud Render can use.",
        "Pick a region from the list in the Cloud Render panel.",
        types=(bce.NoRegionError, bce.InvalidRegionError),
    ),
    Rule(
        ErrorCode.NO_NETWORK,
        "Cloud Render could not reach AWS{during}.",
        "Check your internet connection (and any proxy or firewall), then try again.",
        types=NETWORK_ERRORS,
    ),
    Rule(
        ErrorCode.UNEXPECTED,
        "Something unexpected went wrong{during}.",
        "Try again; if it keeps happening, send the job log to the Cloud Render developers.",
        when=_not_from_aws,
    ),
    # From here on the exception is a ClientError: AWS answered with an error code.
    Rule(
        ErrorCode.BAD_CREDENTIALS,
        "AWS did not accept your access keys{during}.",
        "Copy the key pair again from the AWS console (IAM > Users > Security credentials) and paste it in the preferences.",
        codes=BAD_KEYS,
    ),
    Rule(
        ErrorCode.CLOCK_SKEW,
        "Your computer's clock is off by several minutes, so AWS refuses its requests.",
        "Turn on automatic date and time in your system settings, then try again.",
        codes=CLOCK,
        when=_expired_signature,
    ),
    Rule(
        ErrorCode.ACCESS_DENIED,
        "Your AWS user is not allowed to use {missing_action}{during}.",
        "{which_policy}",
        codes=DENIED,
    ),
    Rule(
        ErrorCode.SPOT_CAPACITY,
        "AWS has no spare discounted (spot) {machine} machines{where} right now.",
        "Switch off 'Spot' to use a regular machine, or try another region or instance type.",
        codes=SPOT,
        when=_spot_short,
    ),
    Rule(
        ErrorCode.NO_QUOTA,
        "Your AWS account is not allowed to start more {machine} machines{where} yet (its quota is too low).",
        "Press 'Request quota increase' in the Cloud Render panel; AWS usually answers within a day.",
        codes=QUOTA,
    ),
    Rule(
        ErrorCode.NO_CAPACITY,
        "AWS has no free {machine} machines{where} right now.",
        "Try another region or instance type, or try again in a few minutes.",
        codes=CAPACITY,
    ),
    Rule(
        ErrorCode.REGION_UNAVAILABLE,
        "The region{region_or_chosen} is not enabled for your AWS account.",
        "Enable it in the AWS console (Account > AWS Regions) or pick another region in the panel.",
        codes=REGION,
    ),
    Rule(
        ErrorCode.BUCKET_NAME_TAKEN,
        "The storage bucket name Cloud Render picked is already taken by another AWS account.",
        "Press the button again: Cloud Render will pick a new random name.",
        codes=TAKEN,
    ),
    Rule(
        ErrorCode.THROTTLED,
        "AWS is limiting how fast Cloud Render may send requests{during}, even after several retries.",
        "Wait a minute, then try again.",
        codes=THROTTLED,
    ),
    Rule(
        ErrorCode.BUCKET_GONE,
        "Your Cloud Render storage bucket no longer exists{where}.",
        "Press Render again: Cloud Render will create a new bucket.",
        codes=GONE,
    ),
    Rule(
        ErrorCode.CONFLICT,
        "Another copy of Cloud Render changed the same file{during}.",
        "Refresh the job list, then try again.",
        codes=CONFLICT,
    ),
    Rule(
        ErrorCode.AWS_UNAVAILABLE,
        "AWS had a temporary problem{during}.",
        "Try again in a few minutes.",
        codes=AWS_DOWN,
    ),
    Rule(
        ErrorCode.AWS_ERROR,
        "AWS refused a request{during}.",
        "Try again; if it keeps happening, the job log has the details.",
        when=_always,
    ),
)


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
    facts = _facts(exc, spot)
    rule = next(r for r in RULES if r.applies(facts))
    where = f" in {region}" if region else ""
    words = _Words(
        facts,
        {
            "during": f" while {context}" if context else "",
            "where": where,
            "machine": instance_type or "GPU",
            "region": region or "none",
            "region_or_chosen": where or " you chose",
        },
    )
    return CloudError(
        rule.message.format_map(words),
        rule.action.format_map(words),
        code=rule.kind,
        detail=_detail(exc),
    )


def classify(exc: BaseException, *, spot: bool = False) -> ErrorCode:
    """The code `translate` would give `exc`, for callers that write their own sentences."""
    if isinstance(exc, CloudError):
        return exc.code
    facts = _facts(exc, spot)
    return next(r for r in RULES if r.applies(facts)).kind


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
