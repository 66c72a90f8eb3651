"""Many machines: who tells the artist the job ended, and what ending the e-mail says.

No machine of an array knows by itself that the job ended. So each machine that ends for good
writes its end document, then its end mark (`out/ended/<index>`, contract.end_mark_body), and
only then lists the marks: the last one to end sees every machine's mark (S3 lists what was
written before, strongly consistent), and of two that end at once at least one sees both, since
each wrote its own before it listed. Whoever sees them all wins the job's mail claim (one
conditional write) and sends one notice. The ending sums up the machines: done when every frame
is marked, else capped when any stopped at its cap, else failed when any failed (the first
failed machine's error kind), else stopped.

"For good": a machine that writes an end ends its container itself, and the Batch retry strategy
(cloud/aws/batch.py) retries only a child whose host was lost ("Host EC2*"), which writes
nothing; its retry writes the end. Standard library only, Python 3.9 syntax.
"""

from __future__ import annotations

import hashlib

from .contract import END_MARK_ENDINGS, ERROR_KINDS, end_mark_body

End = tuple[str, str]  # (ending, error kind or "")


def machine_end(state: str, stop_reason: str, kind: str = "") -> End:
    """One machine's end mark from its final state (done, failed, capped, interrupted)."""
    if state == "done":
        return ("done", "")
    if state == "failed":
        return ("failed", kind if kind in ERROR_KINDS else "")
    if state == "capped" or stop_reason == "time_cap":
        return ("capped", "")
    return ("stopped", "")


def _known_bodies() -> dict[str, End]:
    """ETag (MD5 of the body) -> the end it stands for, for every end an honest machine writes."""
    ends = [(e, "") for e in END_MARK_ENDINGS] + [("failed", k) for k in ERROR_KINDS]
    return {hashlib.md5(end_mark_body(*end), usedforsecurity=False).hexdigest(): end for end in ends}


KNOWN = _known_bodies()


def read_ends(listed: dict[str, str], machines: int) -> dict[int, End]:
    """Machine index -> its end, from a listing of out/ended/ (name -> ETag). A name that is no
    machine of the job, or a body that is no end, is ignored: what machines write is untrusted."""
    ends: dict[int, End] = {}
    for name, etag in listed.items():
        if not name.isdigit() or int(name) >= machines:
            continue
        end = KNOWN.get(etag)
        if end is not None:
            ends[int(name)] = end
    return ends


def job_ending(ends: dict[int, End], machines: int, every_frame_marked: bool) -> End | None:
    """The job's ending for its e-mail, or None while a machine has not ended."""
    if every_frame_marked:
        return ("done", "")
    if any(i not in ends for i in range(machines)):
        return None
    said = [ends[i] for i in range(machines)]
    if any(ending == "capped" for ending, _ in said):
        return ("capped", "")
    failed = [kind for ending, kind in said if ending == "failed"]
    if failed:
        return ("failed", failed[0])
    return ("stopped", "")
