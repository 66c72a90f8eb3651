"""The render machine's user-data: the boot script with the job's presigned URLs filled in.

Imported by the add-on when it launches an instance, so standard library only. The script
(template in bootstrap.sh) schedules the dead-man shutdown first, installs the libraries
Blender needs, downloads the worker (one archive, checked against the SHA-256 written in the
script) and the spec, and starts the supervisor. One link for every machine file keeps the script
a few KB whatever the number of files (EC2 allows 16 KB).
"""

from __future__ import annotations

import re
import shlex
import urllib.parse

from ..errors import CloudError, ErrorCode
from ..machine import BOOT_TEMPLATE

USER_DATA_LIMIT = 16 * 1024  # EC2 refuses larger user-data (before base64)

# Runtime libraries Blender needs on the Deep Learning Base OSS NVIDIA Driver GPU AMIs.
DNF_PACKAGES = (
    "libXfixes",
    "libXrender",
    "libXxf86vm",
    "libxkbcommon",
    "libSM",
    "libICE",
    "libXi",
    "mesa-libGL",
    "libglvnd-egl",  # libEGL.so.1: EEVEE and Workbench draw through EGL (NVIDIA's, via glvnd)
)
APT_PACKAGES = ("libxrender1", "libxi6", "libxkbcommon0", "libsm6", "libxxf86vm1", "libgl1", "libegl1")


def session_tokens(urls: list[str], fields: dict[str, str]) -> dict[str, str]:
    """Shell variable -> value for the session token that temporary credentials repeat in every URL.

    Written once as a variable instead of six times, it keeps the script under EC2's 16 KB.
    """
    tokens: dict[str, str] = {}
    for url in urls:
        for pair in urllib.parse.urlsplit(url).query.split("&"):
            if pair.startswith("X-Amz-Security-Token="):
                tokens["TOKEN_Q"] = pair.split("=", 1)[1]
    raw = fields.get("x-amz-security-token", "")
    if raw:
        tokens["TOKEN"] = raw
    return tokens


def shell_quote(text: str, tokens: dict[str, str]) -> str:
    """`text` as one shell word, with each token it contains written as "${NAME}"."""
    pieces: list[tuple[str, bool]] = [(text, False)]
    for name, value in tokens.items():
        split: list[tuple[str, bool]] = []
        for piece, is_ref in pieces:
            if is_ref:
                split.append((piece, True))
                continue
            parts = piece.split(value)
            for index, part in enumerate(parts):
                if index:
                    split.append((name, True))
                split.append((part, False))
        pieces = split
    return "".join(f'"${{{p}}}"' if is_ref else shlex.quote(p) for p, is_ref in pieces if p or is_ref) or "''"


def build_user_data(
    spec_url: str, worker_url: str, worker_sha256: str, max_minutes: int, log_post: dict
) -> str:
    """The shell user-data for one job.

    `worker_url`: presigned GET of the worker archive (`cloud.machine.worker_archive`), whose
    SHA-256 is `worker_sha256`: the machine refuses any other bytes.
    `log_post`: the job's presigned POST, {"url": ..., "fields": {...}} as `presign_post` returns,
    whose "key" field ends in "${filename}"; the boot script posts its own log and status with it.
    """
    if not re.fullmatch(r"[0-9a-f]{64}", worker_sha256):
        raise ValueError(f"not a SHA-256: {worker_sha256!r}")
    if max_minutes < 1:
        raise ValueError("max_minutes must be at least 1")
    fields = dict(log_post["fields"])
    key_prefix = fields.pop("key", "").replace("${filename}", "")
    tokens = session_tokens([spec_url, worker_url], fields)
    post_fields = " ".join(f"--form-string {shell_quote(f'{k}={v}', tokens)}" for k, v in fields.items())
    with open(BOOT_TEMPLATE, encoding="utf-8") as handle:
        script = handle.read()
    for marker, value in (
        ("@@MAX_MINUTES@@", str(int(max_minutes))),
        ("@@TOKENS@@", "\n".join(f"{name}={shlex.quote(value)}" for name, value in tokens.items())),
        ("@@POST_URL@@", shlex.quote(log_post["url"])),
        ("@@KEY_PREFIX@@", shlex.quote(key_prefix)),
        ("@@POST_FIELDS@@", post_fields),
        ("@@DNF_PACKAGES@@", " ".join(DNF_PACKAGES)),
        ("@@APT_PACKAGES@@", " ".join(APT_PACKAGES)),
        ("@@WORKER_URL@@", shell_quote(worker_url, tokens)),
        ("@@WORKER_SHA256@@", worker_sha256),
        ("@@SPEC_URL@@", shell_quote(spec_url, tokens)),
    ):
        script = script.replace(marker, value)
    size = len(script.encode("utf-8"))
    if size > USER_DATA_LIMIT:
        raise CloudError(
            "The render machine's start script is too large for AWS.",
            "Use a shorter bucket name, then submit again.",
            code=ErrorCode.USER_DATA_TOO_LARGE,
            detail=f"{size} bytes > {USER_DATA_LIMIT}",
        )
    return script
