"""boto3 sessions and clients for the artist's account.

Every AWS call in the add-on goes through `client()`, so one place decides the region, the
endpoints, timeouts and retries. The artist's "Endpoint URL" (`AwsSettings.endpoint_url`, an
S3-compatible service) applies to S3 only: keys, machines, quotas and budgets always go to AWS.
Plain http is refused for it unless the server is on this computer. Developers point other
services elsewhere (the local emulator in tests and the demo) with `service_endpoints` or
botocore's standard `AWS_ENDPOINT_URL_<SERVICE>` / `AWS_ENDPOINT_URL` variables. Keeping credentials inside `AwsSettings` (never in module globals) lets
the UI thread hand a frozen copy to worker threads.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

from ..errors import CloudError, ErrorCode

DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class AwsSettings:
    """Where and as whom to talk to AWS. Secrets are excluded from repr() so they never log."""

    region: str = DEFAULT_REGION
    profile: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    endpoint_url: str | None = None  # the artist's S3-compatible service: S3 only
    # Per-service endpoint overrides, e.g. (("service-quotas", "http://127.0.0.1:9001"),): used
    # for services that a local emulator serves on a different address than the rest.
    service_endpoints: tuple[tuple[str, str], ...] = ()
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_attempts: int = 5  # in total, the first try included

    def in_region(self, region: str) -> AwsSettings:
        return replace(self, region=region)

    def endpoint_for(self, service: str) -> str | None:
        """The endpoint for one service (None: AWS itself). First the service's own override
        (`service_endpoints`, then botocore's `AWS_ENDPOINT_URL_<SERVICE>`); then, for S3 only,
        the artist's endpoint URL (refused with a CloudError when it is plain http to another
        computer); then botocore's general `AWS_ENDPOINT_URL`."""
        override = self.override_for(service)
        if override:
            return override
        if service == "s3" and self.endpoint_url:
            return check_endpoint_url(self.endpoint_url)
        return os.environ.get("AWS_ENDPOINT_URL") or None

    def override_for(self, service: str) -> str | None:
        """The service's own endpoint: `service_endpoints`, then `AWS_ENDPOINT_URL_<SERVICE>`."""
        env = os.environ.get("AWS_ENDPOINT_URL_" + service.upper().replace("-", "_"))
        return dict(self.service_endpoints).get(service) or env or None


def _is_loopback(host: str) -> bool:
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint_url(url: str) -> str:
    """`url` when Cloud Render may send the artist's files to it: https, or plain http to a
    server on this computer (127.0.0.1, localhost, [::1]); else a CloudError that says why."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
    except ValueError:
        parts, host = urlsplit(""), ""
    if host and (parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(host))):
        return text
    if host and parts.scheme == "http":
        raise CloudError(
            f"The Endpoint URL {text} is plain http, so your scenes and frames would cross the network unencrypted.",
            "Use the service's https:// address in Preferences > Add-ons > Cloud Render > Endpoint URL "
            "(plain http is only for a server on this computer).",
            code=ErrorCode.INSECURE_ENDPOINT,
        )
    raise CloudError(
        f"The Endpoint URL '{text}' is not a web address Cloud Render can use.",
        "Enter the service's address starting with https:// in Preferences > Add-ons > Cloud Render, "
        "or leave Endpoint URL empty to use Amazon S3.",
        code=ErrorCode.BAD_ENDPOINT,
    )


def make_session(settings: AwsSettings) -> boto3.session.Session:
    """A boto3 session from pasted keys when given, else the standard profile chain."""
    if settings.access_key_id and settings.secret_access_key:
        return boto3.session.Session(
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            aws_session_token=settings.session_token,
            region_name=settings.region,
        )
    return boto3.session.Session(profile_name=settings.profile or None, region_name=settings.region)


def client_config(settings: AwsSettings, service: str = "", **extra: Any) -> Config:
    """Timeouts short enough to notice a cut network, adaptive retries for throttling, and
    SigV4 for S3 (botocore would presign with SigV2 in us-east-1 otherwise)."""
    return Config(
        region_name=settings.region,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        retries={"total_max_attempts": settings.max_attempts, "mode": "adaptive"},
        signature_version=extra.pop("signature_version", "s3v4" if service == "s3" else None),
        s3={"addressing_style": "path"} if _custom_s3(settings) else {},
        **extra,
    )


def _custom_s3(settings: AwsSettings) -> bool:
    """S3 is not AWS's own: address buckets by path, which every S3-compatible server takes."""
    return bool(settings.endpoint_url or settings.override_for("s3") or os.environ.get("AWS_ENDPOINT_URL"))


class ClientCache:
    """The most recently used clients, at most `size`. Each holds a session with its own parsed
    service models (several MB for EC2): kept per settings without a bound, every key rotation,
    region or endpoint change would keep the old ones for the life of Blender (and a test suite,
    whose every test has keys of its own, grew by gigabytes and slowed as the collector walked
    them). boto3 clients are thread-safe; sessions are not, hence the lock around creation."""

    def __init__(self, size: int = 24) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            cached = self._items.get(key)
            if cached is None:
                cached = self._items[key] = make()
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
            else:
                self._items.move_to_end(key)
            return cached


_clients = ClientCache()


def client(settings: AwsSettings, service: str, session: boto3.session.Session | None = None) -> Any:
    """A boto3 client for `service` honouring the endpoint override.

    Without an explicit session the client is cached per (settings, service, endpoint): making
    one costs ~0.1 s, and the job's polling loop asks for several a second.
    """
    if session is None:
        key = (settings, service, settings.endpoint_for(service))
        return _clients.get(key, lambda: _new_client(settings, service, make_session(settings)))
    return _new_client(settings, service, session)


def _new_client(settings: AwsSettings, service: str, session: boto3.session.Session) -> Any:
    return session.client(
        service,
        region_name=settings.region,
        endpoint_url=settings.endpoint_for(service),
        config=client_config(settings, service),
    )
