"""One machine of a still over many (engine "still", an AWS Batch array child).

The frame's samples are cut into parts (`contract.StillSpec`). Each machine claims parts as a
Batch child claims frames (a conditional write of `out/claims/part-<k>`: exactly one machine
wins each). One Blender per machine renders them all with `still_parts.py` (its "parts" step asks
for each next part, as render_frames.py asks for frames, so the scene loads and the kernels
compile once): the same seed, each part's own sample range, denoising and compositing off, every
pass in a 32-bit multilayer EXR. A part is uploaded to `out/parts/part-<k>.exr` by a thread of
its own while the next renders.

After its first part, a machine tries the conditional write of `out/claims/merge` once: the
first machine to finish a part wins it. That machine gathers the parts rendered elsewhere as each
lands (downloaded in-region: the artist's uplink never carries them, still_gather.py), and its
Blender adds each to a running merge, weighted by each part's samples, on threads of its own
while it renders its own parts (still_parts.BackgroundMerge), so it renders and claims as the
others do. With no part left to claim, it waits for its own uploads, opens the scene again as saved and
adds the rest as they land: once the last part lands only the last few are fetched and added.
A part whose machine never delivers it is rendered here after a while. A merging machine that
is lost is retried by Batch, and its retry merges (its lost attempt holds the claim). The others
leave once their parts are uploaded. The merger then denoises and composites once with the scene's own
settings and nodes; the final image is uploaded as the
job's frame (its name said in plan.json before the merge, so the add-on watches for it) and the
merged Combined pass as `files/still/merged.exr`. The add-on calls the job done when that frame
has arrived. Standard library only, Python 3.9 syntax.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from xml.etree import ElementTree

from . import blender_logs, contract
from .batch_worker import BatchSupervisor, Claims
from .still_gather import Gatherer, patience
from .supervisor import HERE, JobFailed, safe_join
from .transport import http_request, list_pages, with_retries

MERGE_CLAIM = 0  # the key of the merge's one claim link in its own Claims
MERGE_CLAIM_NAME = "merge"  # its object's name under claims/ (contract.merge_claim_key)
# A RAM-backed folder for the merged passes (tmpfs on every Linux; a container's is 64 MB unless
# its job definition says more, and then the disk is used), and what is left free there.
MEMORY_FOLDER = "/dev/shm"
MEMORY_FOLDER_SPARE = 256 * 1024 * 1024


class Stopped(Exception):
    """Blender was stopped on purpose (spot notice, time cap): `stop_reason` says which."""


class StillSupervisor(BatchSupervisor):
    """The supervisor of one array child of a still: parts by claim, the merge by the last."""

    def __init__(self, spec: dict[str, Any], work: str, index: int, attempt: int) -> None:
        super().__init__(spec, work, index, attempt)
        self.still = contract.parse_still(spec.get("still"))
        self.parts = {p.index: p for p in self.still.parts}
        self.claims = Claims(self.still.claim_urls, index, attempt, self.log.say)
        self.order = [p.index for p in self.still.parts]
        self.parts_dir = os.path.join(work, "parts")
        os.makedirs(self.parts_dir, exist_ok=True)
        self.part_seconds: dict[int, float] = {}  # part -> seconds it took here, once uploaded
        self.environment_said = False  # add-ons and differences: said once per machine
        self.merged = False
        self.tells_end = False  # the merger's e-mail says the still is done (no end marks yet)
        self.hints = {}  # the spec's frame times name the frame, not parts (of equal length)
        self.part_uploads: queue.Queue[tuple[int, float] | None] = queue.Queue()
        self.part_upload_error: Exception | None = None
        self.fetcher = ThreadPoolExecutor(1)  # the gatherer: the other machines' parts, as they land
        self.gather: Gatherer | None = None  # on the machine that merges
        self.merge_tried = False  # the merge's claim is tried once a machine
        self.merge_trier = ThreadPoolExecutor(1)  # ...after its first part, beside its second
        self.merge_try: Future[None] | None = None
        self.reopen_needed = False  # a part rendered after the scene was opened again for the finish
        self.merge_started = 0.0
        self.memory_folder = ""  # the merged passes' folder in memory, removed when the machine ends

    def claimed_item(self, name: str) -> int | None:
        """The part a claim's key names (`claims/part-<k>`), or None (a frame's, the merge's)."""
        number = name[len("part-") :]
        return int(number) if name.startswith("part-") and number.isdigit() else None

    def expected_seconds(self, frame: int) -> float | None:
        """How long part `frame` should take here: parts differ only in their sample counts (the
        same scene, pixels and settings), so after one part here the next is its samples at the
        slowest rate a part here has shown, and the next part is claimed ahead from the second
        on (frames need two alike first); before that, only where parts are plenty (below).
        The machine that merges claims ahead as well: its adds run beside its renders, not
        between them (still_parts.BackgroundMerge)."""
        if frame not in self.parts:
            return None
        done = {p: s for p, s in self.rendered_here.items() if p in self.parts and s > 0}
        if not done:
            # Nothing measured yet: where the still has two parts a machine or more (spot), the
            # second is claimed as the first starts. It holds no part another machine lacks
            # (the first parts go round and more are left), and Blender does not wait on the
            # claim's round trip after its first part (0.3-0.8 s with 8 machines on the emulator).
            machines = int(self.spec.get("machine_count") or 1)
            return 0.0 if len(self.parts) >= 2 * machines else None
        per_sample = max(seconds / self.parts[p].length for p, seconds in done.items())
        return per_sample * self.parts[frame].length

    def say_pending(self) -> None:
        self.log.say(f"rendering again what attempt {self.attempt - 1} claimed: parts {self.pending}")

    def frames_left(self) -> list[int]:
        """The parts this machine claimed and has not uploaded (a retry renders them)."""
        return [p for p in self.claimed if p not in self.part_seconds]

    @classmethod
    def from_environment(cls, spec: dict[str, Any], work: str) -> StillSupervisor:
        index = int(os.environ.get("AWS_BATCH_JOB_ARRAY_INDEX") or 0)
        attempt = int(os.environ.get("AWS_BATCH_JOB_ATTEMPT") or 1)
        return cls(spec, work, index, attempt)

    # -- one Blender for the machine's parts and, on the last machine, the merge

    def run_blender(self, command: list[str]) -> None:
        """Blender on the job's scene running still_parts.py's "parts" step: it asks for each
        part (handle_event answers), so the scene loads once; first the add-ons that travelled
        and the environment check (prepare_blender.py), as for frames. JobFailed with the cause
        Blender gave (or what its exit says); Stopped when it was stopped on purpose."""
        blend = safe_join(self.job_dir, self.spec["blend_path"])
        config = os.path.join(self.work, "prepare-config.json")
        with open(config, "w") as handle:
            json.dump(
                {
                    "addons": self.spec.get("addons") or [],
                    "auto_run": bool(self.spec.get("auto_run")),
                    "fingerprint": self.spec.get("fingerprint") or {},
                    "accept_differences": bool(self.spec.get("accept_differences")),
                },
                handle,
            )
        args = {
            "step": "parts",
            "frame": self.still.frame,
            "total": self.still.total_samples,
            "auto_run": bool(self.spec.get("auto_run")),
            "parts": {
                str(p.index): {"offset": p.offset, "length": p.length, "output": self.part_path(p.index)}
                for p in self.still.parts
            },
        }
        scripts = [os.path.join(HERE, "prepare_blender.py"), os.path.join(HERE, "still_parts.py")]
        argv = [*command, "-b", blend, "--python-exit-code", "3"]
        argv += [a for script in scripts for a in ("--python", script)]
        argv += ["--", config, json.dumps(args)]  # prepare_blender.py reads the first, still_parts the last
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.update(self.kernels.prepare())
        self.status.update(gpu_driver=self.kernels.driver)
        user = os.path.join(self.job_dir, contract.ADDONS_DIR)
        if os.path.isdir(user):
            env["BLENDER_USER_RESOURCES"] = user
        self.status.update(state="rendering", frame=self.still.frame, push=True)
        proc = subprocess.Popen(
            argv,
            cwd=self.job_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        self.blender_proc = proc
        try:
            code = self.follow_blender(proc, self.take_line)
        except BaseException:
            self.stop(proc)  # an answer could not be given: Blender would wait on it forever
            raise
        if self.stop_reason:
            raise Stopped(self.stop_reason)
        if code != 0:
            kind, cause = self.failure(code)
            raise JobFailed(kind, cause)

    def take_line(self, line: str) -> None:
        try:
            event = blender_logs.read_event(line.strip())
        except ValueError:
            self.log.say("unreadable worker event line")
            return
        if event is None:
            self.log.write(line.rstrip("\n"))
        else:
            self.handle_event(event)

    def handle_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "next":
            self.answer(self.next_answer())
        elif kind == "part":
            self.part_started(int(event["index"]))
        elif kind == "part_done":
            self.part_rendered(int(event["index"]), event)
        elif kind == "output":
            self.plan_final(str(event.get("path") or ""))
        elif kind == "merged":
            longest = event.get("taken_from_longest") or []
            add_seconds = event.get("add_seconds")
            spent = round(float(add_seconds), 1) if isinstance(add_seconds, (int, float)) else "?"
            self.log.say(
                f"merged {len(self.order)} parts ({self.still.total_samples} samples), each added as it "
                f"landed ({spent} s in all, beside the renders), written in {event.get('seconds', '?')} s"
                + (
                    f"; not averaged, taken from the longest part: {', '.join(map(str, longest))}"
                    if longest
                    else ""
                )
            )
        elif kind == "finished":
            self.upload_final(event)
        elif kind == "environment":
            if not self.environment_said:  # said once per machine
                self.environment_said = True
                self.report_environment(event)
        else:
            super().handle_event(event)

    def answer(self, line: str) -> None:
        proc = self.blender_proc
        if proc is None or proc.stdin is None:
            return
        try:
            proc.stdin.write(line.encode() + b"\n")
            proc.stdin.flush()
        except OSError as exc:  # Blender went away; its exit says why
            self.log.say(f"could not answer Blender: {exc}")

    def next_answer(self) -> str:
        """What Blender's "next" gets: on the machine that merges, first any part here to add to
        the merge; then the next part this machine claimed (claimed ahead, or now); with none
        left, on the machine that merges, the scene opened again and the rest of the merge; else
        nothing, and Blender exits. The merge is claimed by the first machine to finish a part
        (tried once a machine, after its first part), so it adds the parts as they land between
        its own, and the dynamic claims give it fewer parts for the time it spends adding."""
        gather = self.gather
        if gather is not None and gather.waiting:  # the scene is open again: the rest of the merge
            return self.gather_answer()
        if gather is not None:
            landed = self.landed_parts(gather)  # only parts to add, while parts are left to claim
            if landed:
                return self.add_answer(landed)
        if self.rendered_here and not self.merge_tried and not self.stop_reason:
            # A conditional write and a listing: tried beside the next part, not before it.
            self.merge_tried = True
            self.merge_try = self.merge_trier.submit(self.try_merge)
        index = self.take_next()  # parts are claimed as frames are
        if index is not None:
            return str(index)
        if self.stop_reason:
            return ""
        self.claiming_done.set()
        self.kick.set()
        self.wait_part_uploads()  # this machine's own parts land before it merges or leaves
        if self.merge_try is not None:
            self.merge_try.result()  # raises what went wrong with it
        if not self.merge_tried:
            self.try_merge()
        if self.gather is None:
            return ""  # another machine merges, adding this one's parts as they land
        self.status.update(state="merging", part=None, push=True)
        self.gather.wait_from_now(patience(list(self.part_seconds.values()), self.still.takeover_after_s))
        return self.reopen_answer()

    def try_merge(self) -> None:
        """Claim the merge (once a machine); where this machine wins it, or its lost attempt
        held it, start gathering the parts here as they land."""
        self.merge_tried = True
        merge = Claims({str(MERGE_CLAIM): self.still.merge_claim_url}, self.index, self.attempt, self.log.say)
        if not merge.claim(MERGE_CLAIM) and not self.merge_claimed_before():
            return
        listed = self.list_parts()
        self.log.say(f"merging here: {len(listed)} of {len(self.order)} parts in, each added as it lands")
        self.merge_started = time.monotonic()
        self.gather = Gatherer(
            self.order,
            set(self.rendered_here) | set(self.part_seconds),
            self.list_parts,
            self.fetch_part,
            self.log.say,
        )
        self.fetcher.submit(self.gather.run)

    @staticmethod
    def landed_parts(gather: Gatherer) -> list[int]:
        """Every part to add that is here now (one answer hands them all to Blender)."""
        landed = []
        while (item := gather.next_item(timeout=0)) is not None:
            landed.append(item[1])
        return landed

    def add_answer(self, indices: list[int]) -> str:
        assert self.gather is not None
        self.gather.added.update(indices)
        parts = [{"index": i, "path": self.part_path(i), "samples": self.parts[i].length} for i in indices]
        return json.dumps({"add": parts})

    def reopen_answer(self) -> str:
        self.reopen_needed = False
        return json.dumps({"reopen": True, "output": os.path.join(self.frames_dir, "still")})

    def gather_answer(self) -> str:
        """The next part to add to the merge once it is here (or one to render here in place of
        a machine that never delivered it), then the merge's end and the finish."""
        gather = self.gather
        assert gather is not None
        while True:
            if self.stop_reason:
                return ""
            if gather.added == set(self.order):
                if self.reopen_needed:  # a part rendered here after the reopen changed the scene
                    return self.reopen_answer()
                return json.dumps({"steps": self.merge_steps()})
            item = gather.next_item(timeout=0.5)
            if item is None:
                continue
            what, index = item
            if what == "render":
                self.reopen_needed = True
                return str(index)
            return self.add_answer([index])

    # -- parts

    def part_path(self, index: int) -> str:
        return os.path.join(self.parts_dir, contract.part_name(index))

    def part_started(self, index: int) -> None:
        part = self.parts[index]
        with self.lock:
            self.frame_started = (index, time.monotonic())
        self.kick.set()  # the claimer plans this part's successor
        self.status.update(state="rendering", frame=self.still.frame, part=index, push=True)
        self.log.say(
            f"rendering part {index + 1} of {len(self.parts)}: samples {part.offset + 1}-{part.offset + part.length} "
            f"of {self.still.total_samples}"
        )

    def part_rendered(self, index: int, event: dict[str, Any]) -> None:
        with self.lock:
            if self.frame_started is not None:
                self.rendered_here[index] = time.monotonic() - self.frame_started[1]
        seconds = round(float(event.get("seconds") or 0), 2)
        self.log.say(f"part {index + 1} rendered in {seconds} s ({event.get('method', 'subset')} sampling)")
        self.part_uploads.put((index, seconds))  # uploaded while the next part renders
        if self.gather is not None:  # this machine merges: its own part (or one taken over) to add
            self.gather.rendered_here(index)

    def upload_parts(self) -> None:
        """The part uploader's loop; a failure is kept for wait_part_uploads to raise."""
        while True:
            item = self.part_uploads.get()
            try:
                if item is None:
                    return
                self.upload_part(*item)
            except Exception as exc:  # kept, raised by the thread that waits on the uploads
                self.part_upload_error = self.part_upload_error or exc
                self.log.say(f"could not upload part {item[0] if item else '?'}: {exc}")
            finally:
                self.part_uploads.task_done()

    def upload_part(self, index: int, seconds: float) -> None:
        """One rendered part to `parts/`, then marked rendered (what a retry skips)."""
        name = contract.part_name(index)
        with open(self.part_path(index), "rb") as handle:
            body = handle.read()
        with_retries(
            f"upload of part {index}",
            lambda: self.poster.put(f"parts/{name}", body, timeout=600),
            self.log.say,
        )
        self.part_seconds[index] = seconds
        self.mark("rendered", index)

    def wait_part_uploads(self) -> None:
        self.part_uploads.join()
        if self.part_upload_error is not None:
            raise self.part_upload_error

    # -- the merge, by the machine that finds every part in

    def list_parts(self) -> set[int]:
        """The parts whose EXR is in the bucket."""
        listed = list_pages([self.still.parts_list_url], "listing of the parts", self.log.say)
        return {i for i in self.order if contract.part_name(i) in listed}

    def merge_claimed_before(self) -> bool:
        """Whether an earlier attempt of this machine holds the merge's claim: it was lost while
        merging (after every part was in), and Batch's retry of it merges in its place. Without
        this the claim stayed with the lost attempt, nobody merged, and the still never came."""
        if self.attempt <= 1:
            return False
        ours = {
            hashlib.md5(contract.claim_body(self.index, a), usedforsecurity=False).hexdigest()
            for a in range(1, self.attempt)
        }
        try:
            claims = list_pages(
                list(self.spec.get("claim_list_urls") or []), "listing of the claims", self.log.say
            )
        except (OSError, http.client.HTTPException, ElementTree.ParseError) as exc:
            self.log.say(f"could not list the claims ({exc})")
            return False
        if claims.get(MERGE_CLAIM_NAME) not in ours:
            return False
        self.log.say(f"attempt {self.attempt - 1} claimed the merge and was lost: merging in its place")
        return True

    def fetch_part(self, index: int) -> None:
        """A part rendered elsewhere, fetched in-region (whole, then renamed: never read half)."""
        url = self.still.part_urls[str(index)]
        body = with_retries(
            f"download of part {index}", lambda: http_request("GET", url, timeout=600), self.log.say
        )
        path = self.part_path(index)
        with open(path + ".part", "wb") as out:
            out.write(body)
        os.replace(path + ".part", path)

    def merge_steps(self) -> list[dict[str, Any]]:
        """still_parts.py's merge (of the parts added as they landed) and finish, run in the
        Blender that rendered this machine's parts."""
        layers = os.path.join(self.layers_folder(), "merged_layers.exr")
        combined = os.path.join(self.files_dir, "still", "merged.exr")
        os.makedirs(os.path.dirname(combined), exist_ok=True)
        return [
            {"step": "merge", "gathered": True, "output": layers, "combined": combined},
            {
                "step": "finish",
                "merged": layers,
                "frame": self.still.frame,
                "output": os.path.join(self.frames_dir, "still"),
            },
        ]

    def layers_folder(self) -> str:
        """Where the merged passes are written for the finish to read back: in memory
        (MEMORY_FOLDER) when it has room for them, else this machine's work folder. The write
        is on the artist's wait, and on an instance's disk it queues behind the parts just
        downloaded (an EBS gp3 volume writes 125 MB/s; a 1080p merge took 1.3-2.7 s here on disk,
        0.06-0.10 s in memory). Removed when the machine ends (run)."""
        parts = [self.part_path(i) for i in self.order if os.path.isfile(self.part_path(i))]
        need = 2 * max((os.path.getsize(p) for p in parts), default=0)  # a part's passes, and room to spare
        folder = os.path.join(MEMORY_FOLDER, f"cloud-render-{self.index}-{self.attempt}-{os.getpid()}")
        try:
            stats = os.statvfs(MEMORY_FOLDER)
            if need and stats.f_bavail * stats.f_frsize > need + MEMORY_FOLDER_SPARE:
                os.makedirs(folder, exist_ok=True)
                self.memory_folder = folder
                self.log.say(f"the merged passes are written in memory for the finish ({folder})")
                return folder
        except OSError as exc:
            self.log.say(f"the merged passes go to disk ({MEMORY_FOLDER}: {exc})")
        return self.work

    def plan_final(self, path: str) -> None:
        """The final image's name, said before the merge: the add-on then knows the frame is due
        and watches for it, instead of learning its name with it at a later poll."""
        name = os.path.relpath(path, self.frames_dir).replace(os.sep, "/")
        self.plan = {name: self.still.frame}
        self.put_json("plan.json", {"frames": [{"name": name, "frame": self.still.frame}]})

    def upload_final(self, final: dict[str, Any]) -> None:
        """The merged Combined pass, then the final image (its arrival ends the job)."""
        path = str(final.get("path") or "")
        name = os.path.relpath(path, self.frames_dir).replace(os.sep, "/")
        self.log.say(
            f"finished in {final.get('seconds', '?')} s: "
            + ("denoised, " if final.get("denoised") else "not denoised (off in the scene), ")
            + ("composited" if final.get("composited") else "no compositor nodes")
        )
        if self.plan != {name: self.still.frame}:
            self.plan_final(path)
        combined = os.path.join(self.files_dir, "still", "merged.exr")
        with open(combined, "rb") as handle:
            merged_body = handle.read()
        with_retries(
            "upload of merged.exr",
            lambda: self.poster.put("files/still/merged.exr", merged_body, timeout=600),
            self.log.say,
        )
        with open(path, "rb") as handle:
            final_body = handle.read()
        with_retries(
            f"upload of {name}",
            lambda: self.poster.put(f"frames/{name}", final_body, timeout=600),
            self.log.say,
        )
        self.merged = True
        self.log.say(
            f"the still is merged and uploaded in {round(time.monotonic() - self.merge_started, 1)} s"
        )

    def run(self) -> str:
        started = time.monotonic()
        self.start_machine(
            f"still {self.spec['job_id']}: {len(self.parts)} parts of {self.still.total_samples} samples"
        )
        try:
            command = self.install_and_fetch()
            threading.Thread(target=self.upload_parts, name="part-uploader", daemon=True).start()
            threading.Thread(target=self._claim_ahead, name="claim-ahead", daemon=True).start()
            try:
                self.run_blender(command)
            finally:
                self.claiming_done.set()
                self.kick.set()
                if self.gather is not None:
                    self.gather.close()
                self.fetcher.shutdown(wait=False)
                self.merge_trier.shutdown(wait=False)
                self.part_uploads.join()  # what was rendered is kept, whatever ended Blender
                self.part_uploads.put(None)
                if self.memory_folder:
                    shutil.rmtree(self.memory_folder, ignore_errors=True)
            self.wait_part_uploads()
            if self.frames_left():  # Blender ended well, yet a claimed part was never uploaded
                raise JobFailed(
                    "render_failed", f"Blender ended without rendering parts {self.frames_left()}."
                )
        except Stopped:
            pass  # said below, as interrupted.json
        except JobFailed as exc:
            return self.finish_failed(exc.kind, exc.cause, None)
        except (OSError, http.client.HTTPException, ElementTree.ParseError) as exc:
            return self.finish_failed(
                "upload", f"The parts could not be exchanged with the bucket ({exc}).", None
            )
        except Exception as exc:  # a bug here must still end in error.json
            self.log.say(f"internal error: {exc!r}")
            return self.finish_failed("internal", f"The render machine hit an internal error: {exc}.", None)
        self.uploads.join()  # what the install queued (a fetched Blender build for the cache)
        self.uploads.put(None)
        elapsed = round(time.monotonic() - started, 1)
        taken_over = self.gather.taken_over if self.gather is not None else set()
        parts_here = sorted(p for p in self.part_seconds if p not in taken_over)  # what its claims give it
        if self.stop_reason:
            state = "capped" if self.stop_reason == "time_cap" else "interrupted"
            self.put_json(
                "interrupted.json",
                {
                    "reason": self.stop_reason,
                    "notice": self.spot.notice,
                    "frames_done": [],
                    "frames_left": [self.still.frame],
                    "seconds": elapsed,
                },
            )
            return self.finish(state)
        self.put_json(
            "done.json",
            {
                "frames_done": [self.still.frame] if self.merged else [],
                "seconds": elapsed,
                "parts": parts_here,
                "part_seconds": {str(k): v for k, v in self.part_seconds.items()},
                "merged": self.merged,
            },
        )
        if self.merged:  # the one machine that saw every part in and finished the still
            self.notice.send("done", done=1)
        return self.finish("done")
