"""Start and reset moto in server mode on loopback for the tests and the demo.

moto runs as its own process (real HTTP, real botocore requests) so no test patches boto3,
and so its request handling does not compete with bpy for this process's GIL.

The product reaches it the way a developer would point it anywhere: S3 through the artist's
Endpoint URL (`AwsSettings.endpoint_url`, S3 only), every other service through botocore's
standard per-service variables (`endpoint_variables`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import requests

# The services moto serves for the product besides S3. The full emulated account (dev/emulator.py)
# serves the last two from small servers of its own.
MOTO_SERVICES = ("ec2", "sts", "iam", "budgets", "pricing", "batch", "logs", "sns", "events")
SERVICES = (*MOTO_SERVICES, "ssm", "service-quotas")


def endpoint_variable(service: str) -> str:
    """botocore's variable for one service's endpoint: AWS_ENDPOINT_URL_SERVICE_QUOTAS, ..."""
    return "AWS_ENDPOINT_URL_" + service.upper().replace("-", "_")


def endpoint_variables(url: str, services: tuple[str, ...] = SERVICES) -> dict[str, str]:
    """The environment that sends `services` (every one but S3 by default) to `url`."""
    return {endpoint_variable(service): url for service in services}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def moto_server(
    log_path: Path | None = None, *, managed_policies: bool = False, strict: bool = True
) -> Iterator[str]:
    """Run moto behind the strict layer (`dev.strict_aws.server`, which takes `moto.server`'s
    arguments and answers as AWS would for the principal that signed each request) on a free
    loopback port; yields its base URL.

    `managed_policies`: moto knows AWS's managed policies (Set Up attaches the managed ECS policy
    to the Batch machines' role). Off by default: moto then loads about a thousand policies on
    every reset that touches IAM (GetCallerIdentity does), which made the suite twice as slow.

    `strict=False`: plain `moto.server`, for the tests that show what moto alone lets through
    (tests/unit/test_strict_rules.py, `test_moto_itself_*`); nothing else runs without the layer."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Behind the strict layer: what AWS refuses is refused here too (dev/README.md).
    module = "dev.strict_aws.server" if strict else "moto.server"
    log: IO[bytes] | None = open(log_path, "wb") if log_path else None  # noqa: SIM115
    env = {
        **os.environ,
        "MOTO_ALLOW_NONEXISTENT_REGION": "false",
        "MOTO_IAM_LOAD_MANAGED_POLICIES": "true" if managed_policies else "false",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "-H", "127.0.0.1", "-p", str(port)],
        stdout=log if log is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {proc.returncode}")
            try:
                requests.get(f"{url}/moto-api/", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start within 30 s") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log is not None:
            log.close()


def reset(url: str) -> None:
    """Forget every bucket, instance and key: each test starts with an empty account.

    Up to a minute: a server that knows AWS's managed policies loads them again on each reset,
    and on a computer with every core busy that took more than 10 s (two set-up tests failed)."""
    requests.post(f"{url}/moto-api/reset", timeout=60).raise_for_status()


def emulator_url(request: Any) -> str:
    """The session's moto server for this test (a pytest request): the one that knows AWS's
    managed policies when the test is marked `iam_managed_policies`, else the plain one."""
    marked = request.node.get_closest_marker("iam_managed_policies") is not None
    return str(request.getfixturevalue("moto_url_managed" if marked else "moto_url"))
