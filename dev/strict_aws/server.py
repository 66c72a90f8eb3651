"""moto's server with a strict layer in front: every request answered as AWS would answer it.

Run it as `python -m dev.strict_aws.server -H 127.0.0.1 -p PORT` (the arguments of
`python -m moto.server`). moto's WSGI application is built exactly as `moto.server.main`
builds it and wrapped in `StrictLayer`, which buffers each request, parses it (`parse.py`),
authenticates and authorises it (`gate.py`), runs the rules of `rules.RULES`, and only then
hands it, body re-fed, to moto. `/moto-api/*` passes through untouched (a reset also clears the
decision log). Control endpoints:

- `GET /strict-api/decisions`: the authorisation decisions since the last reset (JSON list).
- `POST /strict-api/amazon-images` (JSON list of image ids): images the harness registered in
  place of Amazon's own (moto has no Deep Learning AMIs); their `ec2:Owner` is "amazon".
- `POST /strict-api/conflicts?every=N`: every N-th conditional write answers 409 (0: never).
- `POST /strict-api/authorize`: a raw request as JSON (service, method, path, query, headers,
  body base64) for the small local servers that answer some services themselves; answers
  `{"allowed": bool, "refusal": {"status", "code", "message"} | null}`.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from . import gate, resources, rules
from .errors import Answer, render
from .model import AwsRequest, Refusal
from .parse import Parsed, parse

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def read_body(environ: dict[str, Any]) -> bytes:
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH") or ""
    if environ.get("wsgi.input_terminated") or not length:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        return bytes(stream.read()) if environ.get("wsgi.input_terminated") or chunked else b""
    return bytes(stream.read(int(length)))


def request_headers(environ: dict[str, Any]) -> dict[str, str]:
    headers = {k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = str(environ[key])
    return headers


def raw_target(environ: dict[str, Any]) -> tuple[str, str]:
    """The path (still percent-encoded) and query string exactly as the client sent them."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        path, _, query = str(raw).partition("?")
        return path, query
    path = quote(environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace"), safe="/~")
    return path, str(environ.get("QUERY_STRING", ""))


def _send(start_response: Callable[..., Any], answer: Answer) -> list[bytes]:
    status, headers, body = answer
    from http import HTTPStatus

    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
    if not any(k.lower() == "content-length" for k, _ in headers):
        headers = [*headers, ("Content-Length", str(len(body)))]
    start_response(f"{status} {phrase}", headers)
    return [body]


def _json(start_response: Callable[..., Any], status: int, payload: Any) -> list[bytes]:
    body = json.dumps(payload).encode()
    return _send(start_response, (status, [("Content-Type", "application/json")], body))


class StrictLayer:
    """WSGI middleware in front of moto (see the module docstring)."""

    def __init__(self, moto_app: WsgiApp) -> None:
        self.moto = moto_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        method = str(environ.get("REQUEST_METHOD", "GET"))
        if path.startswith("/moto-api/"):
            if path.rstrip("/") == "/moto-api/reset" and method == "POST":
                gate.clear()
                rules.reset()  # remembered ClientTokens and the conflict switch go with the account
                resources.AMAZON_IMAGES.clear()
            return self.moto(environ, start_response)
        if path.startswith("/strict-api/"):
            return self.control(path, method, environ, start_response)
        body = read_body(environ)
        if len(body) < int(environ.get("CONTENT_LENGTH") or 0):
            # The body stopped short (a connection cut mid-request): AWS keeps nothing of it, and
            # a client still listening hears what S3 says of a body that never arrives in full,
            # which botocore retries as transient.
            message = (
                "Your socket connection to the server was not read from or written to within the "
                "timeout period. Idle connections will be closed."
            )
            incomplete = Refusal(400, "RequestTimeout", message)
            return _send(start_response, render(incomplete, "rest-xml", "s3", method))
        raw_path, raw_query = raw_target(environ)
        try:
            parsed = parse(method, raw_path, raw_query, request_headers(environ), body)
            refusal = gate.check(parsed) or self.rule_refusal(parsed.request)
        except Exception:
            text = traceback.format_exc()
            return _send(start_response, (500, [("Content-Type", "text/plain")], text.encode()))
        if refusal is not None:
            return _send(start_response, render(refusal, parsed.protocol, parsed.request.service, method))
        responders = [r for r in rules.RULES if hasattr(r, "respond")]
        for rule in responders:
            answer = rule.respond(parsed.request)
            if answer is not None:
                return _send(start_response, answer)
        before = {name: list(values) for name, values in parsed.request.query.items()}
        rules.adjust(parsed.request)  # what AWS does with a request moto would take otherwise
        if parsed.request.query != before:
            environ = _with_query(environ, parsed.request.query)
        answer = self.call_moto(environ, body)
        for rule in rules.RULES:
            if hasattr(rule, "record"):
                rule.record(parsed.request, *answer)
        return _send(start_response, answer)

    @staticmethod
    def rule_refusal(request: AwsRequest) -> Refusal | None:
        for rule in rules.RULES:
            refusal = rule.check(request)
            if refusal is not None:
                return refusal
        return None

    def call_moto(self, environ: dict[str, Any], body: bytes) -> Answer:
        """moto's answer to the request, its body re-fed from the buffer."""
        fed = dict(environ)
        fed["wsgi.input"] = io.BytesIO(body)
        fed["CONTENT_LENGTH"] = str(len(body))
        fed.pop("HTTP_TRANSFER_ENCODING", None)
        fed["wsgi.input_terminated"] = False
        captured: dict[str, Any] = {}

        def start(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        result = self.moto(fed, start)
        try:
            content = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        keep_length = environ.get("REQUEST_METHOD") == "HEAD"  # HEAD: the object's length, no body
        headers = [(k, v) for k, v in captured["headers"] if keep_length or k.lower() != "content-length"]
        return int(captured["status"].split(" ", 1)[0]), headers, content

    def control(
        self, path: str, method: str, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> list[bytes]:
        if path == "/strict-api/decisions" and method == "GET":
            return _json(start_response, 200, gate.decisions())
        if path == "/strict-api/amazon-images" and method == "POST":
            images = [str(i) for i in json.loads(read_body(environ) or b"[]")]
            resources.AMAZON_IMAGES.update(images)
            return _json(start_response, 200, sorted(resources.AMAZON_IMAGES))
        if path == "/strict-api/conflicts" and method == "POST":
            every = int(parse_qs(str(environ.get("QUERY_STRING", ""))).get("every", ["0"])[0])
            rules.conflicts().set_conflicts(every)
            return _json(start_response, 200, {"every": every})
        if path == "/strict-api/conflicts" and method == "GET":
            rule = rules.conflicts()
            return _json(start_response, 200, {"every": rule.conflict_every_n, "seen": rule.seen()})
        if path == "/strict-api/authorize" and method == "POST":
            return _json(start_response, 200, authorize_raw(json.loads(read_body(environ) or b"{}")))
        if path.rstrip("/") == "/strict-api" or path == "/strict-api/":
            return _json(start_response, 200, {"strict": True})
        return _json(start_response, 404, {"error": f"no such control endpoint: {method} {path}"})


def _with_query(environ: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
    """The request with its query string rebuilt (a rule capped a value), for moto."""
    changed = dict(environ)
    text = urlencode(query, doseq=True)
    changed["QUERY_STRING"] = text
    for name in ("RAW_URI", "REQUEST_URI"):
        if name in changed:
            changed[name] = str(changed[name]).split("?", 1)[0] + (f"?{text}" if text else "")
    return changed


def authorize_raw(raw: dict[str, Any]) -> dict[str, Any]:
    """The gate's answer for a request another server received (see the module docstring)."""
    headers = {str(k).lower(): str(v) for k, v in (raw.get("headers") or {}).items()}
    body = base64.b64decode(raw.get("body") or "")
    path, _, inline_query = str(raw.get("path") or "/").partition("?")
    parsed: Parsed = parse(
        str(raw.get("method") or "POST"),
        path,
        str(raw.get("query") or inline_query),
        headers,
        body,
        service_hint=raw.get("service") or None,
    )
    refusal = gate.check(parsed)
    if refusal is None:
        return {"allowed": True, "refusal": None, "protocol": parsed.protocol}
    return {
        "allowed": False,
        "refusal": {"status": refusal.status, "code": refusal.code, "message": refusal.message},
        "protocol": parsed.protocol,
    }


def build_app() -> StrictLayer:
    """moto's application as `moto.server.main` builds it, behind the strict layer."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    moto_app = DomainDispatcherApplication(create_backend_app)
    moto_app.debug = True  # type: ignore[attr-defined]
    return StrictLayer(moto_app)


def main(argv: list[str] | None = None) -> None:
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=int(os.environ.get("MOTO_PORT", 5000)))
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(args.host, args.port, build_app(), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
