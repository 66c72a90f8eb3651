"""The queue between background threads and Blender's main thread."""

from __future__ import annotations

import threading

from cloud.job.events import EventQueue


def test_events_from_many_threads_arrive_in_per_thread_order():
    queue = EventQueue()

    def produce(job: str) -> None:
        for i in range(200):
            queue.post(job, "progress", value=i)

    threads = [threading.Thread(target=produce, args=(f"job{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seen: dict[str, list[int]] = {}
    while not queue.empty():
        for event in queue.drain(budget_s=1.0):
            seen.setdefault(event.job_id, []).append(event.data["value"])
    assert {job: values for job, values in seen.items()} == {f"job{n}": list(range(200)) for n in range(4)}


def test_drain_respects_its_limit():
    queue = EventQueue()
    for i in range(10):
        queue.post("j", "log", line=str(i))
    first = queue.drain(budget_s=1.0, limit=3)
    assert [e.data["line"] for e in first] == ["0", "1", "2"]
    assert len(queue.drain(budget_s=1.0)) == 7
