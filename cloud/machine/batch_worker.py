"""One machine of many (a child of an AWS Batch array job): claim a frame, render it, hand it back.

Every child runs the same spec. Before rendering a frame it claims it with a conditional write
(a presigned PUT of `out/claims/<frame>` sent with `If-None-Match: *`): S3 lets exactly one
writer create the object and answers 412 to the others, so no frame is rendered twice except
after a loss, and a slow frame never leaves the other machines idle. A 409 (a concurrent
conditional write to the same key was in flight) applied nothing: the claim is tried again, as
AWS advises, since the other write may itself have failed and left the frame to nobody.
Children walk the job's frames in the same order (preview first when asked; the longest first
where the spec knows each frame's expected time), so that order holds across machines. Where
the current frame's end can be foreseen (hints, or frames of steady cost), a child claims its
next frame shortly before it, so Blender does not wait on the bucket between frames, yet no
frame sits claimed by a busy machine for long; otherwise it claims when Blender asks.

The claim's bytes say who wrote it (`contract.claim_body(index, attempt)`), so its ETag in a
listing of the claims names the machine and attempt holding each frame: the claim is its own
record, and nothing can be lost between claiming a frame and noting that it was claimed. A
machine marks what it uploaded under its own folder (`out/machines/<index>/marks/rendered-<f>`).
A retried child (Batch's retry after a lost host: `AWS_BATCH_JOB_ATTEMPT` > 1, same array index)
first renders what its earlier attempts claimed and never marked uploaded (lost between claim and
render, mid-frame, or between render and upload), found through those two listings, page by
page (`presign.presign_list_pages`: a presigned URL cannot ask for a next page by itself).

Its status, log and plan go to `out/machines/<index>/`; its end to `done.json` (no frame left
to claim), `error.json` or `interrupted.json` there, then its end mark `out/ended/<index>`; the
last machine to end sends the job's one e-mail (job_end.py). Whether the job is done is the
add-on's call: every frame arrived. Standard library only, Python 3.9 syntax.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import threading
import time
import urllib.error
from typing import Any
from xml.etree import ElementTree

from . import contract, job_end
from .notice import STOP_WORDS
from .supervisor import JobFailed, Supervisor, order_frames
from .transport import Poster, http_request, list_pages, with_retries

MAX_CLAIM_TRIES = 4  # tries whose answer was lost (network error, 5xx, 429)
# 409 ConditionalRequestConflict: retried this many times, after a short backoff that doubles
# from CONFLICT_BACKOFF_S up to CONFLICT_BACKOFF_MAX_S (with jitter, so two machines that
# collided do not collide again in step); at most about 11 s in all before the machine gives up.
MAX_CONFLICT_TRIES = 10
CONFLICT_BACKOFF_S = 0.05
CONFLICT_BACKOFF_MAX_S = 2.0
# A frame is claimed this long (seconds, at least) before the current one is expected to end;
# and at most for this long while nothing is known of the frames' times (before the first one).
CLAIM_LEAD_MIN_S = 0.1
CLAIM_LEAD_MAX_S = 1.0
SKIP_AFTER_REFUSED = 2  # claims lost in a row before one listing shows what others hold
CLAIM_AHEAD_SPREAD = 1.2  # without hints: frames this close in time count as predictable
LOG_CHUNKS_PER_ATTEMPT = 100_000  # attempt k's log chunks are numbered from (k - 1) x this + 1


def conflict_backoff(conflicts: int) -> float:
    """Seconds to wait after the `conflicts`-th 409: short (the other write is one request in
    flight), doubling, with jitter so machines that collided once do not collide in step."""
    ceiling = min(CONFLICT_BACKOFF_MAX_S, CONFLICT_BACKOFF_S * 2 ** (conflicts - 1))
    return ceiling * (0.5 + random.random() / 2)


class Claims:
    """Conditional writes of claim objects through the spec's presigned PUT URLs."""

    def __init__(self, urls: dict[str, str], index: int, attempt: int, say: Any) -> None:
        self.urls = urls
        self.index = index
        self.attempt = attempt
        self.say = say
        self.seconds: list[float] = []  # how long each claim request took

    def claim(self, frame: int) -> bool:
        """True when this machine now owns `frame`; False when another one got it first.

        412 says the claim exists. It is ours only if an earlier try's answer was lost (a network
        error or 5xx: that write may have landed), and then the frame is taken as ours (rendered
        twice at worst, never not at all). 409 says a concurrent conditional write was in flight
        and ours was not applied: the other write may fail too, so the claim is tried again after
        a short backoff rather than left to a machine that may never hold it."""
        url = self.urls.get(str(frame))
        if not url:
            return False
        body = contract.claim_body(self.index, self.attempt)
        headers = {"If-None-Match": "*", "Content-Type": "application/json"}
        lost = 0  # tries whose answer never came: our write may have been applied
        conflicts = 0  # tries answered 409: our write was not applied
        while True:
            started = time.monotonic()
            try:
                http_request("PUT", url, body, headers, timeout=20)
                self.seconds.append(time.monotonic() - started)
                return True
            except urllib.error.HTTPError as exc:
                self.seconds.append(time.monotonic() - started)
                if exc.code == 412:  # PreconditionFailed: the claim exists
                    if lost:
                        self.say(f"claim on frame {frame} exists after a lost answer; taking it as ours")
                    return lost > 0
                if exc.code == 409:  # ConditionalRequestConflict: nothing written, try again
                    conflicts += 1
                    if conflicts > MAX_CONFLICT_TRIES:
                        raise JobFailed(
                            "upload",
                            f"Frame {frame} could not be claimed: the bucket kept answering that "
                            "another claim on it was in flight.",
                        ) from exc
                    self.say(f"claim on frame {frame} met a concurrent claim (HTTP 409); trying again")
                    time.sleep(conflict_backoff(conflicts))
                    continue
                if exc.code < 500 and exc.code != 429:
                    raise
                self.say(f"claim on frame {frame} failed (HTTP {exc.code}); retrying")
            except (OSError, http.client.HTTPException) as exc:
                self.say(f"claim on frame {frame} failed ({exc}); retrying")
            lost += 1
            if lost >= MAX_CLAIM_TRIES:
                raise JobFailed("upload", f"Frame {frame} could not be claimed: the bucket does not answer.")
            time.sleep(min(2.0 * lost, 8.0))

    def lead(self) -> float:
        """How long before a frame's expected end to claim the next: a few claim round trips."""
        recent = self.seconds[-20:]
        typical = sorted(recent)[len(recent) // 2] if recent else CLAIM_LEAD_MIN_S
        return min(CLAIM_LEAD_MAX_S, max(CLAIM_LEAD_MIN_S, 4 * typical))


class BatchSupervisor(Supervisor):
    """The supervisor of one array child: same install, download and render; frames by claim."""

    def __init__(self, spec: dict[str, Any], work: str, index: int, attempt: int) -> None:
        super().__init__(spec, work)
        self.index = index
        self.attempt = attempt
        folder = contract.machine_folder(index)
        self.machine_poster = Poster(
            spec["upload_url"], spec["upload_fields"], spec["upload_prefix"] + folder
        )
        # Status, log and plan are this machine's own; frames and files stay job-wide (self.poster).
        self.log.poster = self.machine_poster
        # A retry's log chunks follow the lost attempt's (the add-on reads keys after the last it
        # read): numbered from 1 again they would overwrite those, and its first lines be skipped.
        self.log.seq = (attempt - 1) * LOG_CHUNKS_PER_ATTEMPT + 1
        self.status.poster = self.machine_poster
        self.status.update(machine=index, attempt=attempt, machine_count=int(spec.get("machine_count", 1)))
        self.claims = Claims(dict(spec.get("claim_urls") or {}), index, attempt, self.log.say)
        self.claimed: list[int] = []
        self.pending: list[int] = []  # claimed by a lost attempt of this machine, not uploaded
        self.hints = {int(f): float(s) for f, s in (spec.get("frame_seconds") or {}).items()}
        self.order = order_frames(spec["frames"], spec.get("frame_order", "sequential"), self.hints)
        self.cursor = 0  # frames before it are claimed (by someone): never asked again
        self.taken: set[int] = set()  # frames a listing showed claimed (by any machine)
        self.marked: set[int] = set()
        self.marking_done = threading.Event()
        self.claims_frames = True
        self.tells_end = True  # its end mark and, if last, the job's e-mail (not a still's)
        self.failed_kind = ""
        # The job's e-mail is sent by the machine that sees its end (the still's merge); the
        # cost it says counts every machine of the array for as long as this one ran.
        self.notice.machines = max(1, int(spec.get("machine_count", 1)))
        # Claiming ahead: the lock keeps one claim in flight; `ready` is the frame claimed for
        # Blender's next ask, claimed shortly before the current frame is expected to end.
        self.lock = threading.Lock()
        self.ready: int | None = None
        self.exhausted = False  # every frame in the order is claimed (by someone)
        self.frame_started: tuple[int, float] | None = None  # (frame, monotonic start)
        self.rendered_here: dict[int, float] = {}  # frame -> seconds it took here
        self.kick = threading.Event()
        self.claiming_done = threading.Event()

    @classmethod
    def from_environment(cls, spec: dict[str, Any], work: str) -> BatchSupervisor:
        """The array index and attempt as AWS Batch sets them (a plain job is index 0)."""
        index = int(os.environ.get("AWS_BATCH_JOB_ARRAY_INDEX") or 0)
        attempt = int(os.environ.get("AWS_BATCH_JOB_ATTEMPT") or 1)
        return cls(spec, work, index, attempt)

    # -- what differs from one machine

    def put_json(self, name: str, data: dict[str, Any]) -> None:
        data = {"contract": contract.CONTRACT_VERSION, "machine": self.index, **data}
        body = json.dumps(data, indent=1, sort_keys=True).encode()
        with open(os.path.join(self.work, name), "wb") as handle:
            handle.write(body)
        try:
            with_retries(f"upload of {name}", lambda: self.machine_poster.put(name, body), self.log.say)
        except (OSError, http.client.HTTPException) as exc:
            self.log.say(f"could not upload {name}: {exc}")

    def existing_frames(self) -> list[str]:
        return []  # the claims say what to render; a listing per frame would only cost time

    def frames_left(self) -> list[int]:
        return [f for f in self.claimed if f not in self.done]

    def mark(self, what: str, frame: int) -> None:
        """rendered-<f> under this machine's marks/ (what a retried attempt reads)."""
        with_retries(
            f"mark {what} {frame}",
            lambda: self.machine_poster.put(f"marks/{what}-{frame}", b""),
            self.log.say,
        )

    def lost_claims(self) -> list[int]:
        """Frames an earlier attempt of this machine claimed and never marked uploaded, in job
        order: the claims whose ETag is the MD5 of an earlier attempt's claim body."""
        claim_pages = list(self.spec.get("claim_list_urls") or [])
        mark_pages = (self.spec.get("machine_list_urls") or {}).get(str(self.index)) or []
        if not claim_pages:
            return []
        ours = {
            hashlib.md5(contract.claim_body(self.index, a), usedforsecurity=False).hexdigest()
            for a in range(1, self.attempt)
        }
        try:
            claims = list_pages(claim_pages, "listing of the claims", self.log.say)
            marks = list_pages(list(mark_pages), "listing of this machine's marks", self.log.say)
        except (OSError, http.client.HTTPException, ElementTree.ParseError) as exc:
            self.log.say(f"could not list the earlier attempt's claims ({exc})")
            return []
        mine = {i for k, etag in claims.items() if etag in ours and (i := self.claimed_item(k)) is not None}
        rendered = {int(n[9:]) for n in marks if n.startswith("rendered-") and n[9:].lstrip("-").isdigit()}
        return [f for f in self.order if f in mine and f not in rendered]

    def claimed_item(self, name: str) -> int | None:
        """The frame a claim's key names (`claims/<frame>`), or None for another claim."""
        return int(name) if name.lstrip("-").isdigit() else None

    # -- claiming, as Blender asks for each next frame

    def handle_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "frame":
            super().handle_event(event)
            with self.lock:
                self.frame_started = (int(event["frame"]), time.monotonic())
            self.status.update(soon=True)
            self.kick.set()  # the claimer plans this frame's successor
            return
        if kind == "frame_done":
            with self.lock:
                if self.frame_started is not None:
                    started, began = self.frame_started
                    self.rendered_here[started] = time.monotonic() - began
            super().handle_event(event)
            return
        if kind != "next":
            super().handle_event(event)
            return
        frame = self.take_next()
        proc = self.blender_proc
        if proc is None or proc.stdin is None:
            return
        try:
            proc.stdin.write(b"" if frame is None else f"{frame}".encode())
            proc.stdin.write(b"\n")
            proc.stdin.flush()
        except OSError as exc:  # Blender went away; its exit says why
            self.log.say(f"could not hand frame {frame} to Blender: {exc}")

    def take_next(self) -> int | None:
        """What Blender asks for next: the claim made ahead, else a new one; none once the
        machine is stopping (a claim made ahead stays in frames_left: a retry finishes it)."""
        with self.lock:
            self.frame_started = None
            claimed, self.ready = self.ready, None
            if self.stop_reason:
                return None
            return claimed if claimed is not None else self.next_claim()

    def next_claim(self) -> int | None:
        """The next frame for this machine (call with the lock held): first what a lost attempt
        claimed, then the next one in the job's order that no machine has claimed yet (a
        conditional write wins it)."""
        if self.pending:
            frame: int | None = self.pending.pop(0)
        else:
            frame = None
            refused = 0  # claims lost in a row to other machines
            while self.cursor < len(self.order):
                candidate = self.order[self.cursor]
                self.cursor += 1
                if candidate in self.claimed or candidate in self.taken:
                    continue
                if self.claims.claim(candidate):
                    frame = candidate
                    break
                refused += 1
                if refused == SKIP_AFTER_REFUSED:
                    self.learn_taken()
            else:
                self.exhausted = True
        if frame is not None:
            self.claimed.append(frame)
            self.log.say(f"claimed frame {frame}")
        return frame

    def learn_taken(self) -> None:
        """Other machines are ahead: one listing of the claims says which frames they hold, so
        the walk skips them instead of losing a conditional write on each (one request, or one a
        page, instead of one per frame)."""
        pages = list(self.spec.get("claim_list_urls") or [])
        if not pages:
            return
        try:
            listed = list_pages(pages, "listing of the claims", self.log.say)
        except (OSError, http.client.HTTPException, ElementTree.ParseError) as exc:
            self.log.say(f"could not list the claims ({exc}); claiming frame by frame")
            return
        self.taken.update(int(k) for k in listed if k.lstrip("-").isdigit())

    def expected_seconds(self, frame: int) -> float | None:
        """How long `frame` should take here, or None where that is not known well enough to
        claim ahead: the spec's hint scaled by what this machine measured; else, once two frames
        ended here within CLAIM_AHEAD_SPREAD of each other, the longest of them. Frames of
        unknown and uneven cost are claimed when Blender asks: a guess from a short frame would
        hold the next one while a long frame renders, and leave other machines idle at the end."""
        done = self.rendered_here
        if not done:
            return None
        measured = sum(done.values())
        if self.hints and all(f in self.hints for f in done) and frame in self.hints:
            hinted = sum(self.hints[f] for f in done)
            if hinted > 0:
                return self.hints[frame] * measured / hinted
        times = list(done.values())
        if len(times) < 2 or max(times) > CLAIM_AHEAD_SPREAD * min(times):
            return None
        return max(times)

    def _claim_ahead(self) -> None:
        """Claim the next frame a claim lead before the current one should end, so Blender gets
        it at once; until a frame has ended here nothing is known, and nothing is claimed ahead."""
        while not self.claiming_done.is_set():
            self.kick.wait(0.5)
            self.kick.clear()
            while not self.claiming_done.is_set():
                with self.lock:
                    current = self.frame_started
                    if current is None or self.ready is not None or self.exhausted or self.stop_reason:
                        break
                    expected = self.expected_seconds(current[0])
                if expected is None:
                    break
                wait = current[1] + expected - self.claims.lead() - time.monotonic()
                if wait > 0:
                    if self.claiming_done.wait(min(wait, 0.5)) or self.kick.is_set():
                        break
                    continue
                try:
                    with self.lock:
                        if self.frame_started == current and self.ready is None and not self.stop_reason:
                            self.ready = self.next_claim()
                except Exception as exc:
                    self.log.say(f"could not claim ahead: {exc!r}")
                break

    def mark_rendered(self) -> None:
        """rendered-<f> for every frame uploaded since the last call (what a retry skips)."""
        for frame in sorted(self.done):
            if frame not in self.marked:
                self.mark("rendered", frame)
                self.marked.add(frame)

    def _marker(self) -> None:
        while not self.marking_done.wait(0.5):
            try:
                self.mark_rendered()
            except (OSError, http.client.HTTPException) as exc:
                self.log.say(f"could not mark rendered frames yet ({exc})")

    def start_machine(self, what: str) -> None:
        """What every array child does first: the log, status and spot watcher, the uploader,
        and a line saying which machine this is and of what."""
        self.log.start()
        self.status.start()
        self.spot.start()
        threading.Thread(target=self.upload_worker, name="uploader", daemon=True).start()
        self.log.say(
            f"machine {self.index} of {self.spec.get('machine_count', 1)} (attempt {self.attempt}) "
            f"started for {what}"
        )

    def install_and_fetch(self) -> list[str]:
        """Blender and the job's inputs; on a retried attempt, what the lost one claimed first.
        Returns the command that starts Blender."""
        self.status.update(state="installing", push=True)
        command = self.get_blender()
        self.check_uploads()
        self.status.update(state="downloading", push=True)
        self.download_inputs()
        self.check_uploads()
        if self.attempt > 1:  # Batch's retry after a lost host
            self.pending = self.lost_claims()
            if self.pending:
                self.say_pending()
        return command

    def say_pending(self) -> None:
        self.log.say(f"finishing what attempt {self.attempt - 1} claimed but never uploaded: {self.pending}")

    def run(self) -> str:
        started = time.monotonic()
        self.start_machine(f"job {self.spec['job_id']}")
        try:
            command = self.install_and_fetch()
            marker = threading.Thread(target=self._marker, name="marks", daemon=True)
            marker.start()
            claimer = threading.Thread(target=self._claim_ahead, name="claim-ahead", daemon=True)
            claimer.start()
            try:
                code = self.render(command, self.order)  # Blender asks for each frame in turn
            finally:
                self.claiming_done.set()
                self.kick.set()
            claimer.join(timeout=30)
            self.wait_uploads()
            self.marking_done.set()
            marker.join(timeout=10)
            self.mark_rendered()
            # A Blender that failed before its first frame claimed nothing, so nothing is "left"
            # here; the machine still failed (it must not read as done while frames remain).
            if not self.stop_reason and (self.frames_left() or (code != 0 and not self.done)):
                kind, cause = self.failure(code)
                raise JobFailed(kind, cause)
        except JobFailed as exc:
            self.uploads.put(None)
            return self.finish_failed(exc.kind, exc.cause, None)
        except Exception as exc:  # a bug here must still end in error.json
            self.uploads.put(None)
            self.log.say(f"internal error: {exc!r}")
            return self.finish_failed("internal", f"The render machine hit an internal error: {exc}.", None)
        self.uploads.put(None)
        elapsed = round(time.monotonic() - started, 1)
        if self.stop_reason:
            if self.stop_reason == "credentials_expired":
                return self.finish_failed("credentials_expired", self.refused_cause(), None)
            state = "capped" if self.stop_reason == "time_cap" else "interrupted"
            data = {
                "reason": self.stop_reason,
                "notice": self.spot.notice,
                "frames_done": sorted(self.done),
                "frames_left": self.frames_left(),
                "seconds": elapsed,
                "frame_seconds": self.measured_seconds(),
            }
            self.put_json("interrupted.json", data)
            return self.finish(state)
        self.log.say(f"no frame left to claim: {len(self.done)} frames rendered here in {elapsed} s")
        self.put_json(
            "done.json",
            {
                "frames_done": sorted(self.done),
                "seconds": elapsed,
                "seconds_per_frame": self.status.fields.get("seconds_per_frame"),
                "device": self.status.fields.get("device"),
                "frame_seconds": self.measured_seconds(),
            },
        )
        return self.finish("done")

    def finish_failed(self, kind: str, cause: str, code: int | None) -> str:
        self.failed_kind = kind
        return super().finish_failed(kind, cause, code)

    def finish(self, state: str) -> str:
        """The end document is written: the end mark, then the job's e-mail if this machine is
        the last to end (or the one that sees every frame marked), then the final status."""
        if self.tells_end:
            self.tell_if_last(job_end.machine_end(state, self.stop_reason, self.failed_kind))
        return super().finish(state)

    def frames_marked(self) -> set[int]:
        """Every frame of the job some machine marked uploaded (one listing per machine)."""
        marked: set[int] = set()
        for pages in (self.spec.get("machine_list_urls") or {}).values():
            names = list_pages(list(pages), "listing of the machines' marks", self.log.say)
            marked |= {int(n[9:]) for n in names if n.startswith("rendered-") and n[9:].isdigit()}
        return marked & set(self.spec["frames"])

    def tell_if_last(self, end: job_end.End) -> None:
        """The job's e-mail, sent once (job_end.py): this machine's end mark first, then the
        marks of every machine and of every frame; the machine that sees every frame marked, or
        every machine ended, and wins the conditional write of `out/mail-claim` sends it."""
        url = str(self.spec.get("notice_claim_url") or "")
        pages = list(self.spec.get("ended_list_urls") or [])
        if not url or not self.notice.settings or self.poster.denied.is_set():
            return
        machines = max(1, int(self.spec.get("machine_count", 1)))
        try:
            if pages:
                body = contract.end_mark_body(*end)
                with_retries("end mark", lambda: self.poster.put(f"ended/{self.index}", body), self.log.say)
            marked = self.frames_marked()
            ends = job_end.read_ends(
                list_pages(pages, "listing of the machines' ends", self.log.say), machines
            )
            ending = job_end.job_ending(ends, machines, marked == set(self.spec["frames"]))
            if ending is None:
                self.log.say("other machines are still rendering: the last one to end sends the e-mail")
                return
            if not Claims({"0": url}, self.index, self.attempt, self.log.say).claim(0):
                return  # another machine that saw the end sends it
        except (OSError, http.client.HTTPException, ElementTree.ParseError, JobFailed) as exc:
            self.log.say(f"could not tell whether the job ended, for its e-mail ({exc})")
            return
        said = {"capped": STOP_WORDS["time_cap"][1], "stopped": "stopped_with_frames_not_rendered"}
        self.notice.send(ending[0], done=len(marked), kind=ending[1], said=said.get(ending[0], ""))
