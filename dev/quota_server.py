"""Small AWS-shaped HTTP servers on 127.0.0.1 for what moto server lacks, used by the tests.

moto 5.2.5 serves no EC2 vCPU quotas (Service Quotas) in most regions and cannot be told to be
short of spot capacity, so these servers answer those requests the way AWS does (same wire
protocol, same error bodies) and the product reaches them through
`AwsSettings(service_endpoints=...)`; nothing in boto3 is patched.

- `LocalAwsServer`: the shared base (threaded server, request log, region from the signature,
  forwarding to moto for everything a subclass does not answer itself).
- `QuotaServer`: Service Quotas JSON protocol (GetServiceQuota,
  RequestServiceQuotaIncrease, ListRequestedServiceQuotaChangeHistoryByQuota) with settable
  values per region and quota code.
- `Ec2Proxy`: EC2 query protocol in front of moto; answers RunInstances that ask for spot
  with a configured capacity error, and can list Amazon-owned images moto does not have.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import requests

ACCOUNT_ID = "123456789012"
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/")


@dataclass
class SeenRequest:
    """One request as the server saw it, for assertions."""

    region: str
    target: str  # X-Amz-Target for JSON services, Action for query services
    body: dict[str, Any]


def strict_refusal(
    authorizer: str | None,
    method: str,
    path: str,
    headers: dict[str, str],
    raw: bytes,
    service: str | None = None,
) -> tuple[int, str, str] | None:
    """Ask the strict layer in front of moto (`dev.strict_aws.server`) whether AWS would let the
    request's signer make it: None if so (or when there is no strict layer to ask), else the
    refusal as (status, code, message) for the caller to write in its own protocol."""
    if not authorizer:
        return None
    payload = {
        "service": service,
        "method": method,
        "path": path,
        "headers": headers,
        "body": base64.b64encode(raw).decode(),
    }
    resp = requests.post(f"{authorizer}/strict-api/authorize", json=payload, timeout=30)
    answer = resp.json() if resp.status_code == 200 and resp.text.startswith("{") else {}
    if "allowed" not in answer or answer["allowed"]:  # plain moto (nothing enforces IAM), or allowed
        return None
    refusal = answer["refusal"]
    return int(refusal["status"]), str(refusal["code"]), str(refusal["message"])


class ReplyLost(Exception):
    """Raised by `answer` after serving a request, to drop the connection without a reply."""


class LocalAwsServer:
    """A threaded HTTP server on a free loopback port; subclasses implement `answer`."""

    # The service's botocore name for the strict layer; None: read from the signature's scope.
    service: str | None = None

    def __init__(self, upstream: str | None = None, authorizer: str | None = None) -> None:
        self.upstream = upstream
        # Where to ask whether the signer may make a request (the strict layer): the upstream
        # emulator by default; without either, every request is answered as before.
        self.authorizer = authorizer or upstream
        self.seen: list[SeenRequest] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    status, headers, body = outer.dispatch(self.command, self.path, dict(self.headers), raw)
                except ReplyLost:  # the request was served; its answer never reaches the caller
                    self.close_connection = True
                    return
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                return  # keep test output quiet

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> LocalAwsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> LocalAwsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @staticmethod
    def region_of(headers: dict[str, str]) -> str:
        """The region the client signed for (AWS routes by endpoint; we read the signature)."""
        match = _SCOPE.search(headers.get("Authorization", ""))
        return match.group(1) if match else "us-east-1"

    def record(self, region: str, target: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.seen.append(SeenRequest(region, target, body))

    def dispatch(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        refusal = strict_refusal(self.authorizer, method, path, headers, raw, self.service)
        if refusal is not None:
            return self.refuse(*refusal)
        answered = self.answer(method, path, headers, raw)
        if answered is not None:
            return answered
        return self.forward(method, path, headers, raw)

    def refuse(self, status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
        """A refusal in the server's protocol (JSON by default)."""
        return _json_error(status, code, message)

    def answer(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], bytes] | None:
        """Answer a request, or return None to forward it to the upstream emulator."""
        raise NotImplementedError

    def forward(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if not self.upstream:
            return 404, {"Content-Type": "text/plain"}, b"not served here"
        # The Host header travels as signed, so that the signature still verifies upstream.
        skip = {"content-length", "connection", "accept-encoding"}
        out = {k: v for k, v in headers.items() if k.lower() not in skip}
        resp = requests.request(method, self.upstream + path, headers=out, data=raw, timeout=30)
        keep = {"content-type", "x-amzn-requestid", "x-amz-request-id"}
        return resp.status_code, {k: v for k, v in resp.headers.items() if k.lower() in keep}, resp.content


# --- Service Quotas ---------------------------------------------------------------------------

QUOTA_NAMES = {
    "L-1216C47A": "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
    "L-DB2E81BA": "Running On-Demand G and VT instances",
    "L-417A185B": "Running On-Demand P instances",
    "L-34B43A08": "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests",
    "L-3819A6DF": "All G and VT Spot Instance Requests",
    "L-7212CCBC": "All P Spot Instance Requests",
}

# What a new account typically has: some standard vCPUs, no GPU vCPUs at all.
NEW_ACCOUNT_QUOTAS = {
    "L-1216C47A": 32.0,
    "L-34B43A08": 32.0,
    "L-DB2E81BA": 0.0,
    "L-3819A6DF": 0.0,
    "L-417A185B": 0.0,
    "L-7212CCBC": 0.0,
}


@dataclass
class QuotaRequestRecord:
    id: str
    region: str
    service_code: str
    quota_code: str
    desired: float
    status: str = "PENDING"
    created: float = field(default_factory=time.time)


class QuotaServer(LocalAwsServer):
    """Service Quotas for EC2 vCPUs, per region and code. Set `values` before the test calls."""

    service = "service-quotas"

    def __init__(self, defaults: dict[str, float] | None = None, authorizer: str | None = None) -> None:
        super().__init__(upstream=None, authorizer=authorizer)
        self.defaults: dict[str, float] = dict(NEW_ACCOUNT_QUOTAS if defaults is None else defaults)
        self.values: dict[tuple[str, str], float] = {}
        self.requests: list[QuotaRequestRecord] = []

    def set_quota(self, code: str, value: float, region: str = "us-east-1") -> None:
        self.values[(region, code)] = float(value)

    def quota(self, region: str, code: str) -> float | None:
        if (region, code) in self.values:
            return self.values[(region, code)]
        return self.defaults.get(code)

    def answer(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], bytes] | None:
        target = headers.get("X-Amz-Target", "")
        op = target.split(".", 1)[-1]
        body = json.loads(raw or b"{}")
        region = self.region_of(headers)
        self.record(region, op, body)
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            return _json_error(400, "IllegalArgumentException", f"Operation {op} is not served here.")
        result: tuple[int, dict[str, str], bytes] = handler(region, body)
        return result

    def _quota_shape(self, region: str, code: str, value: float) -> dict[str, Any]:
        return {
            "ServiceCode": "ec2",
            "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
            "QuotaArn": f"arn:aws:servicequotas:{region}:{ACCOUNT_ID}:ec2/{code}",
            "QuotaCode": code,
            "QuotaName": QUOTA_NAMES.get(code, code),
            "Value": value,
            "Unit": "None",
            "Adjustable": True,
            "GlobalQuota": False,
        }

    def _op_GetServiceQuota(self, region: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        code = body.get("QuotaCode", "")
        value = self.quota(region, code) if body.get("ServiceCode") == "ec2" else None
        if value is None:
            return _json_error(
                400,
                "NoSuchResourceException",
                "The request failed because the specified quota does not exist.",
            )
        return _json_ok({"Quota": self._quota_shape(region, code, value)})

    def _request_shape(self, rec: QuotaRequestRecord) -> dict[str, Any]:
        return {
            "Id": rec.id,
            "RequestType": "AutomaticManagement",
            "ServiceCode": rec.service_code,
            "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
            "QuotaCode": rec.quota_code,
            "QuotaName": QUOTA_NAMES.get(rec.quota_code, rec.quota_code),
            "DesiredValue": rec.desired,
            "Status": rec.status,
            "Created": rec.created,
            "LastUpdated": rec.created,
            "Requester": f'{{"accountId":"{ACCOUNT_ID}","callerArn":"arn:aws:iam::{ACCOUNT_ID}:user/cloud-render"}}',
            "QuotaArn": f"arn:aws:servicequotas:{rec.region}:{ACCOUNT_ID}:ec2/{rec.quota_code}",
            "GlobalQuota": False,
            "Unit": "None",
            "QuotaRequestedAtLevel": "ACCOUNT",
        }

    def _op_RequestServiceQuotaIncrease(
        self, region: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, str], bytes]:
        code = body.get("QuotaCode", "")
        current = self.quota(region, code)
        if body.get("ServiceCode") != "ec2" or current is None:
            return _json_error(
                400,
                "NoSuchResourceException",
                "The request failed because the specified quota does not exist.",
            )
        desired = float(body.get("DesiredValue", 0))
        if desired <= current:
            return _json_error(
                400, "IllegalArgumentException", "The requested value must be greater than the current value."
            )
        for rec in self.requests:
            if rec.region == region and rec.quota_code == code and rec.status in ("PENDING", "CASE_OPENED"):
                return _json_error(
                    400, "ResourceAlreadyExistsException", "A request for this quota is already open."
                )
        rec = QuotaRequestRecord(
            id=uuid.uuid4().hex, region=region, service_code="ec2", quota_code=code, desired=desired
        )
        self.requests.append(rec)
        return _json_ok({"RequestedQuota": self._request_shape(rec)})

    def _op_ListRequestedServiceQuotaChangeHistoryByQuota(
        self, region: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, str], bytes]:
        code = body.get("QuotaCode", "")
        found = [
            self._request_shape(r)
            for r in sorted(self.requests, key=lambda r: r.created, reverse=True)
            if r.region == region
            and r.quota_code == code
            and (not body.get("Status") or r.status == body["Status"])
        ]
        return _json_ok({"RequestedQuotas": found})


def _json_ok(payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/x-amz-json-1.1"}, json.dumps(payload).encode()


def _json_error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"__type": code, "message": message}).encode()
    return status, {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": code}, body


# --- EC2 in front of moto ---------------------------------------------------------------------


@dataclass(frozen=True)
class AmazonImage:
    """An Amazon-owned public image, as DescribeImages lists it."""

    image_id: str
    name: str
    creation_date: str  # ISO 8601, e.g. 2025-06-01T00:00:00.000Z
    root_device_name: str = "/dev/xvda"


class Ec2Proxy(LocalAwsServer):
    """EC2 (query protocol) forwarded to moto, except what a test asks to answer differently.

    `spot_error`: RunInstances with InstanceMarketOptions fails with this EC2 error code,
    as AWS does when it has no spot capacity for the type; on-demand requests go to moto.
    `on_demand_error`: the same for RunInstances without InstanceMarketOptions.
    `amazon_images`: DescribeImages with Owner=amazon lists these (moto has no current DLAMIs).
    `lose_run_replies`: RunInstances reaches moto (the machine starts) but its reply is lost,
    as when the artist's network drops at the wrong moment.
    """

    def __init__(
        self,
        upstream: str,
        spot_error: str | None = None,
        amazon_images: tuple[AmazonImage, ...] = (),
        on_demand_error: str | None = None,
        lose_run_replies: bool = False,
    ) -> None:
        super().__init__(upstream=upstream)
        self.spot_error = spot_error
        self.on_demand_error = on_demand_error
        self.lose_run_replies = lose_run_replies
        self.amazon_images = amazon_images

    service = "ec2"

    def refuse(self, status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
        return _xml_error(status, code, message)

    def actions(self) -> list[str]:
        return [r.target for r in self.seen]

    def answer(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], bytes] | None:
        params = {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
        action = params.get("Action", "")
        self.record(self.region_of(headers), action, params)
        if action == "RunInstances":
            is_spot = any(k.startswith("InstanceMarketOptions") for k in params)
            code = self.spot_error if is_spot else self.on_demand_error
            if code:
                return _xml_error(
                    500 if code.startswith("Insufficient") else 400, code, _EC2_MESSAGES.get(code, code)
                )
            if self.lose_run_replies:  # EC2 starts the machine, the answer is lost on the way
                self.forward("POST", path, headers, raw)
                raise ReplyLost()
        if action == "DescribeImages" and params.get("Owner.1") == "amazon":
            return self._describe_amazon_images(params)
        return None

    def _describe_amazon_images(self, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        names = {
            k.rsplit(".", 1)[0]: v
            for k, v in params.items()
            if k.startswith("Filter.") and k.endswith(".Name")
        }
        name_pattern = next((params[f"{k}.Value.1"] for k, v in names.items() if v == "name"), None)
        items = []
        for image in self.amazon_images:
            if name_pattern and not re.fullmatch(re.escape(name_pattern).replace(r"\*", ".*"), image.name):
                continue
            items.append(
                "<item>"
                f"<imageId>{image.image_id}</imageId><name>{escape(image.name)}</name>"
                f"<imageState>available</imageState><imageOwnerId>898082745236</imageOwnerId>"
                f"<imageOwnerAlias>amazon</imageOwnerAlias><isPublic>true</isPublic>"
                f"<architecture>x86_64</architecture><imageType>machine</imageType>"
                f"<creationDate>{image.creation_date}</creationDate>"
                f"<rootDeviceType>ebs</rootDeviceType><rootDeviceName>{image.root_device_name}</rootDeviceName>"
                f"<virtualizationType>hvm</virtualizationType><hypervisor>xen</hypervisor>"
                "</item>"
            )
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<DescribeImagesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
            f"<requestId>{uuid.uuid4()}</requestId><imagesSet>{''.join(items)}</imagesSet>"
            "</DescribeImagesResponse>"
        )
        return 200, {"Content-Type": "text/xml;charset=UTF-8"}, xml.encode()


_EC2_MESSAGES = {
    "InsufficientInstanceCapacity": "We currently do not have sufficient capacity in the Availability Zone you requested.",
    "SpotMaxPriceTooLow": "Your Spot request price is lower than the minimum required Spot request fulfillment price.",
    "VcpuLimitExceeded": "You have requested more vCPU capacity than your current vCPU limit allows for the instance bucket that the specified instance type belongs to.",
    "UnauthorizedOperation": "You are not authorized to perform this operation.",
}


def _xml_error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Errors><Error><Code>{code}</Code><Message>{escape(message)}</Message></Error></Errors>"
        f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
    )
    return status, {"Content-Type": "text/xml;charset=UTF-8"}, xml.encode()
