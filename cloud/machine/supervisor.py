"""The render machine's supervisor: get Blender and the inputs, render, hand every frame back, power off.

Started by the boot script (user-data) with the job spec it downloaded. It holds no AWS
credentials: it reads through presigned GET URLs and writes frames, log chunks and status
through the job's presigned POST, whose policy only allows keys under `jobs/<id>/out/`.
Success means every expected frame was saved by Blender and uploaded, never Blender's exit
code. Whatever happens it writes `done.json`, `error.json` or `interrupted.json`; the entry
point (`__main__.py`, which picks this runner for the "ec2" engine) then powers the machine off
(instances are launched with shutdown behaviour "terminate").

Runs on the instance's system Python: Python 3.9+, standard library only.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree

from . import assemble_movie, blender_logs, contract, kernel_cache
from .installs import BlenderInstall
from .notice import STOP_WORDS, Notice
from .transport import (
    JobFailed,
    JobLog,
    Poster,
    SpotWatcher,
    StatusWriter,
    download,
    download_chunks,
    fetch_control,
    http_request,
    list_pages,
    now_iso,
    with_retries,
)

HERE = os.path.dirname(os.path.abspath(__file__))
IMDS_URL = os.environ.get("CLOUD_RENDER_IMDS_URL", "http://169.254.169.254").rstrip("/")
IMDS_POLL_S = float(os.environ.get("CLOUD_RENDER_IMDS_POLL_S", "5"))
# "Quote first": how long the machine waits for the add-on's answer, and how often it looks.
QUOTE_WAIT_S = float(os.environ.get("CLOUD_RENDER_QUOTE_WAIT_S", str(contract.QUOTE_WAIT_S)))
QUOTE_POLL_S = 3.0


# ---------------------------------------------------------------- frames


def order_frames(frames: list[int], order: str, seconds: dict[int, float] | None = None) -> list[int]:
    """ "preview_first": every 8th frame, then every 4th, 2nd, then the rest; else ascending.

    With `seconds` (the expected time of each frame; many machines), the longest go first within
    each of those runs, so preview-first still holds and no long frame starts last while the
    other machines run out of work; equal ones stay in order, unknown ones count as average."""
    ordered = sorted(set(frames))
    runs = [ordered]
    if order == "preview_first":
        runs = []
        seen: set[int] = set()
        step = 8
        while step >= 1:
            runs.append([f for f in ordered[::step] if f not in seen])
            seen.update(runs[-1])
            step //= 2
    if seconds:
        average = sum(seconds.values()) / len(seconds)
        runs = [sorted(run, key=lambda f: -seconds.get(f, average)) for run in runs]
    return [frame for run in runs for frame in run]


def safe_join(root: str, relative: str) -> str:
    path = os.path.normpath(os.path.join(root, relative))
    if os.path.isabs(relative) or not path.startswith(root.rstrip(os.sep) + os.sep):
        raise JobFailed("download", f"The job names a file outside its folder: {relative}")
    return path


# ---------------------------------------------------------------- the supervisor


def build_words(event: dict[str, Any]) -> str:
    """ "5.0.1 (hash a3db93c5b259, built 2025-12-16)", leaving out what Blender does not know
    (a build of its own says "Unknown")."""
    known = [
        f"{word} {value}"
        for word, value in (("hash", event.get("hash")), ("built", event.get("date")))
        if value and str(value).lower() not in {"unknown", "none"}
    ]
    return f"{event.get('version')}" + (f" ({', '.join(known)})" if known else "")


class Supervisor:
    """One job on one machine, from the spec to done.json / error.json / interrupted.json."""

    claims_frames = False  # one machine of many (batch_worker.BatchSupervisor) claims its frames
    blender_proc: subprocess.Popen[bytes] | None = None

    def __init__(self, spec: dict[str, Any], work: str) -> None:
        self.spec = spec
        self.work = os.path.abspath(work)
        self.job_dir = os.path.join(self.work, "job")
        self.frames_dir = os.path.join(self.work, "out", "frames")
        self.files_dir = os.path.join(self.work, "out", "files")
        for path in (self.job_dir, self.frames_dir, self.files_dir):
            os.makedirs(path, exist_ok=True)
        self.poster = Poster(spec["upload_url"], spec["upload_fields"], spec["upload_prefix"])
        self.log = JobLog(
            os.path.join(self.work, "render.log"), self.poster, spec.get("log_chunk_seconds", 2.0)
        )
        frames = list(spec["frames"])
        self.status = StatusWriter(
            self.poster,
            min(float(spec.get("heartbeat_seconds", 5.0)), 5.0),
            {
                "contract": contract.CONTRACT_VERSION,
                "job_id": spec["job_id"],
                "state": "installing",
                "frame": None,
                "sample": None,
                "samples": None,
                "frames_total": len(frames),
                "frames_done": [],
                "frames_skipped": [],
                "seconds_per_frame": None,
                "device": "",
                "blender_build": "",
                "gpu_driver": "",  # the kernel caches' key, once nvidia-smi named it
                "message": "",
            },
        )
        self.spot = SpotWatcher(IMDS_URL, IMDS_POLL_S)
        self.tracker = blender_logs.ProgressTracker()
        self.plan: dict[str, int] | None = None  # frame file name -> frame number, over every run
        self.skipped: list[int] = []
        self.done: dict[int, str] = {}
        self.frame_seconds: list[float] = []
        self.seconds_by_frame: dict[
            int, float
        ] = {}  # frame -> seconds Blender took (contract: frame_seconds)
        self.render_error: tuple[str, str] | None = None
        self.upload_error = ""
        self.uploads: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.uploaded_files: set[str] = set()
        self.current_frame: int | None = None
        self.frame_began_at: float | None = None  # monotonic, when the current frame began
        self.stop_reason = ""
        self.movie: dict[str, Any] | None = None  # the scene's movie output, once Blender has said so
        self.blender_command: list[str] = []
        # The GPU kernel caches of earlier machines: restored before Blender, kept after it.
        self.kernels = kernel_cache.KernelCache(spec.get("kernel_cache"), self.work, self.log.say)
        self.deadline = time.monotonic() + max(60, int(spec.get("max_seconds", 7200)) - 120)
        # The e-mail when the job ends or waits for its quote's answer (notice.py); one machine
        # of many leaves it to whoever sees the whole job end (claims_frames: sends none).
        self.notice = Notice(spec, self._put_notice, self.log.say)

    # -- outputs

    def put_json(self, name: str, data: dict[str, Any]) -> None:
        data = {"contract": contract.CONTRACT_VERSION, **data}
        body = json.dumps(data, indent=1, sort_keys=True).encode()
        with open(os.path.join(self.work, name), "wb") as handle:  # kept on the machine's disk too
            handle.write(body)
        try:
            with_retries(f"upload of {name}", lambda: self.poster.put(name, body), self.log.say)
        except (OSError, http.client.HTTPException) as exc:
            self.log.say(f"could not upload {name}: {exc}")

    def _put_notice(self, name: str, body: bytes) -> None:
        with_retries(f"upload of {name}", lambda: self.poster.put(name, body), self.log.say)

    def tell(self, ending: str, **facts: Any) -> None:
        """The artist's e-mail for `ending` (notice.py), from the machine that runs the whole job."""
        if not self.claims_frames and not self.poster.denied.is_set():  # uploads refused: so would it be
            self.notice.send(ending, done=len(self.done), **facts)

    def frames_left(self) -> list[int]:
        frames = order_frames(self.spec["frames"], self.spec.get("frame_order", "sequential"))
        return [f for f in frames if f not in self.done and f not in self.skipped]

    # -- steps

    def get_blender(self) -> list[str]:
        """The command that starts Blender (installs.py), from the spec's sources in order."""
        return BlenderInstall(self.spec, self.work, self.log, self.poster).get_blender()

    def download_inputs(self) -> None:
        try:
            inputs = [contract.parse_input(item) for item in self.spec.get("inputs", [])]
        except contract.ContractError as exc:
            raise JobFailed("contract", f"The job spec lists its files wrongly: {exc}.") from exc
        total = sum(item.size for item in inputs)
        chunked = [item for item in inputs if item.chunks]
        squeezed = sum(1 for i in inputs if i.encoding) + sum(
            1 for i in chunked for c in i.chunks if c.encoding
        )
        self.log.say(
            f"downloading {len(inputs)} job files ({total / 1e6:.1f} MB)"
            + (f", {len(chunked)} of them in {sum(len(i.chunks) for i in chunked)} chunks" if chunked else "")
            + (f"; {squeezed} objects stored compressed, inflated and checked here" if squeezed else "")
        )
        for item in inputs:
            dest = safe_join(self.job_dir, item.path)
            if item.chunks:
                chunks = [
                    {"sha256": c.sha256, "size": c.size, "url": c.url, "encoding": c.encoding}
                    for c in item.chunks
                ]
                download_chunks(chunks, dest, item.sha256, item.size, self.log.say, item.path)
                self.log.say(
                    f"{item.path} rebuilt from {len(chunks)} chunks and verified (sha256 {item.sha256[:16]}...)"
                )
                continue
            download(item.url, dest, item.sha256, self.log.say, item.path, item.encoding, item.size)
            if os.path.getsize(dest) != item.size:
                raise JobFailed("download", f"{item.path} arrived with the wrong size.")

    def existing_frames(self) -> list[str]:
        """Frame files already in the bucket (an earlier run of this job), relative to out/frames/."""
        url = self.spec.get("list_url", "")
        if not url:
            return []
        try:
            body = with_retries("listing of existing frames", lambda: http_request("GET", url), self.log.say)
        except (OSError, http.client.HTTPException) as exc:
            self.log.say(f"could not list existing frames ({exc}); rendering all")
            return []
        prefix = self.spec["upload_prefix"] + "frames/"
        keys = [
            el.text or ""
            for el in ElementTree.fromstring(body).iter()
            if el.tag.endswith("}Key") or el.tag == "Key"
        ]
        return [k[len(prefix) :] for k in keys if k.startswith(prefix)]

    def mark_uploaded(self, frame: int) -> None:
        """marks/rendered-<f> once frame f is uploaded, where the spec lists marks (one machine):
        a re-run skips it. A mark that cannot be written costs a re-render on a re-run, no more."""
        if not self.spec.get("mark_list_urls"):
            return
        try:
            with_retries(
                f"mark of frame {frame}",
                lambda: self.poster.put(f"marks/{contract.rendered_mark(frame)}", b""),
                self.log.say,
            )
        except (OSError, http.client.HTTPException) as exc:
            self.log.say(f"could not mark frame {frame} uploaded ({exc})")

    def marked_frames(self) -> list[int]:
        """Frames an earlier run of this job marked uploaded, over every page of the listing."""
        pages = list(self.spec.get("mark_list_urls") or [])
        if not pages:
            return []
        try:
            names = list_pages(pages, "listing of frames already uploaded", self.log.say)
        except (OSError, http.client.HTTPException, ElementTree.ParseError) as exc:
            self.log.say(f"could not list the frames already uploaded ({exc}); rendering all")
            return []
        frames = set(self.spec["frames"])
        marked = {int(n[9:]) for n in names if n.startswith("rendered-") and n[9:].lstrip("-").isdigit()}
        return sorted(marked & frames)

    # -- rendering

    def handle_line(self, line: str) -> None:
        self.log.write(line)
        text = line.strip()
        try:
            mine = blender_logs.read_event(text)
        except ValueError:
            self.log.say("unreadable worker event line")
            return
        if mine is not None:
            self.handle_event(mine)
            return
        event = self.tracker.feed(text)
        if event is None:
            return
        if event.kind == "progress" and event.sample is not None:
            self.status.update(frame=event.frame, sample=event.sample, samples=event.samples)
        elif event.kind == "saved":
            path = os.path.abspath(event.path)
            if path.startswith(self.frames_dir + os.sep) and os.path.isfile(path):
                self.note_saved_frame()
                self.uploads.put(("frames", path))
            elif path.startswith(self.files_dir + os.sep) and os.path.isfile(path):
                self.uploaded_files.add(path)
                self.uploads.put(("files", path))

    def handle_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "build":
            build = build_words(event)
            self.log.say(f"Blender build: {build}")
            self.kernels.note_build(str(event.get("version")), str(event.get("hash")))
            self.status.update(blender_build=build)
        elif kind == "device":
            gpus = event.get("gpus") or []
            detail = f" ({len(gpus)} GPU: {', '.join(gpus)})" if gpus else ""
            if event.get("opengl"):
                detail += f" (OpenGL: {event['opengl']}{', software' if event.get('software') else ''})"
            self.log.say(f"render device: {event.get('device')}{detail}")
            self.status.update(device=event.get("device"), gpus=gpus, push=True)
        elif kind == "plan":
            plan = {item["name"]: int(item["frame"]) for item in event.get("frames", [])}
            skipped = [int(item["frame"]) for item in event.get("skipped", [])]
            self.plan = {**(self.plan or {}), **plan}  # a quoted job runs Blender twice
            self.skipped += [f for f in skipped if f not in self.skipped]
            if skipped:
                self.log.say(f"frames already in the bucket, skipped: {skipped}")
            self.log.say(f"rendering {len(plan)} frames in this order: {list(plan.values())}")
            # The add-on maps frame files to frame numbers with this, never by guessing from names.
            self.put_json("plan.json", {"frames": [{"name": n, "frame": f} for n, f in self.plan.items()]})
            self.status.update(frames_skipped=self.skipped)
        elif kind == "frame":
            self.current_frame = int(event["frame"])
            self.frame_began_at = time.monotonic()
            self.status.update(frame=self.current_frame, sample=None, samples=None)
        elif kind == "frame_done":
            self.frame_seconds.append(float(event.get("seconds", 0)))
            if isinstance(event.get("frame"), int):
                self.seconds_by_frame[event["frame"]] = round(float(event.get("seconds", 0)), 3)
            self.queue_new_files()  # File Output nodes that do not print "Saved:" (Blender 4.x)
            self.status.update(
                seconds_per_frame=round(sum(self.frame_seconds) / len(self.frame_seconds), 2),
                frame_seconds=self.measured_seconds(contract.MAX_STATUS_FRAME_SECONDS),
                soon=True,  # written beside the frame's upload: the add-on reads it with the frame
            )
        elif kind == "preview":
            self.uploads.put(("preview", str(event.get("path", ""))))
        elif kind == "environment":
            self.report_environment(event)
        elif kind == "movie":
            self.movie = event
            self.log.say(
                f"movie output ({event.get('container')}, {event.get('codec')}, audio {event.get('audio')}): "
                f"frames rendered as {event.get('frames_format')}, the movie is encoded once all are in"
            )
        elif kind == "error":
            self.render_error = (str(event.get("kind", "render_failed")), str(event.get("message", "")))

    def note_saved_frame(self) -> None:
        """The frame in progress is saved: its time so far, until Blender's own "frame_done" time
        replaces it. A machine stopped between the two (a spot notice, the cap) still reports the
        time of every frame it uploaded, which the next job's plan uses."""
        frame, started = self.current_frame, self.frame_began_at
        if frame is not None and started is not None and frame not in self.seconds_by_frame:
            self.seconds_by_frame[frame] = round(time.monotonic() - started, 3)

    def measured_seconds(self, last: int | None = None) -> dict[str, float]:
        """frame_seconds of the end documents (every frame rendered) or of status.json (the last few)."""
        items = list(self.seconds_by_frame.items())
        if last is not None:
            items = items[-last:]
        return {str(frame): seconds for frame, seconds in items if seconds >= contract.MIN_FRAME_SECONDS}

    def report_environment(self, event: dict[str, Any]) -> None:
        """The add-ons installed and every difference from the artist's Blender: the log and environment.json."""
        for line in event.get("installed") or []:
            self.log.say(f"add-on installed and enabled: {line}")
        for name in event.get("failed") or []:
            self.log.say(f"add-on failed to enable: {name}")
        for diff in event.get("differences") or []:
            self.log.say(f"environment difference ({diff.get('level')}): {diff.get('message')}")
        if not event.get("differences"):
            self.log.say("environment: same Blender build, add-ons and colour settings as yours")
        keep = ("installed", "failed", "differences", "fingerprint")
        self.put_json("environment.json", {k: event.get(k) for k in keep})

    def queue_new_files(self) -> None:
        """Files written by File Output nodes: queued once each, once the frame that wrote them is done."""
        for root, _dirs, files in os.walk(self.files_dir):
            for name in files:
                path = os.path.join(root, name)
                if path not in self.uploaded_files:
                    self.uploaded_files.add(path)
                    self.uploads.put(("files", path))

    def _put_later(self, key: str, body: bytes) -> Callable[[], None]:
        return lambda: self.poster.put(key, body, timeout=120)

    def upload_worker(self) -> None:
        while True:
            item = self.uploads.get()
            try:
                if item is None:
                    return
                area, path = item
                if area == "preview":
                    self.upload_preview(path)
                    continue
                root = self.frames_dir if area == "frames" else self.files_dir
                relative = os.path.relpath(path, root).replace(os.sep, "/")
                with open(path, "rb") as handle:
                    body = handle.read()
                try:
                    with_retries(
                        f"upload of {relative}",
                        self._put_later(f"{area}/{relative}", body),
                        self.log.say,
                    )
                except (OSError, http.client.HTTPException) as exc:
                    self.upload_error = f"{relative}: {exc}"
                    self.log.say(f"giving up on uploading {relative}: {exc}")
                    continue
                if area == "frames" and self.plan is not None and relative in self.plan:
                    frame = self.plan[relative]
                    self.done[frame] = relative
                    self.mark_uploaded(frame)
                    self.log.say(f"frame {frame} uploaded ({len(body) / 1e3:.1f} kB) as frames/{relative}")
                    self.status.update(frames_done=sorted(self.done), push=True)
                else:
                    self.log.say(f"uploaded {area}/{relative}")
            finally:
                self.uploads.task_done()

    def upload_preview(self, path: str) -> None:
        """The latest frame, small (render_frames.write_preview), under its fixed name: queued
        behind the frame it shows, once, no retries (the next frame brings a new one)."""
        if os.path.abspath(path) != os.path.join(self.work, contract.PREVIEW_NAME):
            return
        try:
            with open(path, "rb") as handle:
                body = handle.read(contract.MAX_PREVIEW_BYTES + 1)
            if len(body) <= contract.MAX_PREVIEW_BYTES:
                self.poster.put(contract.PREVIEW_NAME, body, timeout=30)
        except (OSError, http.client.HTTPException) as exc:
            self.log.say(f"the page's preview was not uploaded: {exc}")

    def render(self, command: list[str], frames: list[int]) -> int:
        """Run Blender on `frames`, in that order; returns its exit status (negative: killed by a signal)."""
        config = {
            "frames": frames,
            "device": self.spec.get("device", "GPU"),
            "samples": self.spec.get("samples"),
            "resolution_percentage": self.spec.get("resolution_percentage"),
            "file_format": self.spec.get("file_format"),
            "movie_frames_format": self.spec.get("movie_frames_format"),
            "frames_dir": self.frames_dir,
            "files_dir": self.files_dir,
            "preview_path": os.path.join(self.work, contract.PREVIEW_NAME),
            "preview_side": contract.PREVIEW_SIDE,
            "existing": self.existing_frames(),
            "existing_frames": self.marked_frames(),
            "addons": self.spec.get("addons") or [],
            "auto_run": bool(self.spec.get("auto_run")),
            "fingerprint": self.spec.get("fingerprint") or {},
            "accept_differences": bool(self.spec.get("accept_differences")),
            # One machine of many: Blender asks for each next frame ("next") and reads the
            # claimed one on its stdin (batch_worker.py answers), the scene loaded once.
            "claim": self.claims_frames,
        }
        config_path = os.path.join(self.work, "render-config.json")
        with open(config_path, "w") as handle:
            json.dump(config, handle)
        blend = safe_join(self.job_dir, self.spec["blend_path"])
        # Blender reads its flags in order: the exit code must be set before the script runs.
        argv = [
            *command,
            "-b",
            blend,
            "--python-exit-code",
            "3",
            "--python",
            os.path.join(HERE, "prepare_blender.py"),  # the artist's add-ons, then the environment check
            "--python",
            os.path.join(HERE, "render_frames.py"),
        ]
        argv += ["--", config_path]
        kernels = self.kernels.prepare()  # the first time: restores the kept kernel caches
        self.status.update(state="rendering", gpu_driver=self.kernels.driver, push=True)
        self.log.say("starting Blender: " + " ".join(os.path.basename(a) for a in argv[: len(command) + 2]))
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        egl, note = assemble_movie.egl_environment(env)
        env.update(egl)
        env.update(kernels)
        if not self.blender_command:
            self.log.say(note)
        self.blender_command = list(command)
        user = os.path.join(self.job_dir, contract.ADDONS_DIR)
        if os.path.isdir(user):  # the add-ons that travelled with the job
            env["BLENDER_USER_RESOURCES"] = user
        proc = subprocess.Popen(
            argv,
            cwd=self.job_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if self.claims_frames else subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        self.blender_proc = proc
        with open(os.path.join(self.work, "blender.pid"), "w") as handle:
            handle.write(str(proc.pid))
        code = self.follow_blender(proc, self.handle_line)
        if not self.stop_reason and self.frame_seconds:  # a frame rendered: the kernels were loaded
            self.kernels.save()  # once per machine; the frames upload meanwhile
        return code

    def follow_blender(self, proc: subprocess.Popen[bytes], on_line: Callable[[str], None]) -> int:
        """Hand each line Blender prints to `on_line` until it exits; stop it on a spot notice,
        near the time cap, or once the bucket refuses every upload (`stop_reason` says which).
        Returns its exit status."""
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                lines.put(raw.decode("utf-8", "replace"))
            lines.put(None)

        threading.Thread(target=read, name="blender-output", daemon=True).start()
        while True:
            if not self.stop_reason and self.spot.noticed.is_set():
                self.stop_reason = "spot"
                self.log.say(f"spot interruption notice: {json.dumps(self.spot.notice)}; stopping Blender")
                self.stop(proc)
            elif not self.stop_reason and time.monotonic() > self.deadline:
                self.stop_reason = "time_cap"
                self.log.say("the job's time cap is nearly reached; stopping Blender")
                self.stop(proc)
            elif not self.stop_reason and self.poster.denied.is_set():
                self.stop_reason = "credentials_expired"
                self.log.say(
                    f"the bucket refuses every upload ({self.poster.refusal}); frames rendered now "
                    "could not be saved: stopping Blender"
                )
                self.stop(proc)
            try:
                line = lines.get(timeout=0.25)
            except queue.Empty:
                continue
            if line is None:
                break
            on_line(line)
        return proc.wait()

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def failure(self, code: int) -> tuple[str, str]:
        """(kind, one-line cause) for a render that did not save every frame."""
        if self.render_error:
            return self.render_error
        frame = f" while rendering frame {self.current_frame}" if self.current_frame is not None else ""
        if code in (126, 127) and not self.done:  # the shell's "cannot run" / "not found"
            return "blender_install", f"Blender could not start on the machine (exit code {code})."
        kind, cause = blender_logs.classify_failure(list(self.log.tail))
        if kind == "gpu_memory":
            return kind, cause
        if code < 0:
            name = signal.Signals(-code).name
            if -code == signal.SIGKILL:
                return (
                    "killed",
                    f"Blender was killed ({name}){frame}; the machine may have run out of memory.",
                )
            return "crash", f"Blender crashed with signal {name}{frame}."
        if kind:
            return kind, cause
        if self.upload_error:
            return "upload", f"Frames could not be uploaded to the bucket ({self.upload_error})."
        missing = self.frames_left()
        if not missing:
            return "render_failed", f"Blender exited (code {code}) before rendering a frame."
        return "render_failed", f"Blender exited (code {code}) without saving frames {missing[:10]}."

    def run(self) -> str:
        """The whole job; returns the final state."""
        self.log.start()
        self.status.start()
        self.spot.start()
        uploader = threading.Thread(target=self.upload_worker, name="uploader", daemon=True)
        uploader.start()
        started = time.monotonic()
        self.log.say(f"supervisor started for job {self.spec['job_id']} (Python {sys.version.split()[0]})")
        code: int | None = None
        try:
            self.status.update(state="installing", push=True)
            self.check_uploads()
            command = self.get_blender()
            self.check_uploads()
            self.status.update(state="downloading", push=True)
            self.download_inputs()
            self.check_uploads()
            frames = order_frames(self.spec["frames"], self.spec.get("frame_order", "sequential"))
            scouts = self.scouts()
            if scouts:
                code = self.render(command, scouts)
                self.wait_uploads()
                if not self.stop_reason and self.rendered_all() and self.frames_left():
                    self.write_quote(scouts)
                    if self.wait_for_go():
                        code = self.render(command, self.frames_left())
                        self.wait_uploads()
            else:
                code = self.render(command, frames)
                self.wait_uploads()
        except JobFailed as exc:
            return self.finish_failed(exc.kind, exc.cause, code)
        except Exception as exc:  # a bug here must still end in error.json and a powered-off machine
            self.log.say(f"internal error: {exc!r}")
            return self.finish_failed("internal", f"The render machine hit an internal error: {exc}.", code)
        finally:
            self.uploads.put(None)
        elapsed = round(time.monotonic() - started, 1)
        if self.stop_reason == "credentials_expired":
            return self.finish_failed("credentials_expired", self.refused_cause(), code)
        if self.stop_reason:
            state = "capped" if self.stop_reason == "time_cap" else "interrupted"
            left = self.frames_left()
            data = {
                "reason": self.stop_reason,
                "notice": self.spot.notice,
                "frames_done": sorted(self.done),
                "frames_skipped": self.skipped,
                "frames_left": left,
                "seconds": elapsed,
                "frame_seconds": self.measured_seconds(),
            }
            self.log.say(f"job {state}: {len(self.done)} frames done, {few_frames(left)} left")
            self.put_json("interrupted.json", data)
            ending, said = STOP_WORDS.get(self.stop_reason, ("stopped", "stopped"))
            self.tell(ending, said=said)
            return self.finish(state)
        if self.rendered_all():
            data = {
                "frames_done": sorted(self.done),
                "frames_skipped": self.skipped,
                "seconds": elapsed,
                "seconds_per_frame": self.status.fields.get("seconds_per_frame"),
                "device": self.status.fields.get("device"),
                "blender_build": self.status.fields.get("blender_build"),
                "frame_seconds": self.measured_seconds(),
            }
            self.log.say(
                f"all {len(self.done)} frames rendered and uploaded in {elapsed} s (Blender exit code {code})"
            )
            data.update(self.movie_result())
            self.put_json("done.json", data)
            self.tell("done")
            return self.finish("done")
        kind, cause = self.failure(code if code is not None else 0)
        return self.finish_failed(kind, cause, code)

    def movie_result(self) -> dict[str, Any]:
        """A movie job's movie, encoded from the frames on this disk and uploaded as movie/<name>.

        Runs once every frame is in; a failed encode is said in done.json and the log, and the
        frames stay, so it costs no re-render."""
        if self.movie is None or self.plan is None:
            return {}
        if not self.spec.get("encode_movie", True):
            self.log.say(
                "frames only: this run does not hold every frame; the movie is made where they all are"
            )
            return {}
        self.status.update(state="encoding", push=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1", **assemble_movie.egl_environment(dict(os.environ))[0])
        options = {
            "frames_format": self.movie.get("frames_format"),
            "resolution_percentage": self.spec.get("resolution_percentage"),
        }
        try:
            frames = assemble_movie.frames_in_order(self.frames_dir, self.plan)
            blend = safe_join(self.job_dir, self.spec["blend_path"])
            path, seconds = assemble_movie.assemble(
                self.blender_command, blend, self.work, frames, options, self.log.write, env
            )
            with open(path, "rb") as handle:
                body = handle.read()
            name = os.path.basename(path)
            with_retries(f"upload of movie/{name}", self._put_later(f"movie/{name}", body), self.log.say)
        except (assemble_movie.MovieFailed, JobFailed, OSError, http.client.HTTPException) as exc:
            reason = exc.cause if isinstance(exc, JobFailed) else str(exc)
            self.log.say(f"the movie could not be made ({reason}); the frames are kept")
            return {"movie_error": reason[:500]}
        self.log.say(
            f"movie encoded in {seconds} s ({len(frames)} frames, {len(body) / 1e3:.1f} kB) as movie/{name}"
        )
        return {"movie": {"name": name, "seconds": seconds, "bytes": len(body)}}

    def refused_cause(self) -> str:
        return (
            f"The bucket refused the render machine's uploads ({self.poster.refusal}): the AWS sign-in "
            "that signed its upload link has expired, so it stopped rendering frames it could not save."
        )

    def check_uploads(self) -> None:
        """Between steps: go no further once the bucket refuses every upload."""
        if self.poster.denied.is_set():
            self.log.say(f"the bucket refuses every upload ({self.poster.refusal}); stopping")
            raise JobFailed("credentials_expired", self.refused_cause())

    def wait_uploads(self) -> None:
        self.uploads.join()
        self.queue_new_files()
        self.uploads.join()

    def rendered_all(self) -> bool:
        """Every frame Blender was asked for so far was saved and uploaded."""
        expected = set(self.plan or {})
        return self.plan is not None and not self.render_error and expected <= set(self.done.values())

    # -- quote first

    def scouts(self) -> list[int]:
        """The spec's scout frames that belong to the job, once each, in the spec's order."""
        frames = set(self.spec["frames"])
        return list(dict.fromkeys(f for f in self.spec.get("scout_frames") or [] if f in frames))

    def write_quote(self, scouts: list[int]) -> None:
        """quote.json: what a frame costs in time on this machine, measured on the scout frames."""
        measured = self.frame_seconds
        seconds = round(sum(measured) / len(measured), 3) if measured else None
        left = self.frames_left()
        quote = {
            "scout_frames": scouts,
            "seconds_per_frame": seconds,
            "frames_total": len(self.spec["frames"]),
            "frames_left": left,
        }
        self.log.say(f"quote: {seconds} s per frame over scout frames {scouts}; {len(left)} frames left")
        self.put_json("quote.json", quote)
        rest = (seconds or 0.0) * len(left) / 3600.0 * float(self.notice.settings.get("usd_per_hour", 0.0))
        self.tell("quote", seconds_per_frame=seconds, left=len(left), usd_rest=rest)
        self.status.update(
            state="quoting",
            frame=None,
            sample=None,
            samples=None,
            message="waiting for the go-ahead",
            push=True,
        )

    def wait_for_go(self) -> bool:
        """Poll control/go.json until the add-on answers; False sets the reason to stop.

        The heartbeat keeps going meanwhile, and a spot notice or the time cap ends the wait.
        """
        url = self.spec.get("go_url", "")
        give_up = time.monotonic() + QUOTE_WAIT_S
        next_poll = time.monotonic()
        if not url:
            self.log.say("the job asks for a quote but gives no address to answer it; stopping")
            give_up = next_poll
        self.log.say(f"waiting up to {QUOTE_WAIT_S:.0f} s for the go-ahead")
        while True:
            if self.spot.noticed.is_set():
                self.stop_reason = "spot"
                self.log.say(f"spot interruption notice while waiting: {json.dumps(self.spot.notice)}")
                return False
            if time.monotonic() > self.deadline:
                self.stop_reason = "time_cap"
                self.log.say("the job's time cap is nearly reached while waiting for the go-ahead")
                return False
            if self.poster.denied.is_set():
                self.stop_reason = "credentials_expired"
                self.log.say(f"the bucket refuses every upload ({self.poster.refusal}) while waiting")
                return False
            if time.monotonic() >= give_up:
                self.stop_reason = "no_answer_to_quote"
                self.log.say("no answer to the quote in time; stopping after the scout frames")
                return False
            if url and time.monotonic() >= next_poll:
                next_poll = time.monotonic() + QUOTE_POLL_S
                try:
                    answer = fetch_control(url)
                except (OSError, ValueError, http.client.HTTPException) as exc:
                    self.log.say(f"could not read the answer to the quote ({exc}); trying again")
                    answer = None
                if answer is not None and "go" in answer:
                    if answer["go"] is True:
                        self.log.say("go-ahead received; rendering the remaining frames")
                        self.status.update(message="", push=True)
                        return True
                    self.stop_reason = "stopped_after_quote"
                    self.log.say("the add-on said stop after the quote")
                    return False
            time.sleep(0.25)

    def finish_failed(self, kind: str, cause: str, code: int | None) -> str:
        self.log.say(f"job failed ({kind}): {cause}")
        self.put_json(
            "error.json",
            {
                "kind": kind,
                "cause": cause,
                "frame": self.current_frame,
                "exit_code": code,
                "frames_done": sorted(self.done),
                "frames_left": self.frames_left(),
                "last_lines": list(self.log.tail),
                "time": now_iso(),
                "frame_seconds": self.measured_seconds(),
            },
        )
        self.status.update(message=cause)
        self.tell("failed", kind=kind)
        return self.finish("failed")

    def finish(self, state: str) -> str:
        self.spot.stopping.set()
        self.status.stop()
        self.status.update(state=state, frame=None, sample=None, samples=None)
        for _ in range(3):
            if self.status.push() or self.poster.denied.is_set():
                break
            time.sleep(2)
        self.log.say(f"final state: {state}; powering off")
        self.log.close()
        return state


def few_frames(frames: list[int], shown: int = 8) -> str:
    """'5997 frames (2, 3, 4, ... 6000)': a log line stays a line however many frames are left."""
    if len(frames) <= shown:
        return f"{len(frames)} frames {frames}"
    return f"{len(frames)} frames ({', '.join(map(str, frames[: shown - 1]))}, ... {frames[-1]})"
