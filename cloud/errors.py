"""Errors an artist can act on: what happened, and what to do about it.

Every failure that reaches the panel is a `CloudError`; `message` and `action` are one
sentence each, written for someone who has never used the AWS console. `detail` keeps the
technical cause (AWS error code, request id) for the job log, never for the panel. `code` is
one `ErrorCode`, for the code that decides (retry or not, which button the panel offers);
AWS's own error codes are not ours: they stay in `detail`.
"""

from __future__ import annotations

from enum import StrEnum, unique


@unique
class ErrorCode(StrEnum):
    """Every code a `CloudError` (or a capacity report, or the machine's error.json) carries.

    The values are lower snake_case and are what code compares, what the panel stores on the
    WindowManager and what tests see; the machine's kinds are its wire values and never change.
    """

    NONE = ""  # no particular code: the message says it all

    # An AWS or network failure, translated by cloud/aws/error_rules.py (one per row of RULES).
    NO_CREDENTIALS = "no_credentials"
    EXPIRED_CREDENTIALS = "expired_credentials"
    BAD_REGION = "bad_region"
    NO_NETWORK = "no_network"
    UNEXPECTED = "unexpected"
    BAD_CREDENTIALS = "bad_credentials"
    CLOCK_SKEW = "clock_skew"
    ACCESS_DENIED = "access_denied"
    SPOT_CAPACITY = "spot_capacity"
    NO_QUOTA = "no_quota"
    NO_CAPACITY = "no_capacity"
    REGION_UNAVAILABLE = "region_unavailable"
    BUCKET_NAME_TAKEN = "bucket_name_taken"
    THROTTLED = "throttled"
    BUCKET_GONE = "bucket_gone"
    CONFLICT = "conflict"
    AWS_UNAVAILABLE = "aws_unavailable"
    AWS_ERROR = "aws_error"

    # Keys, endpoint and account.
    BAD_KEY_FORMAT = "bad_key_format"
    KEYS_UNREADABLE = "keys_unreadable"
    ROOT_CREDENTIALS = "root_credentials"
    BAD_ENDPOINT = "bad_endpoint"
    INSECURE_ENDPOINT = "insecure_endpoint"
    NO_REGION_REACHABLE = "no_region_reachable"
    NO_GPU_REGION = "no_gpu_region"
    PENDING_VERIFICATION = "pending_verification"
    BAD_BUDGET_AMOUNT = "bad_budget_amount"
    BAD_BUDGET_EMAIL = "bad_budget_email"

    # Machines, quotas and capacity (a capacity report's code is the one its refusal carries).
    FITS = "fits"
    NOT_OFFERED = "not_offered"
    QUOTA_ZERO = "quota_zero"
    QUOTA_LOW = "quota_low"
    QUOTA_UNKNOWN = "quota_unknown"
    QUOTA_REQUEST_DENIED = "quota_request_denied"
    TOO_MANY_QUOTA_REQUESTS = "too_many_quota_requests"
    UNKNOWN_FAMILY = "unknown_family"
    UNKNOWN_INSTANCE_TYPE = "unknown_instance_type"
    TYPE_NOT_OFFERED = "type_not_offered"
    AMI_NOT_FOUND = "ami_not_found"
    AMI_GONE = "ami_gone"
    NO_DEFAULT_VPC = "no_default_vpc"
    SECURITY_GROUP_MISSING = "security_group_missing"
    USER_DATA_TOO_LARGE = "user_data_too_large"
    BATCH_INVALID = "batch_invalid"
    BATCH_NOT_READY = "batch_not_ready"

    # Prices, estimates and caps.
    NO_PRICE = "no_price"
    NO_CAP = "no_cap"
    CAP_TOO_LOW = "cap_too_low"
    BAD_PROBE = "bad_probe"
    PROBE_FAILED = "probe_failed"
    NO_SCOUT_FRAMES = "no_scout_frames"

    # The scene, its packing and its upload.
    BAD_FRAME_LIST = "bad_frame_list"
    BLEND_NOT_FOUND = "blend_not_found"
    BLEND_UNREADABLE = "blend_unreadable"
    BLEND_CORRUPT = "blend_corrupt"
    PACK_DIR_NOT_EMPTY = "pack_dir_not_empty"
    PACK_DIR_IS_PROJECT = "pack_dir_is_project"
    PACK_READ_FAILED = "pack_read_failed"
    PACK_RESERVED_PATH = "pack_reserved_path"
    SCENE_TOO_LARGE = "scene_too_large"
    INPUT_CHANGED = "input_changed"
    TOO_LARGE = "too_large"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    CHECKSUMS_UNREACHABLE = "checksums_unreachable"

    # A job's life on this computer.
    CANCELLED = "cancelled"
    INSTANCE_GONE = "instance_gone"
    BATCH_MACHINE_FAILED = "machine_failed"  # one of a Batch job's machines
    MACHINES_GONE = "machines_gone"
    NOTHING_MISSING = "nothing_missing"
    BAD_JOB_ID = "bad_job_id"
    DELETE_FAILED = "delete_failed"
    MOVIE_SCENE_DAMAGED = "movie_scene_damaged"
    MOVIE_FRAMES_MISSING = "movie_frames_missing"
    MOVIE_NO_SCENE = "movie_no_scene"
    MOVIE_FAILED = "movie_failed"

    # The machine's failure kinds, as it writes them in error.json (cloud/machine/contract.py,
    # ERROR_KINDS): wire values, read back through `machine_failure`.
    MACHINE_NO_GPU = "no_gpu"
    MACHINE_NO_OPENGL = "no_opengl"
    MACHINE_GPU_MEMORY = "gpu_memory"
    MACHINE_MISSING_FILE = "missing_file"
    MACHINE_CRASH = "crash"
    MACHINE_KILLED = "killed"
    MACHINE_RENDER_FAILED = "render_failed"
    MACHINE_UPLOAD = "upload"
    MACHINE_CREDENTIALS_EXPIRED = "credentials_expired"
    MACHINE_DOWNLOAD = "download"
    MACHINE_BLENDER_INSTALL = "blender_install"
    MACHINE_UNSAFE_ARCHIVE = "unsafe_archive"
    MACHINE_CONTRACT = "contract"
    MACHINE_TIME_CAP = "time_cap"
    MACHINE_INTERNAL = "internal"
    MACHINE_ENVIRONMENT = "environment"
    MACHINE_UNKNOWN = "unknown"  # a kind this add-on has no words for


# The codes the machine may write as error.json "kind"; it ships alone and cannot import this.
MACHINE_FAILURES = frozenset(code for code in ErrorCode if code.name.startswith("MACHINE_"))


def machine_failure(kind: str) -> ErrorCode:
    """The code for a failure kind read from the machine's error.json; unknown kinds read as
    MACHINE_UNKNOWN (the machine may be newer than this add-on, and is untrusted input)."""
    try:
        code = ErrorCode(kind)
    except ValueError:
        return ErrorCode.MACHINE_UNKNOWN
    return code if code in MACHINE_FAILURES else ErrorCode.MACHINE_UNKNOWN


class CloudError(Exception):
    """A failure with a plain-words message and the next step for the artist."""

    def __init__(
        self, message: str, action: str = "", *, code: ErrorCode = ErrorCode.NONE, detail: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.action = action
        self.code = code
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.message} {self.action}".strip()


class Cancelled(CloudError):
    """The artist pressed Cancel; not a failure, but it stops the work the same way."""

    def __init__(self, message: str = "Cancelled.") -> None:
        super().__init__(message, code=ErrorCode.CANCELLED)
