"""The many-machines engine: a job's frames over N machines, an AWS Batch array job.

`BatchEngine` launches, watches and stops the array job: the launch id is Batch's job id, and
"the machine" is every child; the cost sums every child's running time. `MachineFolders` reads
what each machine writes under `out/machines/<index>/` (status, log, plan, end document)
through the contract, and calls the job done when every frame has arrived. The machines share
the job's links, so none is taken at its word about another (batch_siblings.py): a machine's
end document is believed only when it agrees with the claims and the frames that landed. The job's logic
(stages, caps, endings, downloads) is the job thread's, the same for one machine.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..aws import batch, fleet, storage
from ..aws.session import AwsSettings
from ..aws.storage import TooLarge
from ..cost import caps, fleet_plan
from ..cost.catalog import InstanceType, load_catalog
from ..errors import CloudError, ErrorCode
from ..machine import contract
from ..pack.preflight import BYTES_PER_PIXEL
from . import batch_siblings
from .batch_siblings import EndSays, Facts
from .cloud_steps import BOOT_OVERHEAD_S, PackedScene
from .endings import failure_action
from .engine import EngineName, Fleet, ForgottenMachine, JobHost, Launched
from .events import MachinesUpdate
from .poll_bounds import MAX_LOG_CHUNKS_PER_POLL, LogBudget
from .records import WORKER_STATE_STAGE, JobRecord, JobRequest, Stage

CHILDREN_EVERY_S = 5.0  # how often Batch is asked about the children (cost, endings)
POLL_THREADS = 8  # machines read at once in one poll
END_DOCUMENTS = ("done.json", "error.json", "interrupted.json")
FORWARD = (Stage.STARTING, Stage.INSTALLING, Stage.RENDERING)  # the stages machines move a job through
FORWARD_VALUES = tuple(stage.value for stage in FORWARD)
# Billed time around a child's own limit: the instance's boot and the job's start (as for one
# machine) plus Batch's scale-up and scale-down (on paper, fleet_plan.BATCH_EXTRA_S).
BATCH_OVERHEAD_S = BOOT_OVERHEAD_S + fleet_plan.BATCH_EXTRA_S
# A container's start before its supervisor's own deadline runs (the boot script, Blender's
# download): Batch's per-child timeout is that deadline plus this, a backstop behind it.
CONTAINER_START_S = 10 * 60
# Every frame is here: the machines have nothing left to claim and end on their own within
# seconds, each writing its done.json (its last frame's time, which orders the scene's next job).
# Terminating at once would cut that short; they get this long before the job is terminated.
MACHINES_END_GRACE_S = 20.0


def child_size_for(instance_type: str, facts: InstanceType | None) -> batch.ChildSize:
    """Each child sized to one instance of the job's type, from the machine catalog. A type the
    catalog does not know cannot be sized: Batch would keep its children waiting for ever if they
    asked for more than the instance has, or kill Blender if they asked for too little."""
    if facts is None:
        raise CloudError(
            f"The machine type {instance_type} is not one this add-on knows the size of, so it "
            "cannot render on many machines.",
            "Choose a machine type from the list in the Render in Cloud panel.",
            code=ErrorCode.UNKNOWN_INSTANCE_TYPE,
        )
    return batch.child_size(facts.vcpu, facts.ram_gib, facts.gpu_count)


def scene_memory_mib(render_pixels: int) -> int:
    """The least memory a frame of this size takes (the render buffers, as preflight counts them
    for the GPU), 0 when the size is not known. The scene's own data comes on top of it."""
    return int(max(0, render_pixels) * BYTES_PER_PIXEL / 1024**2)


def check_scene_fits(render_pixels: int, instance_type: str, size: batch.ChildSize) -> None:
    """Refuse a job whose frames cannot fit in one child's memory: Batch would kill Blender at the
    limit on every machine, after each had booted and been paid for."""
    need = scene_memory_mib(render_pixels)
    if need <= size.memory_mib:
        return
    raise CloudError(
        f"Each frame needs about {need / 1024:.0f} GB of memory at this resolution, more than the "
        f"{size.memory_mib / 1024:.0f} GB a {instance_type} machine leaves for rendering.",
        "Lower Output Properties > Resolution %, or choose a machine type with more memory.",
        code=ErrorCode.SCENE_TOO_LARGE,
    )


class BatchEngine:
    """N machines as one AWS Batch array job: the launch id is the array job's id, and "the
    machine" is every child. One per job."""

    name = EngineName.BATCH
    end_grace_s = MACHINES_END_GRACE_S
    encodes_movie = False  # no machine holds every frame: the movie is made where they all are
    every_machine = "every machine"
    hands_out_frames = True
    stop_help = "Stop the job in the AWS Batch console."

    def __init__(self) -> None:
        self.children_seen: list[batch.Child] = []
        self._children_at = 0.0

    # --- launch ----------------------------------------------------------------------------
    def machine_cap_seconds(self, record: JobRecord) -> int:
        """Each machine's own limit: its 1/N share of Max Cost, Max Hours as it is, less the boot
        and Batch's scaling (so N machines that each run to it stay within the job's caps)."""
        return caps.machine_share_seconds(
            record.max_cost, record.max_hours, record.price_per_hour, BATCH_OVERHEAD_S, record.machines
        )

    def check_capacity(self, settings: AwsSettings, record: JobRecord, request: JobRequest) -> None:
        """A frame must fit in one child's memory (checked first: no request needed), and N
        machines must fit the family's vCPU quota (if not, say how many do)."""
        facts = load_catalog().types.get(record.instance_type)
        check_scene_fits(
            request.render_pixels, record.instance_type, child_size_for(record.instance_type, facts)
        )
        fit = fleet.check_fleet(settings, record.instance_type, record.spot, record.machines)
        if not fit.ok:  # with a quota code the panel offers the increase request
            if not fit.report.offered:
                code = ErrorCode.NOT_OFFERED
            elif fit.fits or fit.report.fits:
                code = ErrorCode.QUOTA_LOW  # one machine fits, N do not
            else:
                code = fit.report.code
            raise CloudError(fit.message, fit.action, code=code)

    def spec_extras(self, settings: AwsSettings, record: JobRecord, expires: int) -> dict[str, Any]:
        """Each frame's claim link, and listings of the claims and of each machine's marks, page
        by page however many frames."""
        claims = storage.put_links(
            settings,
            record.bucket,
            {str(frame): contract.claim_key(record.job_id, frame) for frame in record.frames},
            expires,
        )
        claim_pages = storage.list_page_links(
            settings,
            record.bucket,
            contract.claims_prefix(record.job_id),
            [str(f) for f in record.frames],
            expires,
        )
        lists = machine_mark_pages(
            settings, record, [contract.rendered_mark(f) for f in record.frames], expires
        )
        mail = {"mail": contract.mail_claim_key(record.job_id)}
        # One end mark per machine (out/ended/<index>): what the last to end lists (job_end.py).
        ended = storage.list_page_links(
            settings,
            record.bucket,
            contract.ended_prefix(record.job_id),
            [str(i) for i in range(record.machines)],
            expires,
        )
        return {
            "claim_urls": claims,
            "claim_list_urls": claim_pages,
            "machine_list_urls": lists,
            "machine_count": record.machines,
            "notice_claim_url": storage.put_links(settings, record.bucket, mail, expires)["mail"],
            "ended_list_urls": ended,
        }

    def launch(
        self,
        settings: AwsSettings,
        record: JobRecord,
        request: JobRequest,
        packed: PackedScene,
        boot_script: str,
    ) -> Launched:
        facts = load_catalog().types.get(record.instance_type)
        size = child_size_for(record.instance_type, facts)
        key = contract.job_prefix(record.job_id) + "boot.sh"
        storage.put_text(settings, record.bucket, key, boot_script)
        # After Set Up this only describes and compares (no write) unless the scene's shape
        # (type, pricing, more vCPUs, a larger pack) differs from what is there.
        environment = batch.ensure_engine(
            settings,
            record.instance_type,
            record.spot,
            batch.vcpus_for(size.vcpus, record.machines),
            pack_bytes=sum(size for _sha, size in packed.files.values()),
            gpu=size.gpus > 0,
        )
        cap_s = self.machine_cap_seconds(record)
        expires = storage.presign_expiry(cap_s + BATCH_OVERHEAD_S + 3600)
        boot_url = storage.get_link(settings, record.bucket, key, expires)
        job = batch.submit(
            settings,
            environment,
            record.job_id,
            record.machines,
            boot_url,
            attempt_seconds=cap_s + CONTAINER_START_S,
            size=size,
        )
        pricing = "spot" if record.spot else "on-demand"
        # The Batch job's id is the record's (launch_id): an artist reads no uuid in the log.
        return Launched(
            job,
            record.spot,
            f"{record.machines} machines requested ({pricing}) from AWS Batch; each starts as AWS "
            "finds it a machine.",
        )

    # --- follow ----------------------------------------------------------------------------
    def outputs(self, job: JobHost) -> MachineFolders:
        return MachineFolders(job, self)

    def rendered_words(self, record: JobRecord) -> str:
        return f"{len(record.frames_done)} frames rendered on {record.machines} machines"

    def children(self, settings: AwsSettings, record: JobRecord) -> list[batch.Child]:
        return batch.children(settings, record.launch_id, record.machines)

    def refresh_children(
        self, settings: AwsSettings, record: JobRecord, force: bool = False
    ) -> list[batch.Child]:
        """Batch is asked about the children at most every CHILDREN_EVERY_S unless forced."""
        if force or time.monotonic() - self._children_at > CHILDREN_EVERY_S:
            self.children_seen = self.children(settings, record)
            self._children_at = time.monotonic()
        return self.children_seen

    def fleet(self, settings: AwsSettings, record: JobRecord) -> Fleet:
        """Every child's running time so far; the live ones may each bill the stop margin."""
        kids = self.refresh_children(settings, record)
        now = time.time()
        return Fleet(
            tuple((c.stopped_at or now) - c.started_at for c in kids if c.started_at),
            sum(1 for c in kids if c.live),
        )

    def live(self, settings: AwsSettings, record: JobRecord) -> bool:
        """Any child live (none listed yet: the array job is still starting)."""
        kids = self.refresh_children(settings, record, force=True)
        return not kids or any(c.live for c in kids)

    def all_gone(self, settings: AwsSettings, record: JobRecord) -> bool:
        return not self.live(settings, record)

    # --- stop ------------------------------------------------------------------------------
    def stop(self, settings: AwsSettings, record: JobRecord, reason: str) -> None:
        if record.launch_id:
            batch.terminate_all(settings, record.launch_id, record.machines, reason)

    def wait_until_ended(self, settings: AwsSettings, record: JobRecord, cancel: threading.Event) -> None:
        """Every frame is here: the machines have nothing left to claim and end on their own
        within seconds, each writing its done.json (its last frame's time). Wait at most
        `end_grace_s` for that before they are stopped."""
        deadline = time.monotonic() + self.end_grace_s
        while self.live(settings, record) and time.monotonic() < deadline:
            if cancel.wait(1.0):
                return

    def machines_left(self, settings: AwsSettings, record: JobRecord) -> list[str]:
        """The array job's children that Batch still counts as live. (The EC2 instances under
        them belong to the compute environment, shared by every job of its type, and carry no
        job tag: with minvCpus 0 Batch ends them once no job needs them; the forgotten-machine
        search counts a live Batch job as its machines.)"""
        return [f"machine {c.index} ({c.status.lower()})" for c in self.children(settings, record) if c.live]

    def end_machines_left(self, settings: AwsSettings, record: JobRecord, left: list[str]) -> None:
        batch.terminate_all(settings, record.launch_id, record.machines, "still running after the job ended")


def machine_mark_pages(
    settings: AwsSettings, record: JobRecord, marks: list[str], expires: int
) -> dict[str, list[str]]:
    """Machine index (text) -> the pages of a listing of its marks (what a retried machine
    reads to find what its lost attempt claimed and never uploaded)."""
    return {
        str(i): storage.list_page_links(
            settings, record.bucket, contract.marks_prefix(record.job_id, i), marks, expires
        )
        for i in range(record.machines)
    }


def find_forgotten(
    settings: AwsSettings, regions: list[str], is_job_live: Callable[[str], bool]
) -> list[ForgottenMachine]:
    """Every live Batch job of ours, in every region given, whose job is not live here: a live
    Batch job stands for its machines (ended as one)."""
    found = []
    for region in regions:
        for batch_id, job_id in batch.live_jobs(settings.in_region(region)):
            if not is_job_live(job_id):
                found.append(ForgottenMachine(EngineName.BATCH, region, batch_id, job_id))
    return found


def stop_forgotten(settings: AwsSettings, machine: ForgottenMachine) -> None:
    """End a forgotten Batch job and every child it still has."""
    batch.terminate_all(settings.in_region(machine.region), machine.launch_id, 0, "forgotten machines")


@dataclass
class _Reading:
    """What one poll fetched of one machine's folder, not yet validated."""

    index: int
    plan: bytes | TooLarge | None = None
    plan_etag: str = ""  # what the plan read was (it is read again only once it changed)
    status: bytes | TooLarge | None = None
    logs: list[tuple[str, bytes | None]] = field(default_factory=list)
    end: tuple[str, bytes | TooLarge | None] | None = None


class MachineFolders:
    """What each machine writes under `out/machines/<index>/` (status, log, plan, end
    document), read through the contract, plus the boot script's writes at the top of `out/`.
    The job is done when every frame has arrived."""

    def __init__(self, job: JobHost, engine: BatchEngine) -> None:
        self.job = job
        self.engine = engine
        self._log_marker = ""
        self._last_status: dict[str, Any] = {}
        self._machine_logs: dict[int, str] = {}
        self._machine_raw: dict[int, dict[str, Any]] = {}  # as read, to notice a change
        self._machine_status: dict[int, dict[str, Any]] = {}  # parsed through the contract
        self._machine_ends: dict[int, str] = {}
        self._machine_errors: dict[int, contract.ErrorReport] = {}  # what a failed machine said
        self._posted_rows: tuple[tuple[str, ...], int] = ((), -1)
        self._plans_read: set[int] = set()
        self._plan_etags: dict[int, str] = {}  # each machine's plan.json last read
        self._budget = LogBudget()  # the log lines one poll passes on, every machine together
        self._polls = 0
        self._signatures: dict[str, int] | None = None  # claim ETag -> machine (batch_siblings)

    # --- what each machine writes -----------------------------------------------------------
    def poll(self) -> None:
        """One look at every machine, all at once: with N machines a poll that asked them one
        after another (six requests each) would itself become the delay before the last frame
        is seen. The reads run in threads; what they found is applied here, in order."""
        rec = self.job.record
        workers = min(POLL_THREADS, rec.machines + 1)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cloud-render-poll") as pool:
            shared = pool.submit(self._fetch_shared)
            readings = list(pool.map(self._fetch_machine, range(rec.machines)))
            status, logs = shared.result()
        self._budget = LogBudget()
        self._apply_shared(status, logs)
        for reading in readings:
            self._apply_machine(reading)
        if self._budget.left_out():
            self.job.post_log((self._budget.left_out(),))
        self._polls += 1
        self.job.download_outputs()
        self._judge_ends([r for r in readings if r.end is not None])  # by what has now landed
        rows = tuple(self._row_text(row) for row in self.machine_rows())
        eta = self._eta_seconds()
        if (rows, round(eta)) != self._posted_rows:
            self._posted_rows = (rows, round(eta))
            self.job.events.post(MachinesUpdate(rec.job_id, rows, eta))

    def _row_text(self, row: dict[str, Any]) -> str:
        pricing = "spot" if self.job.record.spot else "on-demand"
        frame = f", frame {row['frame']}" if row["frame"] is not None and row["state"] == "rendering" else ""
        pace = f", {row['seconds_per_frame']:.1f} s/frame" if row["seconds_per_frame"] else ""
        return f"Machine {row['machine']}: {row['state']}{frame}{pace} ({pricing})"

    def _eta_seconds(self) -> float:
        """Frames left at the machines' measured pace, spread over the machines still working."""
        paces = [
            float(s.get("seconds_per_frame") or 0)
            for i, s in self._machine_status.items()
            if i not in self._machine_ends and s.get("seconds_per_frame")
        ]
        if not paces:
            return 0.0
        return len(self.job.record.frames_missing) * (sum(paces) / len(paces)) / len(paces)

    def _get(self, key: str, max_bytes: int) -> bytes | TooLarge | None:
        try:
            return self.job.steps.get_bytes(self.job.settings, self.job.record.bucket, key, max_bytes)
        except TooLarge as error:
            return error

    def _fetch_shared(self) -> tuple[bytes | TooLarge | None, list[tuple[str, str | None]]]:
        """What the boot script writes at the job's top level (every child's "booting" status,
        a boot log when the boot failed), as for one machine."""
        rec = self.job.record
        status = self._get(contract.out_prefix(rec.job_id) + "status.json", contract.MAX_JSON_BYTES)
        logs = self.job.steps.new_log_chunks(
            self.job.settings, rec.bucket, rec.job_id, self._log_marker, contract.MAX_LOG_CHUNK_BYTES
        )
        return status, logs

    def _apply_shared(self, status: bytes | TooLarge | None, logs: list[tuple[str, str | None]]) -> None:
        document = self._document("status.json", status, contract.MAX_JSON_BYTES)
        # Every child's boot script writes "booting" here: once a machine reports in its own
        # folder, a late child's boot must not take the job's stage back.
        if document and document != self._last_status and not self._machine_status:
            self._last_status = document
            report = self.job.accept(
                f"status.json #{contract.clean_text(document.get('seq'), 20)}",
                lambda: contract.parse_status(document, self.job.record.frames),
            )
            if report is not None:
                self.job.apply_status(report)
        for key, text in logs:
            self._log_marker = key
            if text is None:
                self.job.refuse(key, f"a log chunk over {contract.MAX_LOG_CHUNK_BYTES} bytes")
                continue
            lines = tuple(contract.clean_log_line(line) for line in self._budget.take(text.splitlines()))
            self.job.post_log(lines)

    def _fetch_machine(self, index: int) -> _Reading:
        """Network only (a worker thread): this machine's status, new log chunks, its plan until
        read once, and its end documents once its status or Batch says it may have ended."""
        rec = self.job.record
        folder = contract.out_prefix(rec.job_id) + contract.machine_folder(index)
        reading = _Reading(index)
        if index not in self._plans_read:  # once read, and then only if it changed
            etag = self.job.steps.etag(self.job.settings, rec.bucket, folder + "plan.json") or ""
            if etag and etag != self._plan_etags.get(index):
                reading.plan = self._get(folder + "plan.json", contract.MAX_PLAN_BYTES)
                reading.plan_etag = etag
        reading.status = self._get(folder + "status.json", contract.MAX_JSON_BYTES)
        marker = self._machine_logs.get(index, "")
        listed = storage.list_objects(self.job.settings, rec.bucket, folder + "logs/", start_after=marker)
        for obj in listed[:MAX_LOG_CHUNKS_PER_POLL]:  # the rest in the next poll
            if obj.size > contract.MAX_LOG_CHUNK_BYTES:
                reading.logs.append((obj.key, None))
                continue
            body = self.job.steps.get_bytes(
                self.job.settings, rec.bucket, obj.key, contract.MAX_LOG_CHUNK_BYTES
            )
            reading.logs.append((obj.key, body))
        if index not in self._machine_ends and self._may_have_ended(index, reading.status):
            for name in END_DOCUMENTS:
                found = self._get(folder + name, contract.MAX_PLAN_BYTES)
                if found is not None:
                    reading.end = (name, found)
                    break
        return reading

    def _may_have_ended(self, index: int, status: bytes | TooLarge | None) -> bool:
        """Whether to look for done/error/interrupted.json: the status says a final state (a
        hint only: the end document itself is what counts), Batch says the child is not live, or
        every tenth poll (a status push lost before the machine went away)."""
        if self._polls % 10 == 0:
            return True
        if any(c.index == index and not c.live for c in self.engine.children_seen):
            return True
        if isinstance(status, bytes):
            try:
                state = json.loads(status).get("state")
            except (ValueError, AttributeError, RecursionError):  # broken: look, it may be the end
                return True
            return state in contract.FINAL_STATES or state not in contract.ALL_STATES
        return False

    def _document(self, name: str, body: bytes | TooLarge | None, max_bytes: int) -> dict[str, Any] | None:
        """A fetched document through the job's one guarded reader; a broken one is refused."""
        return self.job.document(name, body, max_bytes)

    def _apply_machine(self, reading: _Reading) -> None:
        rec = self.job.record
        index = reading.index
        folder = contract.machine_folder(index)
        if reading.plan_etag:
            self._plan_etags[index] = reading.plan_etag
        plan = self._document(folder + "plan.json", reading.plan, contract.MAX_PLAN_BYTES)
        if plan:
            frames = self.job.accept(f"{folder}plan.json", lambda: contract.parse_plan(plan, rec.frames))
            if frames is not None:
                self.job.plan.update(frames)
                self._plans_read.add(index)
        status = self._document(folder + "status.json", reading.status, contract.MAX_JSON_BYTES)
        if status and status != self._machine_raw.get(index):
            self._machine_raw[index] = status
            report = self.job.accept(
                f"{folder}status.json #{contract.clean_text(status.get('seq'), 20)}",
                lambda: contract.parse_status(status, rec.frames),
            )
            if report is not None:  # only validated values reach the panel
                state = report.state
                if state in contract.FINAL_STATES:  # an end is its end document's word, judged
                    state = str(self._machine_status.get(index, {}).get("state", "starting"))
                self._machine_status[index] = {
                    "state": state,
                    "frame": report.frame,
                    "part": report.part,
                    "seconds_per_frame": report.seconds_per_frame,
                }
                self._advance_stage(report.state)
                rec.device = report.device or rec.device
                rec.gpu_driver = report.gpu_driver or rec.gpu_driver  # the next job's kernel cache
                if report.seconds_per_frame:
                    rec.seconds_per_frame = report.seconds_per_frame
                self.job.note_frame_seconds(report.frame_seconds)
        for key, body in reading.logs:
            self._machine_logs[index] = key
            if body is None:
                self.job.refuse(key, f"a log chunk over {contract.MAX_LOG_CHUNK_BYTES} bytes")
                continue
            lines = tuple(
                f"[machine {index}] {contract.clean_log_line(line)}"
                for line in self._budget.take(body.decode("utf-8", "replace").splitlines())
            )
            self.job.post_log(lines)

    # --- end documents, judged against the claims and what landed -------------------------------
    def _judge_ends(self, readings: list[_Reading]) -> None:
        """Each machine's end document, believed only when it agrees with the claims naming that
        machine and with the frames that landed (batch_siblings.judge_end): any machine can write
        any other's folder. A refused one is said once and read again later (a machine may yet
        write its real one); it ends nothing."""
        pending = [r for r in readings if r.end is not None and r.index not in self._machine_ends]
        if not pending:
            return
        facts = self.facts()
        for reading in pending:
            index = reading.index
            folder = contract.machine_folder(index)
            name, end = reading.end or ("", None)
            data = self._document(folder + name, end, contract.MAX_PLAN_BYTES)  # they list frames
            if data is None:
                continue
            says = self.job.accept(folder + name, partial(self.end_says, name, data))
            if says is None:
                continue
            why = batch_siblings.judge_end(index, name, says, facts)
            if why:
                self.job.refuse(contract.out_prefix(self.job.record.job_id) + folder + name, why)
                continue
            self._machine_ends[index] = name.split(".")[0]
            self.job.log(f"Machine {index} ended: {self._machine_ends[index]}.")
            self.job.note_end_frame_seconds(data, f"{folder}{name}")
            if name == "error.json":
                self._note_error(index, data)

    def end_says(self, name: str, data: dict[str, Any]) -> EndSays:
        """The frames an end document says its machine rendered (done, or timed) and left."""
        frames = self.job.record.frames
        rendered = set(contract.parse_done(data, frames).frames_done) if name != "error.json" else set()
        try:  # a broken frame_seconds is refused on its own (note_end_frame_seconds)
            timed = contract.parse_frame_seconds(data.get("frame_seconds"), name, set(frames), len(frames))
        except contract.ContractError:
            timed = {}
        if name == "done.json":
            left: list[int] = []
        elif name == "error.json":
            left = contract.parse_error(data, frames).frames_left
        else:
            left = contract.parse_interrupted(data, frames).frames_left
        return EndSays(frozenset(str(f) for f in rendered | set(timed)), frozenset(str(f) for f in left))

    def work(self) -> frozenset[str]:
        """The claim names the job hands out: one per frame."""
        return frozenset(str(f) for f in self.job.record.frames)

    def landed(self) -> frozenset[str]:
        """The claim names whose output is here: the frames that arrived and passed their checks."""
        return frozenset(str(f) for f in self.job.record.frames_done)

    def facts(self) -> Facts:
        """One listing of the claims (who each names), with what landed and what is handed out."""
        rec = self.job.record
        prefix = contract.claims_prefix(rec.job_id)
        listed = self.job.steps.list_objects(self.job.settings, rec.bucket, prefix)
        listing = {obj.key[len(prefix) :]: obj.etag for obj in listed}
        if self._signatures is None:
            self._signatures = batch_siblings.claim_signatures(rec.machines, batch.ATTEMPTS)
        work = self.work()
        holders, strangers = batch_siblings.claim_holders(listing, self._signatures, work | {"merge"})
        if strangers:
            self.job.refuse(
                prefix, f"the claims on {batch_siblings.words(strangers)} name no machine of this job"
            )
        return Facts(holders, self.landed(), work)

    def _note_error(self, index: int, data: dict[str, Any]) -> None:
        """A failed machine's cause, kept for the job's message if the frames never arrive."""
        key = f"machine {index} error.json"
        error = self.job.accept(key, lambda: contract.parse_error(data, self.job.record.frames))
        if error is None:
            return
        if error.dropped:
            self.job.refuse(key, error.dropped)
        self._machine_errors[index] = error
        if error.last_lines:
            lines = (f"[cloud-render] Machine {index}'s last lines:", *error.last_lines)
            self.job.post_log(lines)

    def _advance_stage(self, state: str) -> None:
        """The job's stage follows the furthest machine (installing, then rendering), never back."""
        stage = WORKER_STATE_STAGE.get(state)
        if stage not in FORWARD or self.job.record.stage not in FORWARD_VALUES:
            return
        if FORWARD.index(stage) > FORWARD_VALUES.index(self.job.record.stage):
            self.job.set_stage(
                stage, f"on {self.job.record.machines} machines"
            )  # the panel reads "Rendering: on 3 machines"

    def machine_rows(self) -> list[dict[str, Any]]:
        """One row per machine for the panel: state, frame, s/frame."""
        rows = []
        for index in range(self.job.record.machines):
            status = self._machine_status.get(index, {})
            rows.append(
                {
                    "machine": index,
                    "state": self._machine_ends.get(index) or str(status.get("state", "starting")),
                    "frame": status.get("frame"),
                    "part": status.get("part"),
                    "seconds_per_frame": status.get("seconds_per_frame"),
                }
            )
        return rows

    # --- endings ------------------------------------------------------------------------------
    def final_state(self) -> tuple[Stage, dict[str, Any]] | None:
        if not self.job.record.frames_missing:
            return Stage.DONE, {}
        return None

    def _say_who_held(self) -> None:
        """Which machine the claims say held each frame that never arrived (a lead for the log)."""
        try:
            facts = self.facts()
        except CloudError as error:
            self.job.log(f"Could not list the claims: {error.message}")
            return
        said = batch_siblings.missing_words(self.work() - facts.landed, facts.holders)
        if said:
            self.job.log(said)

    def working(self) -> int:
        return max(1, self.job.record.machines - len(self._machine_ends))

    def gone_error(self) -> CloudError:
        rec = self.job.record
        missing = rec.frames_missing
        self._say_who_held()
        detail = (
            f"Batch job {rec.launch_id}: {[(c.index, c.status, c.reason) for c in self.engine.children_seen]}"
        )
        if self._machine_errors:  # say why, as a single machine's failure does
            index, error = min(self._machine_errors.items())
            return CloudError(
                f"Machine {index} failed: {error.cause or 'the render failed.'} "
                f"{len(missing)} frames did not arrive.",
                failure_action(error.kind),
                code=ErrorCode.BATCH_MACHINE_FAILED,
                detail=detail,
            )
        return CloudError(
            f"Every machine has stopped, but {len(missing)} frames did not arrive.",
            "Relaunch the missing frames; the frames already rendered are kept.",
            code=ErrorCode.MACHINES_GONE,
            detail=detail,
        )
