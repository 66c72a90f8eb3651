"""A TCP link to the emulated account that sends uploads at a home uplink's pace.

On this computer the emulated S3 takes a scene in well under a second, so the panel's
Uploading state is gone before a screenshot can be taken. `make screenshots` puts this link
between the GUI Blender and the emulator: bytes towards the emulator (request bodies: the
scene's files, the machine's frames) pass at `bytes_per_s` in all, shared by every connection;
replies come back at full speed. The README's screenshot captions say so.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from urllib.parse import urlsplit

CHUNK = 16 * 1024


class SlowLink:
    def __init__(self, target_url: str, bytes_per_s: float) -> None:
        parts = urlsplit(target_url)
        self.target = (parts.hostname or "127.0.0.1", int(parts.port or 80))
        self.rate = float(bytes_per_s)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sent = 0
        self._next_free = time.monotonic()  # when the shared uplink may send its next chunk
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def __enter__(self) -> SlowLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=30)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _wait_for_uplink(self, size: int) -> None:
        """Reserve `size` bytes of the shared uplink and sleep until they would be through."""
        with self._lock:
            start = max(self._next_free, time.monotonic())
            self._next_free = start + size / self.rate
            self.sent += size
            until = self._next_free
        delay = until - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def _pump(self, src: socket.socket, dst: socket.socket, uplink: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(CHUNK):
                if uplink:
                    self._wait_for_uplink(len(data))
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
