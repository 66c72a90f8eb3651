"""Local stand-ins for the network: an HTTP server that answers like AWS, and a TCP proxy.

`AwsReplyServer` returns whatever AWS-shaped reply a test sets (errors moto cannot produce:
throttling, clock skew, expired tokens, capacity, a root caller identity). `CountingProxy`
forwards TCP to a real server, counts the bytes sent through it, and can cut every
connection mid-transfer, as a dropped network would.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "text/xml"
    headers: tuple[tuple[str, str], ...] = ()


def query_error(code: str, message: str, status: int = 400) -> Reply:
    """An error as the query protocol (STS, IAM) returns it."""
    body = (
        f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>req-1</RequestId></ErrorResponse>"
    )
    return Reply(status, body.encode())


def ec2_error(code: str, message: str, status: int = 400) -> Reply:
    """An error as EC2 returns it (its own XML shape)."""
    body = (
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        "<RequestID>req-1</RequestID></Response>"
    )
    return Reply(status, body.encode())


def s3_error(code: str, message: str, status: int = 400) -> Reply:
    body = f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>req-1</RequestId></Error>"
    return Reply(status, body.encode(), "application/xml")


def json_error(code: str, message: str, status: int = 400) -> Reply:
    """An error as JSON protocol services (Service Quotas, Pricing) return it."""
    body = f'{{"__type": "{code}", "message": "{message}"}}'
    return Reply(status, body.encode(), "application/x-amz-json-1.1", (("x-amzn-ErrorType", code),))


def caller_identity(arn: str, account: str = "123456789012") -> Reply:
    body = (
        '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>'
        f"<Arn>{arn}</Arn><UserId>{account}</UserId><Account>{account}</Account></GetCallerIdentityResult>"
        "<ResponseMetadata><RequestId>req-1</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
    )
    return Reply(200, body.encode())


class AwsReplyServer:
    """Answers every request with `reply`; counts requests so tests can see botocore's retries."""

    def __init__(self) -> None:
        self.reply = Reply(500, b"")
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.requests.append(f"{self.command} {self.path}")
                reply = outer.reply
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                self.send_header("x-amzn-RequestId", "req-1")
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer

            def log_message(self, format: str, *args: object) -> None:  # quiet
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> AwsReplyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class SilentServer:
    """Accepts connections and never answers: a read timeout."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.conns.append(conn)

    def __enter__(self) -> SilentServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


class CountingProxy:
    """A TCP forwarder that counts client-to-server bytes and can cut all connections."""

    def __init__(
        self, target_host: str, target_port: int, cut_after: int | None = None, rate: float | None = None
    ) -> None:
        self.target = (target_host, target_port)
        self.cut_after = cut_after
        self.rate = rate  # bytes per second upstream, to make a slow link
        self.sent = 0
        self.lock = threading.Lock()
        self.cut = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @classmethod
    def to_url(cls, url: str, cut_after: int | None = None, rate: float | None = None) -> CountingProxy:
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        return cls(host, int(port.rstrip("/")), cut_after, rate)

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while not self.cut.is_set():
                conn, _ = self.listener.accept()
                if self.cut.is_set():
                    conn.close()
                    break
                upstream = socket.create_connection(self.target)
                with self.lock:
                    self.sockets += [conn, upstream]
                threading.Thread(target=self._pump, args=(conn, upstream, True), daemon=True).start()
                threading.Thread(target=self._pump, args=(upstream, conn, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, counting: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(16384 if self.rate else 65536):
                if counting and self.rate:
                    time.sleep(len(data) / self.rate)
                if counting:
                    with self.lock:
                        self.sent += len(data)
                        over = self.cut_after is not None and self.sent >= self.cut_after
                    if over:
                        self.close()
                        return
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Cut the line: every open connection drops and new ones are refused."""
        self.cut.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        with self.lock:
            sockets, self.sockets = self.sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def __enter__(self) -> CountingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def closed_port_url() -> Iterator[str]:
    """A loopback URL where nothing listens: connection refused, as with no network."""
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    yield f"http://127.0.0.1:{port}"
