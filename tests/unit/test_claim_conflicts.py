"""A frame claim answered 409 ConditionalRequestConflict is tried again, against a real HTTP server.

S3 answers a conditional write 412 when the object exists and 409 when a concurrent conditional
write to the same key was in flight; AWS's advice for 409 is to retry (S3 User Guide, "Add
preconditions to S3 operations with conditional requests"). moto never answers 409, so a local
server plays S3 here, answering each PUT with the next status of a script."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cloud.machine import batch_worker
from cloud.machine.batch_worker import Claims
from cloud.machine.supervisor import JobFailed

S3_CODES = {
    409: "ConditionalRequestConflict",
    412: "PreconditionFailed",
    500: "InternalError",
}


class ScriptedBucket:
    """Answers each PUT with the next status in `script` (S3's error body for an error) and
    records the If-None-Match header of each."""

    def __init__(self) -> None:
        self.script: list[int] = []
        self.seen: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.seen.append(self.headers.get("If-None-Match"))
                status = outer.script.pop(0) if outer.script else 500
                body = b""
                if status >= 300:
                    code = S3_CODES.get(status, "Error")
                    body = f"<Error><Code>{code}</Code><Message>scripted</Message></Error>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the test reads the answers, not the server's request log."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/bucket/jobs/j1/out/claims/5"


@pytest.fixture
def bucket() -> Iterator[ScriptedBucket]:
    served = ScriptedBucket()
    served.thread.start()
    try:
        yield served
    finally:
        served.server.shutdown()
        served.server.server_close()
        served.thread.join(10)


def claims(bucket: ScriptedBucket, said: list[str]) -> Claims:
    return Claims({"5": bucket.url}, index=1, attempt=1, say=said.append)


def test_a_claim_answered_409_is_tried_again_and_won(bucket):
    """The other writer's request failed: our retry creates the claim, and the frame is ours."""
    bucket.script = [409, 200]
    said: list[str] = []
    assert claims(bucket, said).claim(5) is True
    assert bucket.seen == ["*", "*"]  # conditional both times
    assert any("409" in line for line in said)


def test_a_claim_answered_409_then_412_belongs_to_another_machine(bucket):
    """A 409 applied nothing of ours, so the 412 that follows is the other machine's claim."""
    bucket.script = [409, 409, 412]
    said: list[str] = []
    assert claims(bucket, said).claim(5) is False
    assert len(bucket.seen) == 3
    assert not any("taking it as ours" in line for line in said)


def test_a_412_after_a_lost_answer_is_still_taken_as_ours(bucket):
    """A 5xx may have hidden our own write: a later 412, even after a 409, may be ours."""
    bucket.script = [500, 409, 412]
    said: list[str] = []
    assert claims(bucket, said).claim(5) is True
    assert any("taking it as ours" in line for line in said)


def test_a_claim_that_keeps_meeting_409_fails_the_machine_in_words(bucket, monkeypatch):
    """Never "someone else has it" on 409s alone: the frame could then be rendered by nobody."""
    monkeypatch.setattr(batch_worker, "MAX_CONFLICT_TRIES", 2)
    bucket.script = [409, 409, 409, 200]
    with pytest.raises(JobFailed) as failed:
        claims(bucket, []).claim(5)
    assert "another claim on it was in flight" in failed.value.cause
    assert len(bucket.seen) == 3


def test_the_backoff_after_409_is_short_and_grows():
    waits = [batch_worker.conflict_backoff(n) for n in range(1, 12)]
    assert 0 < waits[0] <= batch_worker.CONFLICT_BACKOFF_S
    assert max(waits) <= batch_worker.CONFLICT_BACKOFF_MAX_S
    assert sum(batch_worker.CONFLICT_BACKOFF_MAX_S for _ in waits) < 30
