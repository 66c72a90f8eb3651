"""The merging machine's side of a still: every part brought here as it lands, in order to be
added to the running merge while the other machines still render.

The first machine of a still to finish a part wins the merge (still_worker.py). Its own parts
are here already; the others' are listed (every POLL_RENDERING_S while it still renders parts of
its own, every POLL_S once it only merges, the first look at once) and each is downloaded in-region as soon as it is
listed, and handed to Blender between this machine's own parts (its threads add them while the
next part renders), so when the last part lands only the last few are fetched, read and added
before the merged file is written: the merge is off the critical path but for them.

A part whose machine never delivers it (its host lost and Batch's retry late or never coming)
is not waited on forever: once it is still missing TAKEOVER_FACTOR times the longest part
rendered here plus the spec's `takeover_after_s` after the gathering began, this machine renders
it itself (it is warm, with the scene loaded) and adds its own copy. Standard library only,
Python 3.9 syntax.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

# The parts listing: while this machine still renders parts of its own, a part added a little
# late costs nothing; once it only merges, the last part is added as soon as it is listed.
POLL_RENDERING_S = 2.0
POLL_S = 0.3  # a LIST costs 1/200 of a cent per 1000: an hour of this is under 0.01 USD
DOWNLOAD_THREADS = 8  # the other machines' parts, fetched in-region at once
TAKEOVER_FACTOR = 2.0  # a part missing this many part-times (plus the spec's margin) is rendered here


class Gatherer:
    """Brings every part of the still to this machine and says, one at a time, which to add to
    the merge (or render here in place of a machine that never delivered it)."""

    def __init__(
        self,
        order: list[int],
        local: set[int],
        list_parts: Callable[[], set[int]],
        fetch: Callable[[int], None],
        say: Callable[[str], None],
    ) -> None:
        self.order = list(order)
        self.list_parts = list_parts
        self.fetch = fetch
        self.say = say
        self.waiting = False  # this machine has no part left to render: it only merges now
        self.waiting_since = 0.0
        self.patience = 0.0
        self.added: set[int] = set()  # handed to Blender to add (the supervisor's thread only)
        self.taken_over: set[int] = set()  # rendered here in place of the machine that claimed it
        self.lock = threading.Lock()
        self.queued: set[int] = set()  # here and queued to be added, or to be rendered here
        # ("add" | "render", part), or what went wrong (raised by the supervisor's thread)
        self.items: queue.Queue[tuple[str, int] | BaseException] = queue.Queue()
        self.closed = threading.Event()
        self.wake = threading.Event()  # look now: closed, or this machine has just run out of parts
        for index in self.order:
            if index in local:
                self.here(index)

    def here(self, index: int) -> None:
        """Part `index` lies whole in its file on this machine: queue it to be added (once)."""
        with self.lock:
            if index in self.queued:
                return
            self.queued.add(index)
        self.items.put(("add", index))

    def rendered_here(self, index: int) -> None:
        """A part has been rendered here (one of this machine's, or one taken over): add it."""
        if index in self.taken_over:
            self.items.put(("add", index))
        else:
            self.here(index)

    def wait_from_now(self, patience: float) -> None:
        """This machine has no part left to render: from now on, a part still missing after
        `patience` seconds is rendered here (every part is claimed by then)."""
        self.waiting_since, self.patience = time.monotonic(), patience
        self.waiting = True
        self.wake.set()  # the listing may be asleep for POLL_RENDERING_S: the last parts land now

    def next_item(self, timeout: float) -> tuple[str, int] | None:
        """The next part to add or render here, or None after `timeout`; raises what went wrong."""
        try:
            item = self.items.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self.closed.set()
        self.wake.set()

    def run(self) -> None:
        """List, download what landed, take over what is overdue; until every part is queued."""
        try:
            with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
                self._gather(pool)
        except Exception as exc:  # raised by the supervisor's thread, which waits on the items
            self.items.put(exc)

    def _gather(self, pool: ThreadPoolExecutor) -> None:
        fetching: set[int] = set()  # downloads under way (each queues its part the moment it ends)

        def fetch(index: int) -> None:
            try:
                self.fetch(index)
            except Exception as exc:  # a failed download ends the merge here (after its retries)
                self.items.put(exc)
                self.close()
                return
            self.here(index)
            with self.lock:
                fetching.discard(index)

        while not self.closed.is_set():
            with self.lock:
                wanted = [i for i in self.order if i not in self.queued and i not in fetching]
                busy = bool(fetching)
            if not wanted and not busy:
                return
            if wanted:
                landed = self.list_parts()
                for index in wanted:
                    if index in landed:
                        with self.lock:
                            fetching.add(index)
                        pool.submit(fetch, index)
                self._take_over([i for i in wanted if i not in landed])
            self.wake.wait(POLL_S if self.waiting else POLL_RENDERING_S)
            self.wake.clear()

    def _take_over(self, missing: list[int]) -> None:
        """Render here what is still missing long after it should have landed."""
        waited = time.monotonic() - self.waiting_since
        if not missing or not self.waiting or waited < self.patience:
            return
        with self.lock:
            self.taken_over.update(missing)
            self.queued.update(missing)
        self.say(
            f"parts {[i + 1 for i in missing]} are still not in after {round(waited)} s: "
            "their machine is taken to be lost, and this machine renders them"
        )
        for index in missing:
            self.items.put(("render", index))


def patience(part_seconds: list[float], takeover_after_s: float) -> float:
    """How long the merge waits for a part before it renders it here: TAKEOVER_FACTOR times the
    longest part rendered here, plus the spec's margin (a Batch retry's start)."""
    return TAKEOVER_FACTOR * max(part_seconds, default=0.0) + max(0.0, takeover_after_s)
