"""One machine of a still over many (engine "still", an AWS Batch array child).

The frame's samples are cut into parts (`contract.StillSpec`). Each machine claims parts as a
Batch child claims frames (a conditional write of `out/claims/part-<k>`: exactly one machine
wins each), renders the part with `still_parts.py` inside Blender (the same seed, its own sample
range, denoising and compositing off, every pass in a 32-bit multilayer EXR), and uploads it to
`out/parts/part-<k>.exr` before it looks for the next.

With no part left to claim, the machine lists `out/parts/`. Every machine lists only after its
own last upload has landed, so whichever lists last sees every part (S3 reads its writes); if
more than one sees them all, the conditional write of `out/claims/merge` picks one. That machine
downloads the parts (in-region: the artist's uplink never carries them), merges them exactly
(weighted by each part's samples), denoises and composites once with the scene's own settings
and nodes, and uploads the final image as the job's frame (with its plan, as any frame) and the
merged Combined pass as `files/still/merged.exr`. The add-on calls the job done when that frame
has arrived. Standard library only, Python 3.9 syntax.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
from typing import Any
from xml.etree import ElementTree

from . import blender_logs, contract
from .batch_worker import BatchSupervisor, Claims
from .supervisor import HERE, JobFailed, safe_join
from .transport import http_request, list_pages, with_retries

MERGE_CLAIM = 0  # the key of the merge's one claim link in its own Claims


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
        self.part_seconds: dict[int, float] = {}  # part -> seconds it took here
        self.environment_said = False  # add-ons and differences: said once, at the first step
        self.merged = False

    def claimed_item(self, name: str) -> int | None:
        """The part a claim's key names (`claims/part-<k>`), or None (a frame's, the merge's)."""
        number = name[len("part-") :]
        return int(number) if name.startswith("part-") and number.isdigit() else None

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

    # -- Blender, one step at a time

    def blender_step(self, command: list[str], args: dict[str, Any], prepare: bool = False) -> dict[str, Any]:
        """Run one still_parts.py step in Blender on the job's scene; its final event, or
        JobFailed with the cause Blender gave (or what its exit says). `prepare`: first the add-ons
        that travelled and the environment check (prepare_blender.py), as for frames: a step that
        renders or composites sees the scene as the artist's Blender does."""
        blend = safe_join(self.job_dir, self.spec["blend_path"])
        scripts = ["--python", os.path.join(HERE, "still_parts.py")]
        after = ["--", json.dumps(args)]  # still_parts.py reads the last argument
        if prepare:
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
            scripts = ["--python", os.path.join(HERE, "prepare_blender.py"), *scripts]
            after = ["--", config, json.dumps(args)]  # prepare_blender.py reads the first
        argv = [*command, "-b", blend, "--python-exit-code", "3", *scripts, *after]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.update(self.kernels.prepare())
        self.status.update(gpu_driver=self.kernels.driver)
        user = os.path.join(self.job_dir, contract.ADDONS_DIR)
        if os.path.isdir(user):
            env["BLENDER_USER_RESOURCES"] = user
        proc = subprocess.Popen(
            argv,
            cwd=self.job_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        self.blender_proc = proc
        last: dict[str, Any] = {}

        def take(line: str) -> None:
            event = blender_logs.read_event(line)
            if event is None:
                self.log.write(line.rstrip("\n"))
                return
            if event.get("event") == "failed":
                self.render_error = (
                    str(event.get("kind") or "render_failed"),
                    str(event.get("message") or ""),
                )
            if event.get("event") == "environment" and not self.environment_said:
                self.environment_said = True
                self.report_environment(event)
            last.clear()
            last.update(event)

        code = self.follow_blender(proc, take)
        if self.stop_reason:
            raise Stopped(self.stop_reason)
        if code != 0 or last.get("event") == "failed":
            kind, cause = self.failure(code)
            raise JobFailed(kind, cause)
        return last

    # -- parts

    def render_part(self, command: list[str], index: int) -> None:
        part = self.parts[index]
        name = contract.part_name(index)
        out = os.path.join(self.parts_dir, name)
        self.status.update(state="rendering", frame=self.still.frame, part=index, push=True)
        self.log.say(
            f"rendering part {index + 1} of {len(self.parts)}: samples {part.offset + 1}-{part.offset + part.length} "
            f"of {self.still.total_samples}"
        )
        started = time.monotonic()
        event = self.blender_step(
            command,
            {
                "step": "part",
                "frame": self.still.frame,
                "total": self.still.total_samples,
                "offset": part.offset,
                "length": part.length,
                "output": out,
            },
            prepare=True,
        )
        seconds = round(time.monotonic() - started, 2)
        self.log.say(f"part {index + 1} rendered in {seconds} s ({event.get('method', 'subset')} sampling)")
        with open(out, "rb") as handle:
            body = handle.read()
        # Uploaded before the next look: whoever lists the parts last then sees this one.
        with_retries(
            f"upload of part {index}",
            lambda: self.poster.put(f"parts/{name}", body, timeout=600),
            self.log.say,
        )
        self.part_seconds[index] = seconds
        self.mark("rendered", index)

    # -- the merge, by the machine that finds every part in

    def every_part_in(self) -> bool:
        listed = list_pages([self.still.parts_list_url], "listing of the parts", self.log.say)
        missing = [i for i in self.order if contract.part_name(i) not in listed]
        if missing:
            self.log.say(f"parts {[i + 1 for i in missing]} not in yet: the machine that ends them merges")
        return not missing

    def merge(self, command: list[str]) -> None:
        """Download every part, merge exactly, denoise and composite once, upload the result."""
        self.status.update(state="merging", part=None, push=True)
        started = time.monotonic()
        paths: list[list[Any]] = []
        for index in self.order:
            path = os.path.join(self.parts_dir, contract.part_name(index))
            if not os.path.exists(path):  # rendered elsewhere: fetched in-region
                url = self.still.part_urls[str(index)]

                def fetch(url: str = url) -> bytes:
                    return http_request("GET", url, timeout=600)

                body = with_retries(f"download of part {index}", fetch, self.log.say)
                with open(path, "wb") as out:
                    out.write(body)
            paths.append([path, self.parts[index].length])
        layers = os.path.join(self.work, "merged_layers.exr")
        combined = os.path.join(self.files_dir, "still", "merged.exr")
        os.makedirs(os.path.dirname(combined), exist_ok=True)
        merged = self.blender_step(
            command, {"step": "merge", "parts": paths, "output": layers, "combined": combined}
        )
        longest = merged.get("taken_from_longest") or []
        self.log.say(
            f"merged {len(paths)} parts ({self.still.total_samples} samples) in {merged.get('seconds', '?')} s"
            + (
                f"; not averaged, taken from the longest part: {', '.join(map(str, longest))}"
                if longest
                else ""
            )
        )
        final = self.blender_step(
            command,
            {
                "step": "finish",
                "merged": layers,
                "frame": self.still.frame,
                "output": os.path.join(self.frames_dir, "still"),
            },
        )
        path = str(final.get("path") or "")
        name = os.path.relpath(path, self.frames_dir).replace(os.sep, "/")
        self.log.say(
            f"finished in {final.get('seconds', '?')} s: "
            + ("denoised, " if final.get("denoised") else "not denoised (off in the scene), ")
            + ("composited" if final.get("composited") else "no compositor nodes")
        )
        self.plan = {name: self.still.frame}
        self.put_json("plan.json", {"frames": [{"name": name, "frame": self.still.frame}]})
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
        self.log.say(f"the still is merged and uploaded in {round(time.monotonic() - started, 1)} s")

    def run(self) -> str:
        started = time.monotonic()
        self.start_machine(
            f"still {self.spec['job_id']}: {len(self.parts)} parts of {self.still.total_samples} samples"
        )
        try:
            command = self.install_and_fetch()
            while not self.stop_reason:
                with self.lock:
                    index = self.next_claim()
                if index is None:
                    break
                self.render_part(command, index)
            if (
                not self.stop_reason
                and self.every_part_in()
                and Claims(
                    {str(MERGE_CLAIM): self.still.merge_claim_url}, self.index, self.attempt, self.log.say
                ).claim(MERGE_CLAIM)
            ):
                self.merge(command)
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
        parts_here = sorted(self.part_seconds)
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
        return self.finish("done")
