"""A local stand-in for a region's https://dynamodb.<region>.amazonaws.com/ping, with a delay."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def ping_server(delay_s: float) -> ThreadingHTTPServer:
    """A regional /ping endpoint on 127.0.0.1 that answers after `delay_s` seconds."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            time.sleep(delay_s)
            body = b"healthy: dynamodb"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
