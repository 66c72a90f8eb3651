"""A TCP relay to the emulated account, with two hooks: whether a new connection is let through,
and what happens to each chunk sent towards the account. Two links are made of it:

- `FlakyLink`: a flaky Wi-Fi a test can cut (every open connection dropped, new ones refused)
  and restore;
- `SlowLink`: a home uplink for `make screenshots`. On this computer the emulated S3 takes a
  scene in well under a second, so the panel's Uploading state is gone before a screenshot can
  be taken: bytes towards the account (request bodies: the scene's files, the machine's frames)
  pass at `bytes_per_s` in all, shared by every connection; replies come back at full speed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from urllib.parse import urlsplit

CHUNK = 16 * 1024


class Relay:
    """Listens on a free loopback port (`url`) and relays each connection to `target_url`."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self.target = (parts.hostname or "127.0.0.1", int(parts.port or 80))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._live: set[socket.socket] = set()
        self._live_lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- hooks -----------------------------------------------------------------------------
    def admit(self) -> bool:
        """Whether a new connection goes through (refused ones are closed at once)."""
        return True

    def before_upload(self, size: int) -> None:
        """Called with each chunk's size before it is sent towards the account."""

    # --- the relay ----------------------------------------------------------------------------
    def drop_connections(self) -> None:
        """Close every open connection, as a link that goes down does."""
        with self._live_lock:
            for sock in list(self._live):
                with contextlib.suppress(OSError):
                    sock.close()
            self._live.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.admit():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=30)
            except OSError:
                client.close()
                continue
            with self._live_lock:
                self._live.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, uplink: bool) -> None:
        with contextlib.suppress(OSError):  # a cut closes the sockets under us: that is the point
            while data := src.recv(CHUNK):
                if uplink:
                    self.before_upload(len(data))
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
            with self._live_lock:
                self._live.discard(sock)


class FlakyLink(Relay):
    """A link a test can cut for a while, as a flaky Wi-Fi would; `refused` counts the
    connections refused while it was cut."""

    def __init__(self, target_url: str) -> None:
        self.cut_until = 0.0
        self.refused = 0
        super().__init__(target_url)

    def cut(self, seconds: float) -> None:
        """Drop every open connection and refuse new ones for `seconds`."""
        self.cut_until = time.monotonic() + seconds
        self.drop_connections()

    def restore(self) -> None:
        """End the cut now: new connections go through again."""
        self.cut_until = 0.0

    def admit(self) -> bool:
        if time.monotonic() < self.cut_until:
            self.refused += 1
            return False
        return True


class SlowLink(Relay):
    """Uploads at `bytes_per_s` in all, shared by every connection; `sent` counts their bytes."""

    def __init__(self, target_url: str, bytes_per_s: float) -> None:
        self.rate = float(bytes_per_s)
        self.sent = 0
        self._next_free = time.monotonic()  # when the shared uplink may send its next chunk
        self._rate_lock = threading.Lock()
        super().__init__(target_url)

    def before_upload(self, size: int) -> None:
        """Reserve `size` bytes of the shared uplink and sleep until they would be through."""
        with self._rate_lock:
            start = max(self._next_free, time.monotonic())
            self._next_free = start + size / self.rate
            self.sent += size
            until = self._next_free
        delay = until - time.monotonic()
        if delay > 0:
            time.sleep(delay)
