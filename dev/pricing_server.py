"""A local stand-in for the AWS Price List API (moto has no `pricing` service).

It speaks the JSON 1.1 protocol botocore uses for pricing:GetProducts (POST /, header
X-Amz-Target: AWSPriceListService.GetProducts) and answers with AWS-shaped product documents,
each serialised to a string in PriceList as the real service does, paged by NextToken.
"""

from __future__ import annotations

import contextlib
import json
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dev.quota_server import strict_refusal

TARGET = "AWSPriceListService.GetProducts"


def product_document(region: str, instance_type: str, price: float, os_name: str = "Linux") -> dict[str, Any]:
    """One EC2 product as the Price List API returns it (the fields the product reads, and more)."""
    sku = f"SKU{zlib.crc32(f'{region}/{instance_type}/{os_name}'.encode()):010d}"
    return {
        "product": {
            "productFamily": "Compute Instance",
            "sku": sku,
            "attributes": {
                "servicecode": "AmazonEC2",
                "regionCode": region,
                "instanceType": instance_type,
                "operatingSystem": os_name,
                "tenancy": "Shared",
                "preInstalledSw": "NA",
                "capacitystatus": "Used",
                "licenseModel": "No License required",
                "usagetype": f"BoxUsage:{instance_type}",
            },
        },
        "serviceCode": "AmazonEC2",
        "terms": {
            "OnDemand": {
                f"{sku}.JRTCKXETXF": {
                    "offerTermCode": "JRTCKXETXF",
                    "sku": sku,
                    "effectiveDate": "2026-11-01T00:00:00Z",
                    "priceDimensions": {
                        f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                            "unit": "Hrs",
                            "description": f"${price} per On Demand {os_name} {instance_type} Instance Hour",
                            "pricePerUnit": {"USD": f"{price:.10f}"},
                            "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7",
                        }
                    },
                }
            }
        },
        "version": "20261101000000",
        "publicationDate": "2026-11-01T00:00:00Z",
    }


class PricingState:
    """What the server answers, and what it was asked (for the tests to check)."""

    def __init__(
        self, prices: dict[tuple[str, str], float], page_size: int = 2, authorizer: str | None = None
    ) -> None:
        # The strict layer to ask whether the signer may call pricing:GetProducts (None: allow all).
        self.authorizer = authorizer
        self.documents = [product_document(r, t, p) for (r, t), p in prices.items()]
        # A Windows price for every type, which the product's filters must leave out.
        self.documents += [product_document(r, t, p * 2, "Windows") for (r, t), p in prices.items()]
        self.page_size = page_size
        self.deny = False
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        matches = [doc for doc in self.documents if _matches(doc, body.get("Filters", []))]
        start = int(body.get("NextToken") or 0)
        size = min(int(body.get("MaxResults") or self.page_size), self.page_size)
        page = matches[start : start + size]
        reply: dict[str, Any] = {"FormatVersion": "aws_v1", "PriceList": [json.dumps(d) for d in page]}
        if start + size < len(matches):
            reply["NextToken"] = str(start + size)
        return reply


def _matches(doc: dict[str, Any], filters: list[dict[str, str]]) -> bool:
    attributes = doc["product"]["attributes"]
    return all(attributes.get(f["Field"]) == f["Value"] for f in filters if f.get("Type") == "TERM_MATCH")


def _handler(state: PricingState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            return

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            refusal = strict_refusal(state.authorizer, "POST", self.path, dict(self.headers), raw, "pricing")
            if refusal is not None:
                status, code, message = refusal
                self._reply(status, {"__type": code, "message": message})
                return
            body = json.loads(raw or b"{}")
            with state.lock:
                state.requests.append({"target": self.headers.get("X-Amz-Target"), "body": body})
            if self.headers.get("X-Amz-Target") != TARGET:
                self._reply(400, {"__type": "UnknownOperationException", "message": "unknown target"})
            elif state.deny:
                self._reply(
                    400,
                    {
                        "__type": "AccessDeniedException",
                        "message": "User is not authorized to perform pricing:GetProducts",
                    },
                )
            else:
                self._reply(200, state.answer(body))

    return Handler


@contextlib.contextmanager
def pricing_server(
    prices: dict[tuple[str, str], float], page_size: int = 2, authorizer: str | None = None
) -> Iterator[tuple[str, PricingState]]:
    """Serve `prices` ((region, type) -> USD/h) on a free loopback port; yields (url, state).

    `authorizer`: the strict layer's URL, to refuse what the signer's IAM policy does not allow."""
    state = PricingState(prices, page_size, authorizer)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
