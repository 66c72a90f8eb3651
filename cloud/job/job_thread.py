"""Runs one job in a background thread: pack, upload, launch, then follow until it ends.

Blender's main thread only starts and cancels jobs; everything that touches the network or
the disk happens here, and what the panel should show is posted to the event queue. Where the
machines run (one EC2 instance, or N as an AWS Batch array job) is the job's `Engine`
(engine.py), named in its record: this thread is the same for both.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from ..aws.session import AwsSettings
from ..aws.storage import TooLarge
from ..cost import caps
from ..cost.cost_map import CostMap
from ..cost.estimate import quote_from_scouts
from ..errors import Cancelled, CloudError, ErrorCode, machine_failure
from ..machine import contract
from . import frame_history, phone_page, poll_bounds
from .cloud_steps import CloudSteps
from .download_rate import DownloadRate
from .endings import INTERRUPTION_WORDS, failure_action
from .engine import Engine
from .engines import make_engine
from .events import (
    CostUpdate,
    EventQueue,
    FrameArrived,
    JobEnded,
    LogLines,
    MachineStatus,
    Progress,
    QuoteReady,
    StageChanged,
)
from .frame_list import kept_text
from .image_header import KIND_OF_FORMAT, FrameShape, check_frame
from .records import WORKER_STATE_STAGE, JobRecord, JobRequest, RecordStore, Stage

POLL_SECONDS = 1.0
# After the machine is gone, how long to wait for its last uploads to become visible.
FINAL_GRACE_SECONDS = 10.0
# While a frame is due, the frames are listed this often between polls (one LIST each).
FRAME_WATCH_S = 0.2
FRAME_DUE_MARGIN_S = 2.0  # a frame counts as due this long before its measured time is up
IDLE_AFTER_S = 30.0  # in one stage this long with no frame: poll less often
IDLE_FACTOR = 4.0
FOLLOW_ATTEMPTS = 2  # tries per request while following (the follow loop itself retries)
DOWNLOAD_THREADS = 4
# As a job ends, a machine told to stop may read as running this long before it counts as left.
LEFT_RUNNING_GRACE_S = 30.0
LEFT_RUNNING_POLL_S = 1.0
# Errors that mean "cannot reach AWS right now" (the codes of cloud/aws/error_rules.py): keep following.
TRANSIENT_CODES = {ErrorCode.NO_NETWORK, ErrorCode.THROTTLED, ErrorCode.AWS_UNAVAILABLE}
T = TypeVar("T")


class JobRunner(threading.Thread):
    """One job's life. `cancel()` may be called from any thread."""

    def __init__(
        self,
        record: JobRecord,
        settings: AwsSettings,
        events: EventQueue,
        store: RecordStore,
        steps: CloudSteps,
        request: JobRequest | None = None,
        poll_seconds: float = POLL_SECONDS,
        engine: Engine | None = None,
    ) -> None:
        super().__init__(name=f"cloud-render-{record.job_id}", daemon=True)
        self.record = record
        self.settings = settings.in_region(record.region)
        self.events = events
        self.store = store
        self.steps = steps
        self.engine = engine or make_engine(record)  # as the record names it (chosen at submit)
        self.request = request
        self.poll_seconds = poll_seconds
        self.left_running_grace_s = LEFT_RUNNING_GRACE_S  # see _check_nothing_left
        self.cancel_event = threading.Event()
        self.stop_event = threading.Event()  # stop following only; the machine keeps rendering
        self._seen_frames: set[str] = set()
        self._seen_files: set[str] = set()
        self._refused: set[str] = set()  # keys the contract refused, said once each
        self._output_bytes = 0  # what the outputs taken on weigh (poll_bounds.job_output_bytes)
        self.downloads = DownloadRate()  # the frames this thread downloaded, and how fast lately
        self.plan: dict[str, int] = {}  # frame file -> frame number, from the machines' plan.json
        self._environment_seen = False  # environment.json: said once in the job log
        self._warned_projection = False
        self._gone_since = 0.0
        self._lost_since = 0.0  # when following lost contact with AWS (0: in contact)
        self._last_frame_at = 0.0  # monotonic time the newest frame arrived
        self._stage_since = 0.0  # monotonic time the stage last changed
        self.cancelled_elsewhere = False  # another computer cancelled the job (its mark in the bucket)
        self.outputs = self.engine.outputs(self)
        self.frame_shape = FrameShape(
            KIND_OF_FORMAT.get(record.frame_format, ""),
            record.frame_width,
            record.frame_height,
            record.frame_size_at_most,
        )

    # --- what the UI calls -------------------------------------------------------------
    def cancel(self) -> None:
        self.cancel_event.set()

    def stop_following(self) -> None:
        """Blender is closing or the add-on is disabled: leave the job running, re-attach later."""
        self.stop_event.set()
        self.cancel_event.set()

    # --- the thread ----------------------------------------------------------------------
    def run(self) -> None:
        try:
            if self.request is not None:
                self._submit(self.request)
            self.follow()
        except Cancelled:
            if not self.stop_event.is_set():
                self.finish_cancelled()
        except CloudError as error:
            self._fail(error.message, error.action, error.detail, error.code)
        except Exception as error:  # an unknown failure still ends the job cleanly
            self._fail(
                "Something unexpected went wrong; the details are in the job log.",
                "Try again; if it happens again, send the job log to the developers.",
                f"{type(error).__name__}: {error}",
            )

    # --- submit ----------------------------------------------------------------------------
    def _submit(self, request: JobRequest) -> None:
        costs = self.start_cost_map(request)
        try:
            self._pack_upload_launch(request, costs)
        finally:  # uploaded, or ended before launch: the local copy and pack are of no more use
            if costs is not None:
                costs.stop()
            self.steps.discard_pack(request)

    def start_cost_map(self, request: JobRequest) -> CostMap | None:
        """A first submission whose machines claim frames: render a small map of which frames
        take longest here, while the scene is packed and uploaded (a resubmit has the machines'
        own times instead: cloud/job/frame_history.py)."""
        if not request.cost_map_command or request.frame_seconds or request.reuse_inputs_from:
            return None
        if not self.engine.hands_out_frames or len(request.frames) <= request.machines:
            return None  # every machine gets one frame at most: no order to choose
        if frame_history.expected_frame_seconds(request, self.store.all())[1]:
            return None
        return CostMap(request.cost_map_command, request.frames)

    def _pack_upload_launch(self, request: JobRequest, costs: CostMap | None = None) -> None:
        rec = self.record
        for warning in request.warnings:
            self.log(f"Check: {warning}")
        if request.reuse_inputs_from:
            packed = self.steps.reuse(self.store.load(request.reuse_inputs_from))
            self.log(f"Reusing the scene uploaded for {request.reuse_inputs_from}.")
        else:
            self.set_stage(Stage.PACKING, "Collecting the scene's files")
            pack_dir = Path(request.blend_copy).parent / "pack"
            packed = self.steps.pack(request, pack_dir, self._progress, self.cancel_event)
            for missing in packed.missing:
                self.log(f"Missing, not uploaded: {missing}")
            for note in packed.notes:
                self.log(note)
        rec.blend_in_pack = packed.blend_path
        rec.pack_manifest = {path: [sha, size] for path, (sha, size) in packed.files.items()}
        rec.pack_chunks = {
            path: [list(chunk) for chunk in listing] for path, listing in packed.chunks.items()
        }
        self._save()
        self._check_cancel()

        self.set_stage(Stage.UPLOADING, "Uploading the scene")
        rec.bucket = self.steps.ensure_bucket(self.settings, request.retention_days)
        self._save()
        sent = self.steps.upload(self.settings, rec.bucket, packed, self._progress, self.cancel_event)
        rec.pack_encodings = dict(packed.encodings)
        self._save()
        squeezed = f", {sent.wire_bytes / 1e6:.1f} MB compressed" if sent.wire_bytes < sent.bytes_sent else ""
        self.log(
            f"Uploaded {sent.bytes_sent / 1e6:.1f} MB{squeezed} in {sent.files_sent} files "
            f"({sent.files_skipped} already in the cloud)."
            + (
                f" Large scene files in chunks: {sent.chunks_sent} of {sent.chunks_total} sent "
                f"({sent.chunk_bytes_sent / 1e6:.1f} MB), the rest already in the cloud."
                if sent.chunks_total
                else ""
            )
        )
        self._check_cancel()

        self.set_stage(Stage.STARTING, f"Starting a {rec.instance_type} in {rec.region}")
        self.expect_frame_seconds(request, costs)  # before the capacity check: a still's parts are cut by it
        self.engine.check_capacity(self.settings, rec, request)
        expiring = self.steps.credential_warning(self.settings, self.engine.machine_cap_seconds(rec))
        if expiring:
            self.log(expiring)
        boot_script = self.steps.boot_script(self.settings, rec, request, packed, self.engine)
        launched = self.engine.launch(self.settings, rec, request, packed, boot_script)
        rec.launch_id = launched.launch_id
        rec.launched_at = time.time()
        if rec.spot and not launched.spot:
            # No spot capacity: AWS runs it on-demand, so cost so far and the cap count that price.
            rec.spot = False
            if request.on_demand_price_per_hour > rec.price_per_hour:
                rec.price_per_hour = request.on_demand_price_per_hour
            self.log(
                f"No spot capacity: running on-demand at ${rec.price_per_hour:.3f}/h; "
                "the cost cap counts that price."
            )
        self._save()
        self.log(launched.said)
        self.share()  # with the launch id: another computer can follow and cancel it now
        self.write_page()

    def write_page(self) -> None:
        """The job's page for a phone (phone_page.py): written once the machines are launched
        (it counts the cost from then); a page that cannot be written costs only the page."""
        rec = self.record
        try:
            link = self.steps.job_page(self.settings, rec)
        except CloudError as error:
            self.log(f"No page for a phone: {error.message}")
            return
        if link.carries_session_token:  # never on disk: kept for this session only
            phone_page.session_links[rec.job_id] = link.url
        else:
            rec.page_url = link.url
        rec.page_expires = link.expires_at
        self._save()
        until = time.strftime("%Y-%m-%d %H:%M", time.localtime(link.expires_at))
        self.log(
            f"A page for this job on a phone: Open on Phone in the panel (its link works until {until})."
        )

    def expect_frame_seconds(self, request: JobRequest, costs: CostMap | None = None) -> None:
        """Each frame's time as the machines measured it in the last job of this scene (scaled to
        this one's samples and size), or else as the cost map weighs it, so that many machines
        hand out the longest frames first. One frame (a still) has nothing to order: its time
        only cuts a split still's parts (cloud/job/still_plan.py), and nothing is said."""
        if request.frame_seconds:
            return
        records = self.store.all()
        source, seconds = frame_history.expected_frame_seconds(request, records)
        if seconds:
            request.frame_seconds = seconds
            if len(request.frames) > 1:
                self.log(
                    f"Frame times from your last job of this scene ({source}, the same sampling, "
                    f"denoiser and light paths): {min(seconds.values()):.1f} to "
                    f"{max(seconds.values()):.1f} s expected; the longest frames start first."
                )
            return
        earlier, changed = frame_history.not_carried(request, records)
        if changed and len(request.frames) > 1:
            self.log(
                f"Frame times of your last job of this scene ({earlier}) not used: its "
                f"{', '.join(changed)} differed from this job's."
            )
        if costs is not None:
            mapped = costs.result()
            request.frame_seconds = mapped.weights
            self.log(mapped.said())

    def note_frame_seconds(self, measured: dict[int, float]) -> None:
        """Frame times the machine measured (validated by the contract), kept in the record."""
        self.record.frame_seconds.update({str(frame): seconds for frame, seconds in measured.items()})

    def note_end_frame_seconds(self, data: dict[str, Any], where: str) -> None:
        """An end document's frame_seconds (every frame that machine rendered), or refused."""
        rec = self.record
        measured = self.accept(
            f"{where} frame_seconds",
            lambda: contract.parse_frame_seconds(
                data.get("frame_seconds"), f"{where} frame_seconds", set(rec.frames), len(rec.frames)
            ),
        )
        if measured is not None:
            self.note_frame_seconds(measured)

    # --- follow ----------------------------------------------------------------------------
    def follow(self) -> None:
        """Poll until the job ends. A network hiccup on the artist's side only pauses following:
        the machine renders on, protected by its own dead-man timer."""
        self._lost_since = 0.0
        self._gone_since = 0.0
        # Few retries while following: a cut network shows as "Lost contact" within seconds (the
        # loop retries on its own), instead of botocore's backoff quietly riding out 15 s of it.
        self.settings = replace(self.settings, max_attempts=min(self.settings.max_attempts, FOLLOW_ATTEMPTS))
        while True:
            if self.cancel_event.is_set():
                raise Cancelled()
            try:
                if self.follow_once():
                    return
            except CloudError as error:
                if error.code not in TRANSIENT_CODES:
                    raise
                self._lost_contact(error)
                self._track_cost()  # the cap still counts while we cannot see the machine
                if self.record.is_final:
                    return
                self.cancel_event.wait(min(self.poll_seconds * 5, 10.0))
                continue
            self.pause(self.poll_interval())

    def _lost_contact(self, error: CloudError) -> None:
        """Said once per outage, whichever request met it first (a full poll or a frame watch)."""
        if not self._lost_since:
            self._lost_since = time.monotonic()
            self.log(f"Lost contact with AWS ({error.message}); the machine keeps rendering. Retrying.")
            self.events.post(Progress(self.record.job_id, 0.0, "Connection lost; retrying"))

    def poll_interval(self) -> float:
        """`poll_seconds` while something moves; once the job has sat in one stage with no frame
        for IDLE_AFTER_S (a machine booting, a long frame far from done), IDLE_FACTOR times that."""
        quiet_since = max(self._stage_since, self._last_frame_at)
        if quiet_since and time.monotonic() - quiet_since > IDLE_AFTER_S and self.until_frame_due() != 0.0:
            return self.poll_seconds * IDLE_FACTOR
        return self.poll_seconds

    def pause(self, seconds: float) -> None:
        """Wait until the next full poll; while a frame is due, list the frames every
        FRAME_WATCH_S meanwhile, so a frame is fetched well within a second of landing.

        One LIST per watch; nothing extra while the machine boots, renders a long frame that
        is not due yet (by the measured seconds per frame), or has nothing left to render."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            until_due = self.until_frame_due()
            if until_due is None:
                self.cancel_event.wait(left)
                return
            if until_due > 0:
                if self.cancel_event.wait(min(left, until_due)):
                    return
                continue
            if self.cancel_event.wait(min(FRAME_WATCH_S, left)):
                return
            try:
                self.download_new(
                    contract.frames_prefix(self.record.job_id), self._seen_frames, is_frame=True
                )
            except CloudError as error:
                # A cut met here is said here: the full poll that follows may already get through.
                if error.code in TRANSIENT_CODES:
                    self._lost_contact(error)
                return

    def until_frame_due(self) -> float | None:
        """Seconds until the next frame is due (0: due now), by the measured seconds per frame
        over the machines still working; None while no frame can come (not rendering, no plan
        yet, every frame in)."""
        rec = self.record
        if rec.stage != Stage.RENDERING.value or not self.plan or len(rec.frames_done) >= len(rec.frames):
            return None
        since = time.monotonic() - self._last_frame_at
        return max(0.0, (rec.seconds_per_frame or 0.0) / self.outputs.working() - FRAME_DUE_MARGIN_S - since)

    def final_state(self) -> tuple[Stage, dict[str, Any]] | None:
        """How the job ended by what the machines wrote, or None while it goes on."""
        return self.outputs.final_state()

    def follow_once(self) -> bool:
        """One poll: outputs, endings, cost, machine state. True when the job has ended."""
        rec = self.record
        self.poll_outputs()
        self._back_in_contact()
        final = self.final_state()
        if final is not None:
            self._check_cancelled_elsewhere(final)
            self.finish(final)
            return True
        self._track_cost()
        if rec.is_final:  # capped inside _track_cost
            return True
        if not self.engine.all_gone(self.settings, rec):
            self._gone_since = 0.0
            return False
        if self.steps.cancelled_elsewhere(self.settings, rec):
            # Another computer cancelled the job and stopped its machines: the same ending as
            # a cancel here, said as what it was (not "the machine was lost").
            self.cancelled_elsewhere = True
            raise Cancelled()
        self._gone_since = self._gone_since or time.monotonic()
        if time.monotonic() - self._gone_since <= FINAL_GRACE_SECONDS:
            return False
        self.poll_outputs()  # the machines' last uploads may have landed meanwhile
        final = self.final_state()
        if final is not None:
            self._check_cancelled_elsewhere(final)
            self.finish(final)
            return True
        raise self.outputs.gone_error()

    def _check_cancelled_elsewhere(self, final: tuple[Stage, dict[str, Any]]) -> None:
        """A machine stopped by another computer's cancel may still write how it ended (an
        interruption, a failure as Blender is killed): the cancel mark says what it was. A job
        done is done."""
        if final[0] is not Stage.DONE and self.steps.cancelled_elsewhere(self.settings, self.record):
            self.cancelled_elsewhere = True
            raise Cancelled()

    def _back_in_contact(self) -> None:
        """Said as soon as a poll gets through, before any ending, so the log reads in order."""
        if self._lost_since:
            self.log(f"Back in contact after {time.monotonic() - self._lost_since:.0f} s.")
            self._lost_since = 0.0

    def read_document(self, name: str, max_bytes: int = contract.MAX_JSON_BYTES) -> dict[str, Any] | None:
        """A document the machine wrote under out/ (`name` relative to it), fetched and read
        through `document`; absent, or refused, reads as None."""
        rec = self.record
        key = contract.out_prefix(rec.job_id) + name
        try:
            body: bytes | TooLarge | None = self.steps.get_bytes(self.settings, rec.bucket, key, max_bytes)
        except TooLarge as error:
            body = error
        return self.document(name, body, max_bytes)

    def document(self, name: str, body: bytes | TooLarge | None, max_bytes: int) -> dict[str, Any] | None:
        """Fetched bytes of out/`name` as a JSON object, bounded and version-checked (through
        `accept`); what is over `max_bytes` was not read and is refused."""
        key = contract.out_prefix(self.record.job_id) + name
        if isinstance(body, TooLarge):
            self.refuse(key, f"{name} is over the {max_bytes} bytes allowed")
            return None
        if body is None:
            return None
        return self.accept(key, lambda: contract.load_document(body, name, max_bytes))

    def accept(self, key: str, parse: Callable[[], T]) -> T | None:
        """The one way anything a machine wrote is read: `parse` (load, validate) runs here, and
        whatever it raises is the machine's doing, so it is refused (said once) and read as
        absent, never the end of the job. Only the network's failures and a cancel go on up."""
        try:
            return parse()
        except CloudError:
            raise
        except contract.ContractError as error:
            self.refuse(key, str(error))
        except Exception as error:  # a parser's own limits: RecursionError, OverflowError, ...
            self.refuse(
                key, f"it could not be read ({type(error).__name__}: {contract.clean_text(error, 200)})"
            )
        return None

    def refuse(self, key: str, reason: str) -> None:
        if key not in self._refused:
            self._refused.add(key)
            self.log(f"Ignored what the machine wrote at {contract.clean_text(key, 300)}: {reason}.")

    def poll_outputs(self) -> None:
        """One look at everything the machines wrote (the engine's reader: status, logs, plan,
        end documents), frames and files included."""
        self.outputs.poll()

    def download_outputs(self) -> None:
        """Frames and the other files the machines uploaded, new since the last look."""
        rec = self.record
        self.download_new(contract.frames_prefix(rec.job_id), self._seen_frames, is_frame=True)
        self.download_new(contract.out_prefix(rec.job_id) + "files/", self._seen_files, is_frame=False)

    def check_environment(self) -> None:
        """Farm equals local: the add-ons the machine installed and how its Blender differs, in
        the log (once)."""
        if self._environment_seen:
            return
        document = self.read_document("environment.json")
        if not document:
            return
        self._environment_seen = True
        report = self.accept("environment.json", lambda: contract.parse_environment(document))
        if report is None:
            return
        if report.installed:
            self.log("Add-ons installed on the machine: " + ", ".join(report.installed) + ".")
        for diff in report.differences:
            changes = "changes the pixels" if diff["level"] == "stop" else "noted"
            self.log(f"The machine's Blender differs ({changes}): {diff['message']}")
        if not report.differences:
            self.log("The machine's Blender, add-ons and colour settings match this one.")

    def check_quote(self) -> None:
        """Quote first: the scouts are done; go on by ourselves only if the projection fits the cap."""
        rec = self.record
        # quote.json lists every frame left, as plan.json lists every frame: the same bound
        document = self.read_document("quote.json", contract.MAX_PLAN_BYTES)
        if not document:
            return
        quote = self.accept("quote.json", lambda: contract.parse_quote(document, rec.frames))
        if quote is None:
            return
        spf = quote.seconds_per_frame
        scouts = quote.scout_frames
        elapsed = time.time() - rec.launched_at if rec.launched_at else 0.0
        measured = quote_from_scouts(
            [spf] * len(scouts), len(rec.frames), rec.price_per_hour, elapsed, rec.max_cost
        )
        projected = measured.projected_total
        rec.quote = {
            "seconds_per_frame": measured.seconds_per_frame,
            "cost_per_frame": measured.cost_per_frame,
            "projected_total": projected,
            "under_cap": measured.under_cap,
        }
        self._save()
        self.events.post(QuoteReady(rec.job_id, **rec.quote))
        text = (
            f"Measured on the machine: {spf:.1f} s and ${rec.quote['cost_per_frame']:.4f} per frame; "
            f"the whole job would cost about ${projected:.2f} (cap ${rec.max_cost:.2f})."
        )
        self.log(text)
        if rec.proof_first:  # the add-on compares a scout frame with a local render, then answers
            self.set_stage(Stage.QUOTED, text + " Checking a proof frame against a local render first.")
        elif rec.quote["under_cap"]:
            self.answer_quote(True)
        else:
            self.set_stage(Stage.QUOTED, text + " Go on, or stop and keep the scout frames?")

    def answer_quote(self, go: bool) -> None:
        """Tell the machine to render the rest (or to stop); safe from any thread."""
        rec = self.record
        self.steps.put_json(
            self.settings, rec.bucket, contract.control_key(rec.job_id, "go.json"), {"go": go}
        )
        self.log("Going on with every frame." if go else "Stopping after the scout frames.")

    def apply_status(self, status: contract.StatusReport) -> None:
        rec = self.record
        stage = WORKER_STATE_STAGE.get(status.state)
        if stage is not None and not stage.is_final and stage.value != rec.stage:
            self.set_stage(stage, status.message)
        rec.device = status.device or rec.device
        rec.blender_build = status.blender_build or rec.blender_build
        rec.gpu_driver = status.gpu_driver or rec.gpu_driver
        rec.seconds_per_frame = status.seconds_per_frame or rec.seconds_per_frame or 0.0
        self.note_frame_seconds(status.frame_seconds)
        self.events.post(
            MachineStatus(
                rec.job_id,
                frame=status.frame,
                sample=status.sample,
                samples_total=status.samples,
                device=rec.device,
                seconds_per_frame=rec.seconds_per_frame,
                frames_total=len(rec.frames),
            )
        )

    def download_new(self, prefix: str, seen: set[str], is_frame: bool) -> None:
        """Fetch what is new under `prefix`, a few files at a time; record each as it lands.

        Keys are the machine's words: each must map inside the job's output folder, fit the size
        and count limits (each output, and all of them together, bounded by the frames'
        resolution: poll_bounds.py) and, for frames, be a file the machine's plan names; anything else is
        refused and logged, never written. A frame's image header must say the job's format and
        size (image_header.py) before it is kept or counted: Blender never decodes one that does
        not. A frame already on disk (a re-attach) is not fetched again."""
        rec = self.record
        objects = self.steps.list_objects(self.settings, rec.bucket, prefix)
        limit = len(rec.frames) * contract.MAX_OUTPUT_OBJECTS_PER_FRAME + contract.MAX_EXTRA_OUTPUT_OBJECTS
        if len(objects) > limit:
            self.refuse(prefix, f"{len(objects)} objects, over the {limit} this job may have")
            objects = objects[:limit]
        object_bound, job_bound = poll_bounds.frame_bytes(rec), poll_bounds.job_output_bytes(rec)
        wanted: list[tuple[str, Path, int | None]] = []
        for obj in objects:
            if obj.key in seen or obj.key in self._refused:
                continue
            relative = obj.key[len(prefix) :]
            frame = self.plan.get(relative) if is_frame else None
            if is_frame and frame is None:
                continue  # not (yet) in the plan: wait for plan.json, or it is no frame of ours
            try:
                dest = self._local_path(relative)
            except contract.ContractError as error:
                self.refuse(obj.key, str(error))
                continue
            if obj.size > object_bound:
                self.refuse(obj.key, f"{obj.size} bytes, over the {object_bound} allowed")
                continue
            if self._output_bytes + obj.size > job_bound:  # waits: said once, fetched never
                self.refuse(
                    "the job's outputs",
                    f"{len(rec.frames)} frames at this resolution make {job_bound} bytes at most, "
                    "and the machines wrote more: the rest stays in the bucket",
                )
                continue
            self._output_bytes += obj.size
            known = rec.frame_paths.get(str(frame)) if frame is not None else None
            if known == str(dest) and dest.is_file() and dest.stat().st_size == obj.size:
                seen.add(obj.key)  # already here from before a restart
                continue
            wanted.append((obj.key, dest, frame))
        if not wanted:
            return

        def fetch(item: tuple[str, Path, int | None]) -> tuple[str, Path, int | None, str, float, float]:
            """(key, dest, frame, why it was refused or "", when its download started, ended)."""
            key, dest, frame = item
            check = (lambda path: check_frame(path, self.frame_shape)) if frame is not None else None
            start = time.monotonic()
            refused = ""
            try:
                self.steps.download(self.settings, rec.bucket, key, dest, object_bound, check)
            except contract.ContractError as error:  # not a frame of this job: nothing kept
                refused = f"not counted as frame {frame}: {error}"
            except TooLarge:  # it grew after it was listed
                refused = f"over the {object_bound} bytes allowed"
            except OSError as error:  # `x` and `x/y` both listed: one of them cannot be written
                refused = f"it cannot be written here ({error.strerror or error})"
            return key, dest, frame, refused, start, time.monotonic()

        with ThreadPoolExecutor(max_workers=DOWNLOAD_THREADS, thread_name_prefix="cloud-render-dl") as pool:
            for done in as_completed([pool.submit(fetch, item) for item in wanted]):
                key, dest, frame, refused, start, end = done.result()
                if refused:
                    self.refuse(key, refused)
                    continue  # (its bytes stay counted: a machine cannot retry its way past the bound)
                seen.add(key)
                if frame is not None:
                    with contextlib.suppress(OSError):  # gone already: it counts for nothing
                        self.downloads.add(start, end, dest.stat().st_size)
                    self._frame_arrived(frame, dest)

    def _local_path(self, relative: str) -> Path:
        """Where an output lands: inside the job's output folder, through no symlink, or refused."""
        relative = contract.safe_relative_path(relative)
        root = Path(self.record.output_dir)
        dest = root.joinpath(*relative.split("/"))
        probe = root
        for part in relative.split("/"):
            probe = probe / part
            if probe.is_symlink():
                raise contract.ContractError(f"{relative} would be written through a link")
        real_root = os.path.realpath(root)
        real_dest = os.path.realpath(dest)
        if os.path.commonpath([real_root, real_dest]) != real_root:
            raise contract.ContractError(f"{relative} leads outside the job's output folder")
        return dest

    def _frame_arrived(self, frame: int, dest: Path) -> None:
        rec = self.record
        self._last_frame_at = time.monotonic()
        if frame not in rec.frames_done:
            rec.frames_done.append(frame)
        rec.frame_paths[str(frame)] = str(dest)
        self._save()
        self.events.post(
            FrameArrived(
                rec.job_id,
                frame,
                str(dest),
                len(rec.frames_done),
                len(rec.frames),
                frames_downloaded=self.downloads.frames,
                bytes_downloaded=self.downloads.total_bytes,
                download_rate=self.downloads.rate(),
            )
        )

    def projected_total(self) -> float:
        """Cost so far plus the frames left at the measured pace (0 until a frame was timed)."""
        rec = self.record
        if not rec.seconds_per_frame:
            return 0.0
        left = len(rec.frames) - len(rec.frames_done)
        return rec.cost_so_far + left * rec.seconds_per_frame * rec.price_per_hour / 3600

    def _track_cost(self) -> None:
        """Cost so far (every machine's running time at the job's price) and the one cap rule
        (cloud/cost/caps.py): stop with the margin terminating takes still under the cap."""
        rec = self.record
        if not rec.launched_at:
            return
        fleet = self.engine.fleet(self.settings, rec)
        elapsed = time.time() - rec.launched_at
        hours = elapsed / 3600
        rec.cost_so_far = caps.billed_usd(fleet.running_s, rec.price_per_hour)
        projected = self.projected_total()
        self.events.post(CostUpdate(rec.job_id, rec.cost_so_far, projected))
        if rec.max_cost > 0 and projected > rec.max_cost and not self._warned_projection:
            self._warned_projection = True
            self.log(
                f"At {rec.seconds_per_frame:.0f} s per frame this job would cost about ${projected:.2f}, "
                f"over its ${rec.max_cost:.2f} cap: it will be stopped at the cap. Raise Max Cost or cancel."
            )
        if caps.cap_reached(
            rec.cost_so_far, elapsed, fleet.live, rec.price_per_hour, rec.max_cost, rec.max_hours
        ):
            self.log(
                f"Cap reached (${rec.cost_so_far:.2f} of ${rec.max_cost:.2f}, {hours:.2f} h, "
                f"{rec.machines} machine{'s' * (rec.machines != 1)}): stopping {self.engine.every_machine}."
            )
            self.engine.stop(self.settings, rec, "cost or time cap reached")
            self.poll_outputs()
            self.end(
                Stage.CAPPED,
                f"The job reached its cost or time cap and {self.engine.every_machine} was stopped.",
                "Raise Max Cost or Max Hours, then relaunch the missing frames.",
            )

    # --- endings -----------------------------------------------------------------------------
    def finish(self, final: tuple[Stage, dict[str, Any]]) -> None:
        stage, data = final
        rec = self.record
        if data:
            ended = {Stage.DONE: "done.json", Stage.FAILED: "error.json"}.get(stage, "interrupted.json")
            self.note_end_frame_seconds(data, contract.out_prefix(rec.job_id) + ended)
        self.set_stage(Stage.DOWNLOADING, "Fetching the last frames")
        self.poll_outputs()
        if stage is Stage.DONE and self.engine.end_grace_s:
            self.engine.wait_until_ended(self.settings, rec, self.cancel_event)
            self.poll_outputs()  # what they wrote as they ended
        try:
            self.engine.stop(self.settings, rec, "job done")  # normally already gone: belt and braces
        except CloudError as error:
            self.log(f"Could not stop {self.engine.every_machine}: {error.message}")
        for line in self.steps.after_job(self.settings, rec):
            self.log(line)
        if stage is Stage.DONE:
            missing = rec.frames_missing
            if missing:
                self.end(
                    Stage.FAILED,
                    f"{self.engine.every_machine.capitalize()} finished but {len(missing)} frames did not arrive.",
                    "Relaunch the missing frames.",
                )
            else:
                movie = self._fetch_movie(data) if data else (".", "")
                self.end(Stage.DONE, self.engine.rendered_words(rec) + movie[0], movie[1])
        elif stage is Stage.FAILED:
            key = contract.out_prefix(rec.job_id) + "error.json"
            report = self.accept(key, lambda: contract.parse_error(data, rec.frames))
            report = report or contract.parse_error({}, rec.frames)
            if report.dropped:
                self.refuse(key, report.dropped)
            if (
                machine_failure(report.kind) in (ErrorCode.MACHINE_DOWNLOAD, ErrorCode.MACHINE_MISSING_FILE)
                and rec.bucket
            ):
                # An input may be gone from the bucket (deleted by hand): the next submit asks
                # S3 about every file again instead of trusting what this computer saw there.
                self.steps.known_objects.forget(rec.bucket)
            if report.last_lines:
                self.post_log(("[cloud-render] The machine's last lines:", *report.last_lines))
            self.end(Stage.FAILED, report.cause or "The render failed.", failure_action(report.kind))
        else:
            key = contract.out_prefix(rec.job_id) + "interrupted.json"
            interrupted = self.accept(key, lambda: contract.parse_interrupted(data, rec.frames))
            interrupted = interrupted or contract.parse_interrupted({}, rec.frames)
            if interrupted.dropped:
                self.refuse(key, interrupted.dropped)
            left = interrupted.frames_left or rec.frames_missing
            stage, message, action = INTERRUPTION_WORDS[interrupted.reason]
            self.end(stage, message.format(left=len(left), done=len(rec.frames_done)), action)

    def _fetch_movie(self, data: dict[str, Any]) -> tuple[str, str]:
        """A movie job's movie, downloaded to <output>/movie/; (the rest of the message, an action)."""
        rec = self.record
        done = self.accept("done.json", lambda: contract.parse_done(data, rec.frames))
        if done is None:
            return ".", ""
        if done.movie_error:
            rec.movie_error = done.movie_error
            self.log(f"The movie could not be made on the machine: {done.movie_error}")
            return (
                f"; the movie could not be made ({done.movie_error[:200]}), the frames are all here.",
                "Fix the scene's output settings for the next job; these frames can be made into a movie "
                "in the Video Sequencer.",
            )
        if not done.movie:
            return ".", ""
        key = contract.movie_key(rec.job_id, done.movie)
        try:
            dest = self._local_path(f"movie/{done.movie}")
            self.steps.download(self.settings, rec.bucket, key, dest, contract.MAX_FRAME_BYTES)
        except (contract.ContractError, TooLarge) as error:
            self.refuse(key, str(error))
            return "; the movie was refused (see the log).", "Use the frames, or relaunch the job."
        rec.movie_path = str(dest)
        self._save()
        self.log(f"Movie encoded in {done.movie_seconds:.1f} s on the machine: {dest}")
        return ", and the movie is here.", ""

    def finish_cancelled(self) -> None:
        rec = self.record
        if rec.bucket and not self.cancelled_elsewhere:
            # First the mark, then the stop: a computer following the job sees why its machines went.
            with contextlib.suppress(CloudError):
                self.steps.mark_cancelled(self.settings, rec)
        if rec.launch_id:
            try:
                self.engine.stop(self.settings, rec, "cancelled by the artist")
            except CloudError as error:
                self._fail(
                    f"Cancelling could not stop {self.engine.every_machine}.",
                    error.action or self.engine.stop_help,
                    error.detail,
                )
                return
            with contextlib.suppress(CloudError):
                self.poll_outputs()
        # The state already says "Cancelled"; which frames stayed and where, so none is sought.
        where = "Cancelled from another computer. " if self.cancelled_elsewhere else ""
        self.end(Stage.CANCELLED, where + kept_text(list(rec.frames_done), rec.output_dir), "")

    def _fail(self, message: str, action: str, detail: str = "", code: ErrorCode = ErrorCode.NONE) -> None:
        rec = self.record
        if detail:
            self.log(f"Error detail: {detail}")
        if rec.launch_id:
            try:
                self.engine.stop(self.settings, rec, "job failed")
            except Exception as error:  # still report the first failure
                self.log(f"Could not stop {rec.launch_id}: {error}")
        self.end(Stage.FAILED, message, action, code)

    def end(self, stage: Stage, message: str, action: str, code: ErrorCode = ErrorCode.NONE) -> None:
        rec = self.record
        self._check_nothing_left()
        rec.stage, rec.message, rec.action = stage.value, message, action
        rec.ended_at = time.time()
        self._save()
        self.share()
        self.events.post(
            JobEnded(
                rec.job_id,
                stage.value,
                message,
                action,
                len(rec.frames_done),
                len(rec.frames),
                code,
                rec.cost_so_far,
            )
        )

    def _check_nothing_left(self) -> None:
        """As a job ends, whatever the ending: no machine with its tag (no live Batch child) may
        still run. One told to stop a moment ago can still read as running, so it gets a grace
        period; one still there after it is stopped again and the log says so."""
        rec = self.record
        if not rec.launch_id:
            return
        try:
            left = self._machines_left_after(self.left_running_grace_s)
            if left:
                self.log(f"Still running after the job ended: {', '.join(left)}. Stopping them.")
                self.engine.end_machines_left(self.settings, rec, left)
                left = self._machines_left_after(self.left_running_grace_s)
            if left:
                self.log(
                    f"Could not confirm that {', '.join(left)} stopped: use Find Forgotten Machines "
                    "in the Cloud Render panel, or stop them in the AWS console."
                )
            else:
                self.log("Checked: no machine of this job is still running.")
        except CloudError as error:
            self.log(f"Could not check for machines left running: {error.message} {error.action}")

    def _machines_left_after(self, grace_s: float) -> list[str]:
        deadline = time.monotonic() + grace_s
        while True:
            left = self.engine.machines_left(self.settings, self.record)
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(LEFT_RUNNING_POLL_S)

    # --- small helpers ---------------------------------------------------------------------------
    def set_stage(self, stage: Stage, message: str) -> None:
        rec = self.record
        self._stage_since = time.monotonic()
        rec.stage, rec.message = stage.value, message
        self._save()
        self.events.post(StageChanged(rec.job_id, stage.value, message))

    def _progress(self, done: float, total: float, text: str = "") -> None:
        self.events.post(Progress(self.record.job_id, (done / total) if total else 0.0, text))

    def log(self, line: str) -> None:
        """A line of the add-on's own in the job log."""
        self.post_log((f"[cloud-render] {line}",))

    def post_log(self, lines: tuple[str, ...]) -> None:
        """Lines for the job log as they are (the machines' lines, already cleaned)."""
        self.events.post(LogLines(self.record.job_id, lines))

    def _save(self) -> None:
        self.store.save(self.record)

    def share(self) -> None:
        """Rewrite the job's shared summary (cloud/job/summary.py) as this computer knows it now;
        one that cannot be written costs only what other computers see, never the job."""
        if not self.record.bucket:
            return
        try:
            self.steps.write_summary(self.settings, self.record)
        except CloudError as error:
            self.log(f"Could not update the job's summary in the bucket: {error.message}")

    def _check_cancel(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled()
