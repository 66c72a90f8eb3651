"""The typed events between background threads and Blender's main thread."""

from __future__ import annotations

import threading

from cloud.job.events import EventQueue, LogLines, Progress


def test_events_from_many_threads_arrive_in_per_thread_order():
    queue = EventQueue()

    def produce(job: str) -> None:
        for i in range(200):
            queue.post(Progress(job, i / 200))

    threads = [threading.Thread(target=produce, args=(f"job{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seen: dict[str, list[float]] = {}
    while not queue.empty():
        for event in queue.drain(budget_s=1.0):
            assert isinstance(event, Progress)
            seen.setdefault(event.job_id, []).append(event.fraction)
    assert seen == {f"job{n}": [i / 200 for i in range(200)] for n in range(4)}


def test_drain_respects_its_limit():
    queue = EventQueue()
    for i in range(10):
        queue.post(LogLines("j", (str(i),)))
    first = queue.drain(budget_s=1.0, limit=3)
    assert [e.lines for e in first if isinstance(e, LogLines)] == [("0",), ("1",), ("2",)]
    assert len(queue.drain(budget_s=1.0)) == 7
